"""Evaluation beyond the training loss: a text's loss, perplexity and bits per character over
every position, and task accuracy on held-out prompts."""

import json
import math

import pytest
import torch

from playground.engine.analysis.evaluation import loss_sum, score_tasks, score_text
from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.data.corpus import builtin_text
from playground.engine.data.tasks import Task, builtin_tasks, parse_tasks, read_tasks
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.errors import CorpusError
from playground.engine.model.gpt import GPT

PHRASE = "to be or not to be that is the question"


def test_perplexity_is_e_to_the_loss_and_the_same_text_scores_the_same(seed_model):
    model, tok = seed_model
    a, b = score_text(model, tok, builtin_text("phrase")), score_text(model, tok, builtin_text("phrase"))
    assert a == b
    assert a.perplexity == pytest.approx(math.exp(a.loss)) and a.bits_per_char == pytest.approx(a.loss / math.log(2))
    assert a.characters == len(builtin_text("phrase")) - 1 and a.unknown_characters == 0


def test_a_model_scores_its_own_text_better_than_an_unrelated_one(seed_model):
    model, tok = seed_model
    own = score_text(model, tok, builtin_text("phrase"))
    other = score_text(model, tok, builtin_text("fable"))
    assert own.loss < 0.2 < other.loss
    # the fable's characters the model never saw are counted, not silently dropped
    fable = builtin_text("fable")
    unknown = sum(1 for c in fable if c not in tok.stoi)
    assert other.unknown_characters == unknown > 0 and other.characters == len(fable) - unknown - 1


def test_every_position_is_scored_once_including_the_tail():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=4)).eval()
    ids = torch.randint(5, (11,))  # 10 targets: two windows of 4 and a tail of 2
    total, n = loss_sum(model, ids, 4)
    expected = 0.0
    for start, first in [(0, 0), (4, 0), (6, 2)]:  # the tail window counts its last 2 targets
        with torch.no_grad():
            logits, _ = model(ids[start:start + 4][None])
        losses = torch.nn.functional.cross_entropy(logits[0], ids[start + 1:start + 5], reduction="none")
        expected += float(losses[first:].sum())
    assert n == 10 and total == pytest.approx(expected, rel=1e-5)
    short_total, short_n = loss_sum(model, ids[:3], 4)  # shorter than one window
    assert short_n == 2 and short_total > 0


def test_a_memorised_text_answers_its_tasks_and_a_wrong_answer_counts_against(seed_model):
    model, tok = seed_model
    right = [Task("to be or not ", "to be that"), Task("that is the ", "question"),
             Task("question ", "to be or")]
    score = score_tasks(model, tok, right)
    assert (score.total, score.correct, score.accuracy) == (3, 3, 1.0) and not score.failures
    wrong = right[:2] + [Task("question ", "xyz")]
    score = score_tasks(model, tok, wrong)
    assert score.correct == 2 and score.accuracy == pytest.approx(2 / 3)
    assert score.failures[0].expected == "xyz" and score.failures[0].got == "to "


@pytest.mark.parametrize("content,words", [
    (b"2+2=\t4\nno tab here\n", "line 2: no tab"),
    (b"", "holds no tasks"),
    (b"\n\n   \n", "holds no tasks"),
    (b"a+b=\t\n", "expected answer after the tab is empty"),
    (b"\x89PNG\r\n\x00\x00binary", "binary"),
    (b"caf\xe9\t1\n", "not UTF-8"),
])
def test_bad_task_files_get_a_clear_message(tmp_path, content, words):
    path = tmp_path / "tasks.tsv"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=words):
        read_tasks(path)


def test_escapes_in_task_files():
    assert parse_tasks("\\n1+2=\t3\\n\n") == [Task("\n1+2=", "3\n")]
    assert parse_tasks("a\\\\b\ttab\\tin\n") == [Task("a\\b", "tab\tin")]


def test_held_out_tasks_never_appear_in_their_training_text():
    sums = set(builtin_text("arithmetic").splitlines())
    arithmetic = builtin_tasks("arithmetic")
    assert len(arithmetic) == 400 and len(sums) == 9600
    for task in arithmetic:
        a, b = task.prompt.strip("\n=").split("+")
        assert int(task.expected) == int(a) + int(b)
        assert f"{a}+{b}={task.expected.strip()}" not in sums
    counting = builtin_text("counting")
    tasks = builtin_tasks("counting")
    assert len(tasks) == 150
    for task in tasks:
        last = task.prompt.splitlines()[-1]
        assert int(task.expected) == int(last) + 1
        assert f"\n{last}\n{task.expected}" not in "\n" + counting  # the step itself is held out
        assert task.prompt in "\n" + counting or task.prompt in counting  # its lead-in is not


