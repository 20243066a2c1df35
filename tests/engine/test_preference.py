"""Tuning by preference (DPO): pairs files and their messages, the loss against the paper's
formula, the completion-only log-probabilities, a run that learns the preference, LoRA's frozen
reference, and pairs made without a person that never touch the held-out tasks."""

import json
import math

import pytest
import torch

from playground.engine.config import AdaptConfig, ModelConfig, PreferenceConfig, TrainConfig
from playground.engine.data.corpus import builtin_text
from playground.engine.data.tasks import builtin_tasks
from playground.engine.errors import ConfigError
from playground.engine.events import Done, PreferenceEval, Step, to_json_dict
from playground.engine.model import checkpoint
from playground.engine.model.lora import has_adapters
from playground.engine.training.pairs import Pair, parse_pairs, read_pairs, write_pairs
from playground.engine.training.preference import (
    PreferenceTrainer,
    auto_pairs,
    completion_logps,
    dpo_loss,
    encode_pairs,
    prepare_preference,
)
from playground.engine.training.prepare import prepare_run

TEXT = "the cat sat on the mat. the dog sat on the log. " * 30
TRAIN = TrainConfig(batch_size=8, max_steps=40, learning_rate=1e-2, min_lr=1e-2, eval_interval=20, warmup_steps=0,
                    eval_batches=4, sample_chars=0, threads=1)


@pytest.fixture(scope="module")
def base():
    trainer = prepare_run("pets", TEXT, ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16), TRAIN)
    list(trainer.run())
    return trainer.checkpoint()


def pairs_of(n):
    """The model is asked to say 'cat' rather than 'dog' after the same words, in n pairs."""
    starts = ["the ", "a ", "on the ", "sat the ", "mat the ", "log the "]
    return [Pair(["", "sat ", "on "][i // len(starts) % 3] + starts[i % len(starts)], "cat", "dog") for i in range(n)]


# -- the pairs file -----------------------------------------------------------------------------
@pytest.mark.parametrize("line, words", [
    ('{"prompt": "a", "chosen": "b"}', "line 2: no 'rejected'"),
    ('{"prompt": "a", "chosen": "", "rejected": "c"}', "line 2: the chosen completion is empty"),
    ('{"prompt": "a", "chosen": "b", "rejected": "b"}', "line 2: chosen and rejected are the same text"),
    ('{"prompt": "a", "chosen": ["b"], "rejected": "c"}', "line 2: 'chosen' must be text, not list"),
    ('{"prompt": "a", "chosen": "b", ', "line 2: not JSON"),
    ('["a", "b", "c"]', "line 2: each line is one JSON object"),
])
def test_a_bad_line_is_named_with_what_is_wrong(line, words):
    good = json.dumps({"prompt": "x", "chosen": "y", "rejected": "z"})
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("[", r"\[")) as err:
        parse_pairs(good + "\n" + line + "\n", "mine.jsonl")
    assert "mine.jsonl" in str(err.value)


def test_pairs_round_trip_through_a_file_and_blank_lines_are_skipped(tmp_path):
    pairs = [Pair("q\u00e9 ", "yes\n", "no \"really\""), Pair("", "a", "b")]
    path = write_pairs(tmp_path / "sub" / "p.jsonl", pairs)
    path.write_text(path.read_text() + "\n\n", encoding="utf-8")
    back = read_pairs(path)
    assert [p.to_dict() for p in back] == [p.to_dict() for p in pairs] and [p.line for p in back] == [1, 2]
    assert not [f for f in path.parent.iterdir() if f.name.startswith(".")]  # no temporary file left
    with pytest.raises(ConfigError, match="holds no pairs"):
        parse_pairs("\n \n", "empty.jsonl")


def test_unknown_characters_and_texts_longer_than_the_block_are_named_by_line(base):
    with pytest.raises(ConfigError, match=r"p\.jsonl, line 7: characters the model never saw \('Z', 'q'\)"):
        encode_pairs([Pair("the ", "cat", "Zqq", line=7)], base.tokenizer, 16, "p.jsonl")
    with pytest.raises(ConfigError, match="line 3: the prompt is 16 tokens; the model sees 16"):
        encode_pairs([Pair("the cat sat on t", "c", "d", line=3)], base.tokenizer, 16, "p.jsonl")
    with pytest.raises(ConfigError, match="line 4: the prompt and the rejected completion are 18 tokens"):
        encode_pairs([Pair("the cat sat ", "on", "on the", line=4)], base.tokenizer, 16, "p.jsonl")
    # prompt + completion may be block + 1 tokens: the last one is only predicted
    assert encode_pairs([Pair("the cat sat ", "on th", "on a ", line=5)], base.tokenizer, 16)


def test_a_set_smaller_than_a_batch_says_so(base):
    with pytest.raises(ConfigError, match=r"leaves 6 pairs for training \(1 held out\), fewer than a batch of 8"):
        PreferenceTrainer(base, pairs_of(7), TRAIN, PreferenceConfig(heldout=0.1))


# -- the loss -----------------------------------------------------------------------------------
def test_completion_logps_count_the_completion_only_and_padding_never_leaks(base):
    model = base.model.eval()
    enc = encode_pairs([Pair("the ", "cat", "dog"), Pair("on the mat. ", "the d", "a")],
                       base.tokenizer, 16)
    items = [(e.prompt, e.chosen) for e in enc] + [(e.prompt, e.rejected) for e in enc]
    with torch.no_grad():
        together = completion_logps(model, items)
        for got, (prompt, completion) in zip(together, items):
            seq = torch.tensor([list(prompt) + list(completion)])
            logp = model(seq[:, :-1])[0].log_softmax(-1)[0]
            alone = sum(float(logp[len(prompt) - 1 + j, tok]) for j, tok in enumerate(completion))
            assert float(got) == pytest.approx(alone, abs=1e-4)


def test_the_loss_is_the_papers_formula():
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.5])
    loss, margin = dpo_loss(pc, pr, rc, rr, 0.5)
    by_hand = [0.5 * ((-1.0 + 1.5) - (-2.0 + 1.5)), 0.5 * ((-3.0 + 2.0) - (-1.0 + 2.5))]
    assert margin.tolist() == pytest.approx(by_hand)
    assert float(loss) == pytest.approx(sum(math.log1p(math.exp(-m)) for m in by_hand) / 2)
    plus, _ = dpo_loss(pc, pr, rc, rr, 0.5, nll=2.0, chosen_tokens=torch.tensor([2.0, 4.0]))
    assert float(plus) == pytest.approx(float(loss) + 2.0 * (1.0 / 2 + 3.0 / 4) / 2)
    assert float(dpo_loss(rc, rr, rc, rr, 0.1)[0]) == pytest.approx(math.log(2))  # policy = reference


