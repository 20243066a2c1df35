"""The trainer: loss falls, runs repeat exactly, pause/stop work from another thread,
a non-finite loss stops with the last good weights."""

import math
import threading

import pytest
import torch

from playground.engine.data.corpus import build_corpus, builtin_text
from playground.engine.events import Done, Eval, Sample, Started, Step
from playground.engine.presets import PRESETS
from playground.engine.training.schedule import lr_at, schedule
from playground.engine.training.trainer import Trainer


def _run(trainer):
    return list(trainer.run())


def test_loss_falls_on_the_phrase(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    events = _run(Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=80), phrase_corpus))
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert len(losses) == 80
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert isinstance(events[0], Started) and isinstance(events[-1], Done)
    assert events[-1].status == "completed" and events[-1].step == 80


def test_seeded_runs_are_identical(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    a = [e.loss for e in _run(Trainer(tiny_model_cfg, tiny_train_cfg, phrase_corpus)) if isinstance(e, Step)]
    b = [e.loss for e in _run(Trainer(tiny_model_cfg, tiny_train_cfg, phrase_corpus)) if isinstance(e, Step)]
    c = [e.loss for e in _run(Trainer(tiny_model_cfg, tiny_train_cfg.replace(seed=7), phrase_corpus))
         if isinstance(e, Step)]
    assert a == b and a != c


def test_eval_and_sample_events_at_each_interval(tiny_model_cfg, tiny_train_cfg):
    corpus = build_corpus("fable", builtin_text("fable"), 0.1, 8)
    cfg = tiny_model_cfg.replace(vocab_size=corpus.tokenizer.vocab_size)
    events = _run(Trainer(cfg, tiny_train_cfg, corpus))
    evals = [e for e in events if isinstance(e, Eval)]
    samples = [e for e in events if isinstance(e, Sample)]
    assert [e.step for e in evals] == [10, 20, 30] == [s.step for s in samples]
    assert all(e.val_loss is not None and e.val_ppl == math.exp(e.val_loss) for e in evals)
    assert all(len(s.text) == 10 for s in samples)


def test_seed_preset_does_what_the_book_shows():
    """The phrase, repeated: 103,821 parameters, loss below 0.1, and greedy generation from
    "to be " goes round the phrase again, as the book's sample does."""
    from playground.engine.config import SampleConfig
    from playground.engine.model.generation import generate
    preset = PRESETS["seed"]
    corpus = build_corpus("phrase", builtin_text("phrase"), 0.1, preset.model.block_size)
    trainer = Trainer(preset.model, preset.train.replace(sample_chars=0), corpus)
    done = _run(trainer)[-1]
    assert done.status == "completed" and done.params == 103_821
    assert done.final_loss <= 0.1
    text = generate(trainer.model, corpus.tokenizer, "to be ", SampleConfig(max_new_chars=120, temperature=0))
    assert "that is the question to be or not to be that is the question" in "to be " + text


def test_schedule_values_by_hand(tiny_train_cfg):
    """Warm-up 4 to a peak of 1e-3: steps 0..3 take 1/5..4/5 of the peak (the first step
    learns, at lr > 0), step 4 the peak; then a cosine over the 4 steps left down to 1e-4 at
    step 8: 1e-4 + 9e-4 (1 + cos(pi k / 4)) / 2 at step 4 + k. A peak of 2e-3 (the other
    optimizer's) scales every value, the minimum with it."""
    cfg = tiny_train_cfg.replace(learning_rate=1e-3, min_lr=1e-4, warmup_steps=4, max_steps=8)
    cosine = [1e-4 + 9e-4 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)]
    expected = [2e-4, 4e-4, 6e-4, 8e-4] + cosine
    assert [lr_at(s, 8, cfg) for s in range(9)] == pytest.approx(expected, rel=1e-12)
    assert [lr_at(s, 8, cfg, peak=2e-3) for s in range(9)] == pytest.approx([2 * v for v in expected], rel=1e-12)
    assert schedule(cfg) == pytest.approx(expected[:8], rel=1e-12)  # one value per step
    no_warmup = cfg.replace(warmup_steps=0)
    assert lr_at(0, 8, no_warmup) == 1e-3 and lr_at(4, 8, no_warmup) == pytest.approx(5.5e-4, rel=1e-12)
    # past the end it stays at the minimum; one step after the warm-up is the whole cosine
    assert lr_at(12, 8, cfg) == pytest.approx(1e-4, rel=1e-12)
    assert lr_at(4, 5, cfg) == 1e-3 and lr_at(5, 5, cfg) == pytest.approx(1e-4, rel=1e-12)


