"""The sampler: greedy equals argmax, top-k/top-p restrict, the cache matches the plain path."""

import math

import pytest
import torch

from playground.engine.config import ModelConfig, SampleConfig
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.errors import ModelError
from playground.engine.model.generation import (
    LIST_DRAW,
    Engine,
    LengthBudget,
    Request,
    StopFilter,
    draw,
    draw_from,
    filter_probs,
    generate,
    generate_many,
    start_ids,
    stream_tokens,
)
from playground.engine.model.gpt import GPT

TOK = CharTokenizer.from_text("abcdefghijk")


def _model(block=8):
    torch.manual_seed(5)
    return GPT(ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=16, block_size=block)).eval()


def test_temperature_zero_picks_the_argmax_of_the_plain_forward():
    model = _model()
    tokens = list(stream_tokens(model, TOK, "abc", SampleConfig(max_new_chars=20, temperature=0)))
    ids = TOK.encode("abc")
    for tok in tokens:
        logits, _ = model(torch.tensor([ids[-8:]]))
        assert tok.id == int(logits[0, -1].argmax())
        ids.append(tok.id)


def test_greedy_takes_the_first_of_equally_likely_tokens():
    """Ties at temperature 0 go to the lowest id, as torch.argmax does: alone, in a batch
    sharing one softmax, and after top-k/top-p."""
    assert draw_from([0.1, 0.3, 0.3, 0.3], 0, torch.Generator()) == 1
    assert draw(torch.tensor([0.25, 0.25, 0.25, 0.25]), 0, torch.Generator()) == 0
    model = _model()
    with torch.no_grad():  # every context gives the same logits, with ids 3, 6 and 9 tied on top
        model.lm_head.weight.zero_()
        model.lm_head.bias.copy_(torch.tensor([0., 1, 2, 5, 0, 1, 5, 0, 2, 5, 1]))
    for cfg in (SampleConfig(max_new_chars=3, temperature=0),
                SampleConfig(max_new_chars=3, temperature=0, top_k=4, top_p=0.9)):
        assert generate(model, TOK, "ab", cfg) == "ddd"
    texts = generate_many(model, TOK, ["ab", "k"], [SampleConfig(max_new_chars=3, temperature=0)] * 2)
    assert texts == ["ddd", "ddd"]


def test_temperature_divides_the_logits_once():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    for t in (0.5, 2.0):
        expected = [math.exp(v / t) for v in logits.tolist()]
        expected = [e / sum(expected) for e in expected]
        assert filter_probs(logits, t, 0, 1.0).tolist() == pytest.approx(expected, rel=1e-6)
    # the batched path (rows sharing a temperature share one softmax) gives the same numbers
    model = _model()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.copy_(torch.arange(11.0) / 4)
    cfg = SampleConfig(max_new_chars=1, temperature=2.0)
    engine = Engine(model, TOK, capacity=2)
    for prompt in ("ab", "c"):
        engine.add(Request(tuple(TOK.encode(prompt)), cfg))
    expected = torch.softmax(torch.arange(11.0) / 8, dim=-1)
    for _, token in engine.step():
        torch.testing.assert_close(token.probs, expected, rtol=1e-6, atol=1e-7)


def test_top_k_keeps_exactly_k_characters():
    logits = torch.randn(11, generator=torch.Generator().manual_seed(0))
    probs = filter_probs(logits, 1.0, 3, 1.0)
    assert int((probs > 0).sum()) == 3
    assert set(torch.nonzero(probs).flatten().tolist()) == set(logits.topk(3).indices.tolist())
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert (filter_probs(logits, 1.0, 0, 0.7) > 0).tolist() == [True, True, False, False]
    assert (filter_probs(logits, 1.0, 0, 0.5) > 0).tolist() == [True, False, False, False]
    assert (filter_probs(logits, 1.0, 0, 0.81) > 0).tolist() == [True, True, True, False]
    # a top_p below float32's smallest number reads as 0 there: the likeliest still stays
    assert filter_probs(logits, 1.0, 0, 1e-320).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_sampled_characters_stay_in_the_top_k_support():
    model = _model()
    cfg = SampleConfig(max_new_chars=40, temperature=1.5, top_k=2, seed=3)
    ids = TOK.encode("ab")
    for tok in stream_tokens(model, TOK, "ab", cfg):
        logits, _ = model(torch.tensor([ids[-8:]]))
        assert tok.id in logits[0, -1].topk(2).indices.tolist()
        ids.append(tok.id)


def test_same_seed_same_text_and_cache_matches_plain_probabilities():
    model = _model(block=8)
    cfg = SampleConfig(max_new_chars=30, temperature=1.0, seed=9)
    cached = list(stream_tokens(model, TOK, "abcde", cfg, use_cache=True))
    plain = list(stream_tokens(model, TOK, "abcde", cfg, use_cache=False))
    assert [t.id for t in cached] == [t.id for t in plain]
    for a, b in zip(cached, plain):
        torch.testing.assert_close(a.probs, b.probs, rtol=1e-5, atol=1e-6)
    # the text is the streamed tokens' text, and the seed decides it
    text = generate(model, TOK, "abcde", cfg)
    assert text == "".join(t.text for t in cached)
    assert generate(model, TOK, "abcde", cfg.replace(seed=10)) != text