# -- runs ---------------------------------------------------------------------------------------
def test_a_run_learns_the_preference_on_pairs_it_never_saw_and_measures_what_it_costs(base):
    train = TRAIN.replace(max_steps=30, eval_interval=10, learning_rate=3e-3, min_lr=3e-3)
    trainer, note = prepare_preference(base, pairs_of(40), train, PreferenceConfig(heldout=0.25, nll=0.0,
                                                                                   original_weight=0.0))
    assert note == "" and len(trainer.heldout) == 10 and len(trainer.train_pairs) == 30
    assert {id(p) for p in trainer.heldout}.isdisjoint({id(p) for p in trainer.train_pairs})
    events = list(trainer.run())
    evals = [e for e in events if isinstance(e, PreferenceEval)]
    assert [e.step for e in evals] == [0, 10, 20, 30]
    first, last = evals[0], evals[-1]
    assert first.heldout_loss == pytest.approx(math.log(2), abs=1e-5) and first.heldout_margin == 0
    assert last.heldout_accuracy == 1.0 and last.heldout_margin > 0.5 and last.heldout_loss < 0.5
    assert first.base_val_loss is not None and last.base_val_loss is not None  # the original text, scored
    assert isinstance(events[-1], Done) and events[-1].status == "completed"
    assert sum(isinstance(e, Step) for e in events) == 30
    assert to_json_dict(last)["event"] == "preference_eval"
    # the tuned model now says cat where the base said dog as often
    tuned = trainer.checkpoint()
    enc = encode_pairs(pairs_of(6), base.tokenizer, 16)
    items = [(e.prompt, e.chosen) for e in enc] + [(e.prompt, e.rejected) for e in enc]
    with torch.no_grad():
        before, after = completion_logps(base.model.eval(), items), completion_logps(tuned.model, items)
    assert ((after[:6] - after[6:]) > (before[:6] - before[6:]) + 1).all()
    assert tuned.state["preference"]["pairs"] == 30 and tuned.state["original"] == base.state["original"]