def test_the_evaluate_command_writes_json(tmp_path, seed_model, capsys):
    from playground.cli import main
    from playground.engine.model import checkpoint
    from playground.engine.model.checkpoint import Checkpoint
    model, tok = seed_model
    path = checkpoint.save(tmp_path / "seed", Checkpoint(model, tok, TrainConfig(), {"start_char": "t"}))
    tasks = tmp_path / "tasks.tsv"
    tasks.write_text("to be or not \tto be that\nthat is the \tquestion\nthat is the \tanswer\n")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(path), "--builtin", "fable", "--tasks", str(tasks), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"loss", "perplexity", "bits_per_char", "characters", "unknown_characters", "tasks"} <= result.keys()
    assert result["tasks"]["total"] == 3 and result["tasks"]["correct"] == 2
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    printed = capsys.readouterr().out
    assert "never saw were left out of the score" in printed and "2 of 3 answered" in printed
    assert main(["evaluate", str(path)]) == 2  # nothing to score: says so


def test_a_tokenizer_is_enough_to_score_short_texts():
    model = GPT(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=4, block_size=8)).eval()
    with pytest.raises(CorpusError, match="fewer than two characters"):
        score_text(model, CharTokenizer(list("abc")), "a zzz")


def _window_losses(model, ids, start, T):
    """Each target's loss in the window ids[start:start + T] (the reference for loss_sum)."""
    with torch.no_grad():
        logits, _ = model(ids[start:start + T][None])
    return torch.nn.functional.cross_entropy(logits[0], ids[start + 1:start + T + 1], reduction="none")


def test_full_loss_is_the_mean_over_every_target_in_any_batch_size():
    """Every target once, whatever the batches: 10 targets in windows of 4 (0, 4 and the tail
    window at 6, whose last 2 targets count), and 8 targets in exactly two windows (no tail)."""
    from playground.engine.analysis.evaluation import full_loss
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=4)).eval()
    ids = torch.randint(5, (11,))
    by_hand = [_window_losses(model, ids, s, 4)[f:] for s, f in [(0, 0), (4, 0), (6, 2)]]
    mean = float(torch.cat(by_hand).sum()) / 10
    for batch_size in (1, 2, 3, 64):
        assert full_loss(model, ids, 4, batch_size) == pytest.approx(mean, rel=1e-5), batch_size
    whole = float(torch.cat([_window_losses(model, ids[:9], s, 4) for s in (0, 4)]).sum())
    for batch_size in (1, 2):
        assert loss_sum(model, ids[:9], 4, batch_size) == (pytest.approx(whole, rel=1e-5), 8)
    # 9 targets: windows at 0 and 4, then the tail window at 5 counts its last target only
    nine = float(torch.cat([_window_losses(model, ids[:10], 0, 4), _window_losses(model, ids[:10], 4, 4),
                            _window_losses(model, ids[:10], 5, 4)[3:]]).sum())
    assert loss_sum(model, ids[:10], 4) == (pytest.approx(nine, rel=1e-5), 9)
    assert full_loss(model, ids[:1], 4) is None and full_loss(model, ids[:0], 4) is None
    assert full_loss(model, ids[:2], 4) == pytest.approx(float(_window_losses(model, ids[:2], 0, 1)[0]), rel=1e-5)
    model.train()  # scored in eval mode, and left as it was found
    assert full_loss(model, ids, 4) == pytest.approx(mean, rel=1e-5) and model.training


def test_text_score_figures_by_hand():
    from playground.engine.analysis.evaluation import TextScore
    score = TextScore(loss=2.0, tokens=10, characters=40, unknown_characters=3, unknown=tuple("abcdefghijkl"))
    assert score.perplexity == pytest.approx(math.exp(2.0), rel=1e-12)
    assert score.bits_per_char == pytest.approx(2.0 * 10 / 40 / math.log(2), rel=1e-12)  # 0.7213...
    assert score.to_dict() == {"loss": 2.0, "perplexity": score.perplexity, "bits_per_char": score.bits_per_char,
                               "tokens": 10, "characters": 40, "unknown_characters": 3,
                               "unknown": list("abcdefghij")}  # the first ten unknown characters
    assert TextScore(800.0, 1, 1, 0, ()).perplexity == math.exp(700.0)  # capped, not an overflow
    assert TextScore(1.5, 3, 0, 0, ()).bits_per_char == pytest.approx(1.5 * 3 / math.log(2))  # no characters: / 1