def test_weight_decay_shrinks_matrices_only(tiny_model_cfg):
    """With zero gradients an AdamW step only decays: each embedding and weight matrix is
    multiplied by 1 - lr x decay, and no bias or layer-norm parameter moves. Checked on the
    optimizers the trainer uses, plain and flat."""
    from playground.engine.config import TrainConfig
    from playground.engine.model.gpt import GPT
    from playground.engine.training.step import choose_path
    train = TrainConfig(learning_rate=0.5, weight_decay=0.1)
    for plain_only in (True, False):
        torch.manual_seed(0)
        model = GPT(tiny_model_cfg)
        with torch.no_grad():  # biases and layer norms away from 0 and 1, so decay would show
            for p in model.parameters():
                p.add_(torch.rand_like(p) + 0.5)
        path = choose_path(model, model, train, torch.device("cpu"), plain_only=plain_only)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p) if p.grad is None else p.grad.zero_()
        for opt, _ in path.optimizers:
            opt.step()
        for name, p in model.named_parameters():
            is_matrix = not (name.endswith(".bias") or name.split(".")[-2] in ("ln_1", "ln_2", "ln_f"))
            factor = 1 - 0.5 * 0.1 if is_matrix else 1.0
            torch.testing.assert_close(p.detach(), before[name] * factor, rtol=1e-6, atol=0,
                                       msg=f"{path.name}: {name} should be scaled by {factor}")


def test_schedule_warms_up_then_decays_to_min_lr(tiny_train_cfg):
    cfg = tiny_train_cfg.replace(learning_rate=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    lrs = [lr_at(s, 110, cfg) for s in range(111)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3
    assert math.isclose(lrs[10], 1e-3) and math.isclose(lrs[110], 1e-4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


class _Run:
    """A trainer running on a thread, its events collected; wait_for_step() blocks on a
    condition the consuming thread signals, not on sleeps."""

    def __init__(self, trainer):
        self.trainer, self.events = trainer, []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._consume)
        self.thread.start()

    def _consume(self):
        for event in self.trainer.run():
            with self.changed:
                self.events.append(event)
                self.changed.notify_all()

    def wait_for_step(self, step: int, timeout: float = 60) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: any(isinstance(e, Step) and e.step >= step for e in self.events), timeout)


def test_stop_from_another_thread(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    trainer = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=100_000), phrase_corpus)
    run = _Run(trainer)
    assert run.wait_for_step(1)
    trainer.control.stop()
    run.thread.join(10)
    assert not run.thread.is_alive()
    done = run.events[-1]
    assert isinstance(done, Done) and done.status == "stopped" and 0 < done.step < 100_000


def test_pause_holds_the_step_count_and_resume_continues(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    # no evaluation inside the window and the last weights kept: Done.step is the step the run
    # stopped at (with keep="best" an evaluation could roll it back below held + 3)
    cfg = tiny_train_cfg.replace(max_steps=100_000, eval_interval=100_000, sample_chars=0, keep="last")
    trainer = Trainer(tiny_model_cfg, cfg, phrase_corpus)
    run = _Run(trainer)
    assert run.wait_for_step(3)
    trainer.control.pause()
    assert trainer.control.wait_parked(60), "the loop never stopped for the pause"
    held = trainer.step
    with run.changed:  # held between steps: every step applied so far was reported, no more
        assert max(e.step for e in run.events if isinstance(e, Step)) == held
    trainer.control.resume()
    assert run.wait_for_step(held + 3)
    trainer.control.stop()
    run.thread.join(10)
    assert run.events[-1].status == "stopped" and run.events[-1].step >= held + 3


def test_stop_while_paused_ends_the_run(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    trainer = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=100_000), phrase_corpus)
    trainer.control.pause()
    worker = threading.Thread(target=lambda: list(trainer.run()))
    worker.start()
    assert trainer.control.wait_parked(60)
    trainer.control.stop()
    worker.join(5)
    assert not worker.is_alive() and trainer.step == 0


def test_non_finite_loss_stops_and_keeps_the_last_good_weights(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    trainer = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=50), phrase_corpus)
    snapshot = None
    events = []
    for ev in trainer.run():
        events.append(ev)
        if isinstance(ev, Step) and ev.step == 4:
            snapshot = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        if isinstance(ev, Step) and ev.step == 5:
            with torch.no_grad():  # sabotage: the next forward pass gives NaN
                trainer.model.lm_head.weight.fill_(float("nan"))
    done = events[-1]
    # step 5's weights gave a NaN loss: the weights of step 4, the last finite loss, come back
    assert done.status == "diverged" and done.step == 4 == trainer.step
    assert "loss became nan at step 6" in done.message and "learning rate" in done.message
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k


