"""The transformers export's generation settings: max_new_tokens works without a warning up to
what the model can do (learned positions: prompt and output within block + 1 tokens; rotary ones:
any length, sliding as ours), and past a learned model's table it fails as the export says."""

import logging
import warnings

import pytest
import torch

from playground.engine.data.tokenizer import CharTokenizer
from playground.export import export_model, verify
from tests.export.conftest import TEXT, random_model, save

pytest.importorskip("transformers")


class Caught(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def generate(folder, prompt: str, n: int) -> tuple[str, list[str]]:
    """transformers' greedy continuation of `prompt` and every warning it gave on the way."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    caught = Caught()
    logger = logging.getLogger("transformers")
    logger.addHandler(caught)
    once = getattr(logging.Logger, "warning_once", None)   # transformers' once-per-process warnings
    if hasattr(once, "cache_clear"):
        once.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as python_warnings:
            warnings.simplefilter("always")
            ids = tokenizer(prompt, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=0)
    finally:
        logger.removeHandler(caught)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
    return text, caught.messages + [str(w.message) for w in python_warnings]


def ours(model, tokenizer, prompt: str, n: int) -> str:
    ids = tokenizer.encode_lenient(prompt).ids
    return tokenizer.decode(verify.greedy_ours(model, tokenizer, ids, n))


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_max_new_tokens_works_without_a_warning_up_to_what_the_model_can_do(tmp_path, position):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, position=position, head_bias=False)
    export_model(save(tmp_path, "m", model, tokenizer), "hf", tmp_path / "hf")
    # learned: 4 + 13 = block + 1 tokens, the most; rotary: four blocks, sliding past the first
    n = 13 if position == "learned" else 64
    text, said = generate(tmp_path / "hf", "to b", n)
    assert said == []
    assert text == ours(model, tokenizer, "to b", n) and len(text) == n


def test_past_a_learned_models_table_transformers_fails_as_the_export_says(tmp_path):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, head_bias=False)
    report = export_model(save(tmp_path, "m", model, tokenizer), "hf", tmp_path / "hf")
    assert any("at most 17 tokens" in note and "IndexError" in note for note in report.notes)
    with pytest.raises(IndexError):
        generate(tmp_path / "hf", "to b", 14)
    with torch.no_grad():   # ours slides its window instead
        assert len(ours(model, tokenizer, "to b", 14)) == 14