def test_the_chosen_nll_keeps_the_chosen_answers_likely(base):
    """DPO alone lowers the chosen answers' likelihood along with the rejected ones'; the NLL term
    does not let it."""
    train = TRAIN.replace(max_steps=30, learning_rate=1e-2, min_lr=1e-2, eval_interval=30)
    enc = encode_pairs(pairs_of(8), base.tokenizer, 16)
    chosen = [(e.prompt, e.chosen) for e in enc]
    logp = {}
    for nll in (0.0, 1.0):
        trainer = PreferenceTrainer(base, pairs_of(24), train, PreferenceConfig(heldout=0.0, nll=nll, original_weight=0))
        list(trainer.run())
        with torch.no_grad():
            logp[nll] = float(completion_logps(trainer.model.eval(), chosen).mean())
    assert logp[1.0] > logp[0.0] + 1


def test_lora_trains_adapters_against_the_frozen_base_and_saves_an_ordinary_model(base, tmp_path):
    train = TRAIN.replace(max_steps=20, eval_interval=20, learning_rate=1e-2, min_lr=1e-2)
    trainer = PreferenceTrainer(base, pairs_of(24), train, PreferenceConfig(heldout=0.0, original_weight=0),
                                AdaptConfig(method="lora", rank=4), original=None)
    n_train, total = trainer.trainable
    assert n_train < total / 4
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    list(trainer.run())
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())  # the base is untouched
    path = checkpoint.save(tmp_path / "tuned.safetensors", trainer.checkpoint())
    back = checkpoint.load(path)
    assert not has_adapters(back.model) and back.state["preference"]["method"] == "lora"
    assert back.model_config == base.model_config


def test_the_original_text_weight_needs_the_original_text(base):
    bare = checkpoint.Checkpoint(base.model, base.tokenizer, base.train_config, {"corpus": "pasted text"})
    with pytest.raises(ConfigError, match="needs the model's original text"):
        prepare_preference(bare, pairs_of(20), TRAIN, PreferenceConfig(original_weight=1.0), weight_given=True)
    trainer, note = prepare_preference(bare, pairs_of(20), TRAIN, PreferenceConfig(original_weight=1.0))
    assert trainer.pref.original_weight == 0 and "not known" in note


def test_stop_ends_after_the_current_step_and_scores_what_was_trained(base):
    trainer = PreferenceTrainer(base, pairs_of(24), TRAIN.replace(max_steps=40, eval_interval=40),
                                PreferenceConfig(heldout=0.0, original_weight=0))
    events = []
    for ev in trainer.run():
        events.append(ev)
        if isinstance(ev, Step) and ev.step == 3:
            trainer.control.stop()
    assert events[-1].status == "stopped" and events[-1].step == 3
    assert [e.step for e in events if isinstance(e, PreferenceEval)] == [0, 3]


# -- pairs made without a person ------------------------------------------------------------------
def test_auto_pairs_come_from_training_lines_only_and_choose_the_right_sum():
    text = builtin_text("arithmetic")
    trainer = prepare_run("arithmetic", text, ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16),
                          TRAIN.replace(max_steps=1))
    base = trainer.checkpoint()
    pairs, made = auto_pairs(base, "arithmetic", samples=0)
    held = {t.prompt for t in builtin_tasks("arithmetic")}
    assert made["heldout_tasks"] == len(held) == 400
    assert pairs and not held & {p.prompt for p in pairs}
    assert made["pairs"] == len(pairs) <= made["sums"] - made["greedy_right"]
    for p in pairs[:500]:
        a, b = p.prompt.strip("\n=").split("+")
        assert p.chosen == f"{int(a) + int(b)}\n" and p.rejected != p.chosen and p.rejected
        assert f"{p.prompt.strip()}{p.chosen}" in text  # a line the model trained on
