"""Looking inside a model (analysis/interpret.py): the logit lens, induction scores, the embedding
map and surprise, on character and BPE models with learned and rotary positions."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from playground.engine.analysis import interpret
from playground.engine.analysis.evaluation import full_loss
from playground.engine.config import ModelConfig
from playground.engine.data.bpe import BPETokenizer
from playground.engine.data.corpus import builtin_text
from playground.engine.data.generated import repeat_text
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.errors import PromptError
from playground.engine.model.gpt import GPT

TEXT = "to be or not to be that is the question: whether tis nobler in the mind to suffer"


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(builtin_text("fable"), 300)


def tiny(tokenizer, position="learned", layers=2, block=16, seed=0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=layers, n_head=2, n_embd=16,
                            block_size=block, position=position))
    with torch.no_grad():  # larger weights than at initialisation: predictions differ by layer
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.train()   # the readings must switch dropout off themselves


def kinds(bpe):
    return [(CharTokenizer.from_text(TEXT), "learned"), (CharTokenizer.from_text(TEXT), "rope"),
            (bpe, "learned"), (bpe, "rope")]


def test_the_lens_last_layer_is_the_models_own_output(bpe):
    for tokenizer, position in kinds(bpe):
        model = tiny(tokenizer, position)
        lens = interpret.logit_lens(model, tokenizer, "to be or not")
        ids = tokenizer.encode("to be or not")
        probs = model.eval()(torch.tensor([ids]))[0][0].softmax(-1)
        assert lens.layers == ["embeddings", "block 1", "block 2"] and len(lens.tokens) == len(ids)
        assert [tokenizer.label(i) for i in probs.argmax(-1).tolist()] == lens.top[-1]
        assert torch.allclose(torch.tensor(lens.top_prob[-1]), probs.max(-1).values, atol=1e-5)
        actual = probs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        assert torch.allclose(torch.tensor(lens.next_prob[-1][:-1]), actual, atol=1e-5)
        assert lens.next_prob[-1][-1] is None
        assert lens.top[0] != lens.top[-1] or lens.top_prob[0] != lens.top_prob[-1]  # layers differ
        json.dumps(lens.to_dict())


def test_the_lens_keeps_the_last_block_of_a_long_prompt():
    tokenizer = CharTokenizer.from_text(TEXT)
    lens = interpret.logit_lens(tiny(tokenizer, block=8), tokenizer, "to be or not")
    assert lens.tokens == list("e or not") and lens.dropped == 4


def test_bad_prompts_are_named():
    tokenizer = CharTokenizer.from_text(TEXT)
    model = tiny(tokenizer)
    with pytest.raises(PromptError, match="'Z'"):
        interpret.logit_lens(model, tokenizer, "to Ze")
    with pytest.raises(PromptError, match="empty"):
        interpret.surprise(model, tokenizer, "")
    with pytest.raises(PromptError, match="at least 2"):
        interpret.surprise(model, tokenizer, "t")


def test_induction_score_of_a_hand_built_pattern():
    L, n = 5, 6
    perfect = torch.zeros(2, 3, 4, 2 * n, 2 * n)
    t = torch.arange(n, 2 * n)
    perfect[1, :, 2, t, t - n + 1] = 1.0                       # layer 1, head 2 inducts
    uniform = torch.tril(torch.ones(2 * n, 2 * n))
    perfect[0] = uniform / uniform.sum(-1, keepdim=True)       # layer 0 spreads evenly
    scores = interpret.induction_scores(perfect, n)
    assert scores.shape == (2, 4) and scores[1, 2] == 1.0 and scores[1, 0] == 0.0
    expected = sum(1 / (i + 1) for i in range(n, 2 * n)) / n
    assert math.isclose(float(scores[0, 0]), expected, rel_tol=1e-6) and expected < 0.2
    assert L  # the probe's tokens need not be distinct for the stripe to be read


def test_a_head_forced_to_induct_scores_one_and_the_json_keeps_its_promise(bpe, monkeypatch):
    """Layer 2's head 1 attends by content, to the token after the earlier occurrence of its own
    token: the probe must repeat itself at probe_length for it to score 1."""
    for tokenizer, position in kinds(bpe):
        model = tiny(tokenizer, position, block=16)

        def forced(idx, real=model.attention_maps):
            maps = real(idx).clone()
            for b, row in enumerate(idx.tolist()):
                maps[1, b, 0] = 0.0
                for t, token in enumerate(row):
                    earlier = [s for s in range(t) if row[s] == token]
                    maps[1, b, 0, t, earlier[-1] + 1 if earlier else 0] = 1.0
            return maps

        monkeypatch.setattr(model, "attention_maps", forced)
        found = interpret.induction(model, tokenizer)
        assert found.probe_length == 8          # half the block
        assert found.scores[1][0] == pytest.approx(1.0) and found.best()[:2] == (1, 0)
        assert all(s < 0.5 for s in found.scores[0])
        data = json.loads(json.dumps(found.to_dict()))
        assert {"heads", "loss_first_half", "loss_second_half"} <= data.keys()
        assert len(data["heads"]) == 4 and set(data["heads"][0]) == {"layer", "head", "score"}
        assert data["heads"][2] == {"layer": 1, "head": 0, "score": found.scores[1][0]}


def test_the_probe_repeats_distinct_tokens_and_leaves_out_line_breaks(bpe):
    char = CharTokenizer.from_text("ab\ncd")
    assert interpret.probe_tokens(char) == char.encode("abcd")
    assert bpe.end_of_text not in interpret.probe_tokens(bpe)
    probe = interpret.induction_probe(range(10), 6, batch=3, seed=1)
    assert probe.shape == (3, 12) and torch.equal(probe[:, :6], probe[:, 6:])
    assert all(len(set(row[:6])) == 6 for row in probe.tolist())
    assert torch.equal(probe, interpret.induction_probe(range(10), 6, batch=3, seed=1))


def test_induction_halves_are_the_models_own_losses():
    tokenizer = CharTokenizer.from_text("abcdefghij")
    model = tiny(tokenizer, block=12)
    found = interpret.induction(model, tokenizer, batch=2, seed=3)
    probe = interpret.induction_probe(interpret.probe_tokens(tokenizer), 6, batch=2, seed=3)
    logits = model.eval()(probe)[0].detach()
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), probe[:, 1:], reduction="none")
    assert found.loss_first_half == pytest.approx(float(loss[:, :5].mean()), abs=1e-5)
    assert found.loss_second_half == pytest.approx(float(loss[:, 6:].mean()), abs=1e-5)


def test_pca_signs_follow_the_previous_frame():
    torch.manual_seed(0)
    m = torch.randn(20, 6) * torch.tensor([5.0, 3.0, 1, 1, 1, 1])
    first = interpret.pca_2d(m)
    axes = torch.tensor(first.axes)
    assert all(float(a[a.abs().argmax()]) > 0 for a in axes)          # the rule without a frame
    centred = (m - m.mean(0)).double()
    assert torch.allclose(torch.tensor(first.points, dtype=torch.float64), centred @ axes.double().T, atol=1e-9)
    assert 1 >= first.explained[0] >= first.explained[1] > 0
    flipped = interpret.Projection(first.points, [[-x for x in first.axes[0]], first.axes[1]], first.explained)
    moved = interpret.pca_2d(m + 0.01 * torch.randn(20, 6), previous=flipped)
    assert float(torch.tensor(moved.axes[0]) @ torch.tensor(flipped.axes[0])) > 0.99
    assert float(torch.tensor(moved.axes[1]) @ axes[1]) > 0.99
    assert moved.points[0][0] == pytest.approx(-first.points[0][0], rel=0.05)


def test_embedding_maps_learned_and_rotary(bpe):
    for tokenizer, position in kinds(bpe):
        model = tiny(tokenizer, position)
        found = interpret.embedding_map(model, tokenizer)
        assert len(found.tokens.points) == len(found.labels) == len(found.kinds) == tokenizer.vocab_size
        if position == "learned":
            assert len(found.positions.points) == 16 and found.no_positions == ""
            again = interpret.embedding_map(model, tokenizer, previous=found)
            assert again.positions.axes == found.positions.axes
        else:
            assert found.positions is None and "rotary" in found.no_positions
        json.dumps(found.to_dict())
    assert [interpret.token_kind(t) for t in ["a", "b", " the", "7", "\n", ",", "é", "→"]] == \
        ["vowel", "letter", "letter", "digit", "space", "punctuation", "vowel", "punctuation"]


def test_surprise_is_the_per_token_cross_entropy(bpe):
    for tokenizer, position in kinds(bpe):
        model = tiny(tokenizer, position, block=96)
        ids = tokenizer.encode(TEXT)
        found = interpret.surprise(model, tokenizer, TEXT, top_k=3)
        logits = model.eval()(torch.tensor([ids]))[0][0]
        expected = F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
        assert found.losses[0] is None and len(found.losses) == len(ids)
        assert torch.allclose(torch.tensor(found.losses[1:]), expected, atol=1e-4)
        best = logits[:-1].softmax(-1).max(-1)
        assert [c[0][0] for c in found.candidates[1:]] == [tokenizer.label(i) for i in best.indices.tolist()]
        assert [len(c) for c in found.candidates[1:]] == [3] * (len(ids) - 1)
        worst = found.worst(3)
        assert found.losses[worst[0]] == max(found.losses[1:]) and worst == sorted(worst, key=lambda i: -found.losses[i])


def test_surprise_on_a_long_text_reads_it_as_evaluation_does():
    tokenizer = CharTokenizer.from_text(TEXT)
    model = tiny(tokenizer, block=8)           # 81 characters: ten windows and a tail
    found = interpret.surprise(model, tokenizer, TEXT)
    expected = full_loss(model, torch.tensor(tokenizer.encode(TEXT)), 8)
    assert found.mean_loss == pytest.approx(expected, rel=1e-5)
    assert found.tokens == list(TEXT) and 0 not in found.worst(100)


def test_the_repeat_corpus_is_each_run_twice_and_the_same_every_time():
    text = builtin_text("repeat")
    assert text == repeat_text() and len(text) > 100_000 and set(text) <= set("abcdefghijklmnopqrstuvwxyz\n")
    lines = text.splitlines()
    assert all(len(line) % 2 == 0 and line[: len(line) // 2] == line[len(line) // 2:] for line in lines)
    assert len({len(line) for line in lines}) > 10     # no fixed offset copies