def test_empty_prompt_starts_from_the_start_character_and_long_prompts_are_cropped():
    model = _model(block=8)
    text = generate(model, TOK, "", SampleConfig(max_new_chars=5, seed=1), start_char="c")
    assert len(text) == 5 and text[0] == "c"
    long_prompt = "abcdefghijk" * 10_000  # 110,000 characters
    assert len(generate(model, TOK, long_prompt, SampleConfig(max_new_chars=3))) == 3


def test_prompt_of_only_unknown_characters_is_a_prompt_error():
    import pytest

    from playground.engine.errors import PromptError
    with pytest.raises(PromptError, match="none of the prompt's characters"):
        generate(_model(), TOK, "xyz!", SampleConfig(max_new_chars=3))


def test_rope_rolling_cache_gives_the_plain_path_probabilities_beyond_the_block():
    torch.manual_seed(8)
    model = GPT(ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=16, block_size=8,
                            position="rope")).eval()
    cfg = SampleConfig(max_new_chars=50, temperature=0.9, seed=2)
    for prompt in ["a", "abcdefghijkabcdefghijk"]:  # short, and longer than the window
        fast = list(stream_tokens(model, TOK, prompt, cfg, use_cache=True))
        plain = list(stream_tokens(model, TOK, prompt, cfg, use_cache=False))
        assert [t.id for t in fast] == [t.id for t in plain]
        for a, b in zip(fast, plain):
            torch.testing.assert_close(a.probs, b.probs, rtol=1e-5, atol=1e-6)


def test_a_model_with_broken_weights_says_so_instead_of_crashing():
    import pytest

    from playground.engine.errors import ModelError, PlaygroundError
    model = _model()
    with torch.no_grad():
        model.lm_head.bias.fill_(float("nan"))
    with pytest.raises(ModelError, match="not finite") as info:
        generate(model, TOK, "abc", SampleConfig(max_new_chars=5, temperature=1.0))
    assert isinstance(info.value, PlaygroundError)


def test_start_ids_follow_the_start_character_else_the_first_character_or_a_newline():
    from playground.engine.data.bpe import BPETokenizer
    chars = CharTokenizer.from_text("abc")
    assert start_ids(chars, "b") == [1]
    assert start_ids(chars, None) == start_ids(chars, "") == start_ids(chars, "z") == [0]  # z: unknown
    bpe = BPETokenizer.train("the cat sat\non the mat\n" * 5, 270)
    assert start_ids(bpe, None) == bpe.encode("\n") and len(bpe.encode("\n")) == 1
    assert start_ids(bpe, "t") == bpe.encode("t") != bpe.encode("\n")


def test_length_budget_counts_tokens_or_characters():
    tokens = LengthBudget(SampleConfig(max_new_tokens=3))
    for _ in range(2):
        assert tokens.take("ab") == "ab" and not tokens.spent  # a token budget never cuts text
    assert tokens.take("abc") == "abc" and tokens.spent
    both = LengthBudget(SampleConfig(max_new_tokens=2, max_new_chars=1))  # tokens win over chars
    assert [both.take("ab"), both.take("cd")] == ["ab", "cd"] and both.spent
    chars = LengthBudget(SampleConfig(max_new_chars=5))
    assert chars.take("ab") == "ab" and not chars.spent
    assert chars.take("cdef") == "cde" and chars.spent  # the last token's text is cut to fit
    # tokens that complete no character (a split UTF-8 byte sequence) end it after 4 x 5
    waiting = LengthBudget(SampleConfig(max_new_chars=5))
    for _ in range(19):
        assert waiting.take("") == "" and not waiting.spent
    waiting.take("")
    assert waiting.spent


def test_filter_probs_edges():
    logits = torch.randn(11, generator=torch.Generator().manual_seed(0))
    plain = torch.softmax(logits, dim=-1)
    # temperature 0 and 1, top_p 1, top_k 0 or the whole vocabulary: the distribution untouched
    for temperature, top_k in ((0, 0), (1, 0), (1, 11)):
        assert torch.equal(filter_probs(logits, temperature, top_k, 1.0), plain)
    assert torch.equal(filter_probs(logits.double(), 1, 0, 1.0), plain)  # always float32
    assert filter_probs(logits.to(torch.bfloat16), 1, 0, 1.0).dtype == torch.float32
    assert filter_probs(logits, 1, 1, 1.0).tolist() == torch.nn.functional.one_hot(logits.argmax(), 11).float().tolist()
    # a tiny temperature on huge logits: the top never becomes inf (which would give NaN)
    assert filter_probs(torch.tensor([3e32, 0.0, -3e32]), 1e-7, 0, 1.0).tolist() == [1.0, 0.0, 0.0]