def test_weights_broken_by_the_last_update_stop_at_the_evaluation(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    """A step's loss comes before its update: when the update itself leaves non-finite
    weights, the evaluation that follows finds it, and no sample is drawn from them."""
    trainer = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=50, eval_interval=10), phrase_corpus)
    snapshot, events = None, []
    for ev in trainer.run():
        events.append(ev)
        if isinstance(ev, Step) and ev.step == 9:
            snapshot = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        if isinstance(ev, Step) and ev.step == 10:  # just before its evaluation
            with torch.no_grad():
                trainer.model.lm_head.bias.fill_(float("inf"))
    done = events[-1]
    assert done.status == "diverged" and done.step == 9 == trainer.step
    assert "at step 10" in done.message and "learning rate" in done.message
    assert not any(isinstance(e, (Eval, Sample)) and e.step == 10 for e in events)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k


def test_the_fast_paths_train_like_autograd(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    from playground.engine.events import Step
    cfg = tiny_train_cfg.replace(max_steps=30)
    fast = Trainer(tiny_model_cfg, cfg, phrase_corpus)
    plain = Trainer(tiny_model_cfg, cfg, phrase_corpus, autograd=True)
    assert fast.path.name == "autograd + flat AdamW" and plain.path.name == "autograd"
    a = [e.loss for e in fast.run() if isinstance(e, Step)]
    b = [e.loss for e in plain.run() if isinstance(e, Step)]
    assert len(a) == len(b) == 30
    assert a == pytest.approx(b, rel=1e-3)  # float sums in another order, nothing more
    assert a[-1] < a[0]
    muon = Trainer(tiny_model_cfg, cfg.replace(optimizer="muon"), phrase_corpus)
    assert muon.path.name == "autograd" and "not AdamW" in muon.path.note


# -- weight averaging (TrainConfig.ema) ------------------------------------------------------
def test_weight_average_by_hand():
    from playground.engine.training.averaging import WeightAverage
    w = [torch.zeros(2)]
    avg = WeightAverage(w, 0.5)
    w[0].fill_(1.0)
    avg.update(w)      # carries (1 + 0) / (10 + 0) = 0.1 of the average: 0.1 * 0 + 0.9 * 1
    assert torch.allclose(avg.average[0], torch.full((2,), 0.9))
    w[0].fill_(2.0)
    avg.update(w)      # carries 2/11 (below 0.5): 2/11 * 0.9 + 9/11 * 2 = 1.8
    assert torch.allclose(avg.average[0], torch.full((2,), 1.8))
    avg.steps = 100    # (101 / 110 is above the decay: the decay's 0.5 is carried)
    assert avg.carried() == 0.5
    held = avg.swap_in(w)
    assert torch.equal(w[0], avg.average[0]) and torch.equal(held[0], torch.full((2,), 2.0))
    avg.give_back(w, held)
    assert torch.equal(w[0], torch.full((2,), 2.0))
    avg.put_in(w)
    assert torch.allclose(w[0], torch.full((2,), 1.8))


def test_a_run_with_weight_averaging_scores_and_ends_with_the_average(tiny_model_cfg, tiny_train_cfg,
                                                                      phrase_corpus):
    """The same run with and without averaging takes the same steps; with it, each evaluation
    scores the average of the weights after each step (by the update rule, restated here), a
    copy or a save taken mid-run holds it, and the run ends holding it."""
    cfg = tiny_train_cfg.replace(max_steps=12, eval_interval=6, keep="last")
    plain = Trainer(tiny_model_cfg, cfg, phrase_corpus)
    start = [p.detach().clone() for p in plain.model.parameters()]
    after_each = []
    steps = [e for e in plain.run() if isinstance(e, Step) and not after_each.append(
        [p.detach().clone() for p in plain.model.parameters()])]
    expected, by_step = start, {}
    for n, weights in enumerate(after_each):
        carried = min(0.8, (1 + n) / (10 + n))
        expected = by_step[n + 1] = [carried * a + (1 - carried) * w for a, w in zip(expected, weights)]
    averaged = Trainer(tiny_model_cfg, cfg.replace(ema=0.8), phrase_corpus)
    events = []
    for event in averaged.run():
        events.append(event)
        if isinstance(event, Step) and event.step == 7:  # a copy taken mid-run (the window's
            copy = [p.detach() for p in averaged.snapshot().parameters()]  # generate): the average
            assert all(torch.allclose(c, w, atol=1e-6) for c, w in zip(copy, by_step[7]))
            saved = [p.detach() for p in averaged.checkpoint().model.parameters()]
            assert all(torch.allclose(c, w, atol=1e-6) for c, w in zip(saved, by_step[7]))
    assert [e.loss for e in events if isinstance(e, Step)] == [e.loss for e in steps]
    got = [p.detach() for p in averaged.model.parameters()]
    assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, expected))
    assert not all(torch.allclose(g, r, atol=1e-4) for g, r in zip(got, after_each[-1]))
    last_eval = [e for e in events if isinstance(e, Eval)][-1]
    assert last_eval.val_loss == pytest.approx(averaged.estimate_loss("val"), abs=1e-6)
    assert events[-1].final_val_loss == last_eval.val_loss
