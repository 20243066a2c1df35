"""The head-bias fold, without transformers: GPT-2's and Starcoder2's heads have no bias, so the
export moves ours into the final layer norm's bias; worked by hand and held to our own model."""

import pytest
import torch

from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model.gpt import GPT
from playground.export.hf import convert, fold_head_bias
from tests.export.conftest import TEXT, random_model


def test_fold_by_hand():
    """W = [[1, 0], [0, 1], [1, 1]], b = [6, 7, 8]: W (1, 2) + 5 = b, so δ = (1, 2) (the
    constant 5 moves every logit alike, which softmax ignores) and nothing is left over."""
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    delta, residual = fold_head_bias(weight, torch.tensor([6.0, 7.0, 8.0]))
    assert delta.tolist() == pytest.approx([1.0, 2.0], abs=1e-6) and residual < 1e-9
    # four tokens on a width of 2 cannot all be matched: the residual says by how much
    delta, residual = fold_head_bias(torch.cat([weight, torch.tensor([[1.0, -1.0]])]), torch.tensor([6.0, 7.0, 8.0, 0.0]))
    assert residual > 0.1


def test_fold_is_exact_up_to_width_plus_one_tokens():
    generator = torch.Generator().manual_seed(3)
    for V, exact in ((17, True), (30, False)):
        weight, bias = torch.randn(V, 16, generator=generator), torch.randn(V, generator=generator)
        delta, residual = fold_head_bias(weight, bias)
        shift = bias - weight @ delta  # what remains must be one constant for an exact fold
        assert (residual < 1e-6) is exact
        assert (float(shift.max() - shift.min()) < 1e-4) is exact


@pytest.mark.parametrize("position, norm_bias", [("learned", "transformer.ln_f.bias"), ("rope", "model.norm.bias")])
def test_the_exported_final_norm_bias_gives_our_log_probabilities_without_a_head_bias(position, norm_bias):
    """Our model with the head's bias removed and the exported final-norm bias in place writes
    the same log-probabilities as the model with its bias (15 characters <= width 16 + 1)."""
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, position=position)
    converted = convert(model)
    assert converted.fold_residual < 1e-6
    no_bias = GPT(model.config.replace(head_bias=False)).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.bias"}
    no_bias.load_state_dict({**state, "ln_f.bias": converted.weights[norm_bias]})
    assert not torch.equal(converted.weights[norm_bias], model.ln_f.bias)  # the fold moved it
    ids = torch.tensor([tokenizer.encode(TEXT[:16])])
    with torch.no_grad():
        ours, folded = model(ids)[0].log_softmax(-1), no_bias(ids)[0].log_softmax(-1)
    torch.testing.assert_close(folded, ours, rtol=0, atol=1e-5)