def test_draw_is_the_inverse_of_the_running_total():
    """The first token whose running total passes u x total, u uniform in [0, 1) from the
    row's generator; probabilities need not sum to 1."""
    probs = [1.0, 2.0, 5.0]  # running totals 1, 3, 8
    drawn, again = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    picks = [draw_from(probs, 1.0, drawn) for _ in range(40)]
    expected = []
    for _ in range(40):
        u = float(torch.rand((), generator=again)) * 8
        expected.append(0 if u < 1 else 1 if u < 3 else 2)
    assert picks == expected and set(picks) == {0, 1, 2}
    assert draw_from([0.0, 0.0, 1.0], 1.0, drawn) == 2  # the last token can be drawn


def test_a_large_vocabulary_draws_in_torch_the_very_token_python_floats_draw():
    """Past LIST_DRAW candidates draw() runs in torch: float64 running totals equal to
    itertools.accumulate's to the bit, and the same token as draw_from on the same generator,
    for sparse, unnormalised and tied distributions, at temperature 0 and 1."""
    import itertools
    gen = torch.Generator().manual_seed(7)
    n = LIST_DRAW + 1000
    for case in range(12):
        probs = torch.rand(n, generator=gen) ** 8  # mostly tiny numbers, a few large
        if case % 3 == 1:
            probs[torch.rand(n, generator=gen) < 0.9] = 0.0  # most candidates impossible
        if case % 3 == 2:
            probs = torch.softmax(torch.randn(n, generator=gen) * 6, -1)
        if case == 0:
            probs[[5, 900, n - 1]] = 2.0  # ties at the top: the first one, as argmax
        as_list = probs.tolist()
        assert probs.double().cumsum(0).tolist() == list(itertools.accumulate(as_list))
        for temperature in (0, 1.0):
            mine, theirs = torch.Generator().manual_seed(case), torch.Generator().manual_seed(case)
            picks = [draw(probs, temperature, mine) for _ in range(30)]
            assert picks == [draw_from(as_list, temperature, theirs) for _ in range(30)], (case, temperature)
        if case == 0:
            assert draw(probs, 0, torch.Generator()) == 5
    with pytest.raises(ModelError):
        draw(torch.full((n,), math.nan), 0, torch.Generator())
    with pytest.raises(ModelError):
        draw(torch.zeros(n), 1.0, torch.Generator())


def test_draw_refuses_what_is_not_a_distribution_in_words():
    words = ("this model's predictions are not finite numbers (its weights hold inf or NaN), so it "
             "cannot write text; train it again with a lower learning rate")
    for probs, temperature in (([0.0, 0.0], 1.0), ([0.5, math.inf], 1.0), ([0.5, math.nan], 1.0),
                               ([math.nan, math.nan], 0)):
        with pytest.raises(ModelError) as info:
            draw_from(probs, temperature, torch.Generator())
        assert str(info.value) == words


def test_stop_filter_releases_each_token_with_its_characters():
    """feed(text, item) -> (text shown, stopped, items of the tokens shown): a token leaves
    when its last character is shown; at a stop string or the end, a token partly shown
    leaves too, whether its shown part went out now or earlier."""
    f = StopFilter(("XY",))
    assert f.feed("ab", 1) == ("ab", False, (1,))
    assert f.feed("cX", 2) == ("c", False, ())          # X may start the stop string: held
    assert f.feed("Z", 3) == ("XZ", False, (2, 3))       # it did not: both tokens leave
    assert f.feed("X", 4) == ("", False, ()) and f.flush() == ("X", (4,))
    f = StopFilter(("XY",))
    assert f.feed("a", 1) == ("a", False, (1,))
    assert f.feed("bX", 2) == ("b", False, ())
    assert f.feed("Yc", 3) == ("", True, (2,))           # 2's "b" was shown; 3 never was
    f = StopFilter(("XY",))
    assert f.feed("aXYbXY", 1) == ("a", True, (1,))      # the first occurrence ends it
    f = StopFilter(("XY",))
    assert f.feed("a", 1) == ("a", False, (1,))
    assert f.feed("XY", 2) == ("", True, ())             # a token wholly inside the stop: not shown
    f = StopFilter(("XY",))
    assert f.feed("cX", 2) == ("c", False, ()) and f.feed("Zpq", 3) == ("XZpq", False, (2, 3))
    f = StopFilter(("XY",))
    assert f.feed("cX", 2) == ("c", False, ()) and f.feed("ZX", 3) == ("XZ", False, (2,))
    assert f.feed("Q", 4) == ("XQ", False, (3, 4))
    # a token shown one character at a time leaves with its last one
    f = StopFilter(("XYZQ", "YZWQ"))
    assert f.feed("aXYZ", 1) == ("a", False, ())
    assert f.feed("W", 2) == ("X", False, ())            # YZW may still start the second stop
    assert f.feed("R", 3) == ("YZWR", False, (1, 2, 3))
    assert StopFilter(()).feed("ab", 7) == ("ab", False, (7,)) and StopFilter(()).feed("ab") == ("ab", False, ())