def test_score_text_counts_characters_and_unknown_ones_exactly():
    tok = CharTokenizer(list("abc"))
    model = GPT(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=4, block_size=8)).eval()
    score = score_text(model, tok, "abxcaby")  # x and y unknown: "abcab" is scored, 4 targets
    total, n = loss_sum(model, torch.tensor(tok.encode("abcab")), 8)
    assert (score.tokens, score.characters, score.unknown_characters, score.unknown) == (4, 4, 2, ("x", "y"))
    assert n == 4 and score.loss == pytest.approx(total / 4, rel=1e-6)
    assert (score_text(model, tok, "ab").tokens, score_text(model, tok, "xaby").characters) == (1, 1)  # two are enough


def test_task_scores_and_answers_by_hand():
    """An untrained model's greedy continuations are the answers: the expected text counts as
    answered when the answer starts with it; at most failures_kept wrong ones are kept, in order."""
    from playground.engine.analysis.evaluation import Answer, TaskScore, answer
    from playground.engine.config import SampleConfig
    from playground.engine.model.generation import generate
    tok = CharTokenizer(list("abc"))
    torch.manual_seed(1)
    model = GPT(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=8, block_size=8)).eval()
    greedy = generate(model, tok, "ab", SampleConfig(max_new_chars=3, temperature=0))
    wrong = "".join(next(c for c in "abc" if c != g) for g in greedy)
    tasks = [Task("ab", greedy), Task("ab", greedy[:2]), Task("ab", wrong), Task("ab", wrong[:1]), Task("ab", wrong)]
    score = score_tasks(model, tok, tasks, failures_kept=2)
    assert (score.total, score.correct, score.accuracy) == (5, 2, 0.4)
    assert score.failures == (Answer("ab", wrong, greedy), Answer("ab", wrong[:1], greedy[:1]))
    assert score.to_dict() == {"total": 5, "correct": 2, "accuracy": 0.4, "failures": [
        {"prompt": "ab", "expected": wrong, "got": greedy}, {"prompt": "ab", "expected": wrong[:1], "got": greedy[:1]}]}
    assert len(score_tasks(model, tok, [Task("ab", wrong)] * 6).failures) == 5  # five kept by default
    # an empty prompt starts from start_char (the training text's first character), else the first id
    from_c = generate(model, tok, "", SampleConfig(max_new_chars=3, temperature=0), "c")
    assert from_c != generate(model, tok, "", SampleConfig(max_new_chars=3, temperature=0))
    assert answer(model, tok, Task("", from_c), "c").correct and not answer(model, tok, Task("", from_c)).correct
    assert score_tasks(model, tok, [Task("", from_c)], "c").correct == 1
    assert answer(model, tok, Task("ab", greedy[:2])) == Answer("ab", greedy[:2], greedy[:2])
    assert answer(model, tok, Task("zz", "a")) == Answer("zz", "a", "")  # no known character: no answer
    assert Answer("p", "ab", "abc").correct and not Answer("p", "ab", "a").correct and Answer("p", "", "x").correct
    assert TaskScore(0, 0, ()).accuracy == 0.0 and TaskScore(4, 3, ()).accuracy == 0.75


def test_windows_go_to_the_model_in_batches_of_batch_size():
    """69 targets in windows of one: batches of 64 (the default) and the 5 left, or of batch_size."""
    from playground.engine.analysis.evaluation import full_loss
    model = GPT(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=4, block_size=1)).eval()
    rows = []
    real = model.forward

    def counting(x, *args, **kwargs):
        rows.append(len(x))
        return real(x, *args, **kwargs)
    model.forward = counting  # on the instance, for this test only
    ids = torch.arange(70) % 3
    full_loss(model, ids, 1)
    assert rows == [64, 5]
    rows.clear()
    full_loss(model, ids, 1, batch_size=30)
    assert rows == [30, 30, 9]
