"""The scaling ladder: the power-law fit, the size rule, budgets, verdicts, and tiny ladders run
end to end (with Stop midway and the equal-compute frontier)."""

import math

import numpy as np
import pytest

from playground.engine.analysis.powerlaw import fit_power_law, verdict
from playground.engine.data.corpus import build_corpus, builtin_text
from playground.engine.errors import ConfigError
from playground.engine.events import Done, Started, Step
from playground.engine.model import checkpoint
from playground.engine.model.gpt import GPT
from playground.engine.presets import PRESETS
from playground.engine.training import scaling
from playground.engine.training.control import TrainControl

TRUE_E, TRUE_A, TRUE_ALPHA = 1.5, 20.0, 0.3
N = np.geomspace(1e4, 2e6, 6)


def truth(n):
    return TRUE_E + TRUE_A * n ** -TRUE_ALPHA


# -- the fit ------------------------------------------------------------------------------
def test_fit_recovers_exact_points():
    fit = fit_power_law(N, truth(N))
    assert fit.ok and fit.warning == "" and fit.points == 6 and fit.r2 > 0.9999
    assert fit.E == pytest.approx(TRUE_E, abs=1e-3)
    assert fit.A == pytest.approx(TRUE_A, rel=1e-3)
    assert fit.alpha == pytest.approx(TRUE_ALPHA, abs=1e-3)
    ratio = (2e6 / 1e4) ** (1 / 5)  # the ladder's step: the next size is one more of it
    assert fit.next_params == pytest.approx(2e6 * ratio, rel=1e-6)
    assert fit.predicted_loss == pytest.approx(truth(fit.next_params), rel=1e-4)
    assert fit.loss(1e5) == pytest.approx(truth(1e5), rel=1e-4)


@pytest.mark.parametrize("truth_e, truth_a, truth_alpha", [(1.5, 20.0, 0.3), (0.7, 5.0, 0.15), (2.0, 300.0, 0.6)])
def test_fit_finishes_the_least_squares_exactly(truth_e, truth_a, truth_alpha):
    """The grid over E only gets within ~1e-5 of exact points; the refinement must land on
    them (1e-9); and on noisy points it must end at a minimum of the squared error in L: no
    small step in E, log A or alpha lowers it (the grid's answer fails this)."""
    fit = fit_power_law(N, truth_e + truth_a * N ** -truth_alpha)
    assert fit.E == pytest.approx(truth_e, abs=1e-9) and fit.alpha == pytest.approx(truth_alpha, abs=1e-9)
    assert fit.A == pytest.approx(truth_a, rel=1e-9)
    y = (truth_e + truth_a * N ** -truth_alpha) * (1 + 0.01 * np.random.default_rng(0).standard_normal(len(N)))
    fit = fit_power_law(N, y)

    def sse(E, log_a, alpha):
        return float(np.sum((E + math.exp(log_a) * N ** -alpha - y) ** 2))
    best = sse(fit.E, math.log(fit.A), fit.alpha)
    for i in range(3):
        for h in (1e-5, -1e-5):
            moved = [fit.E, math.log(fit.A), fit.alpha]
            moved[i] += h
            assert sse(*moved) > best, f"a step of {h} in parameter {i} lowers the squared error"


@pytest.mark.parametrize("seed", range(5))
def test_fit_recovers_noisy_points_within_tolerance(seed):
    """Stated tolerance: with 0.1% multiplicative noise on six losses over N = 1e4..2e6,
    E within 0.03, A within 15% and alpha within 0.02 (the worst of 200 seeds: 0.019, 9%, 0.011)."""
    rng = np.random.default_rng(seed)
    fit = fit_power_law(N, truth(N) * (1 + 0.001 * rng.standard_normal(len(N))))
    assert fit.ok, fit.warning
    assert abs(fit.E - TRUE_E) < 0.03
    assert abs(fit.A / TRUE_A - 1) < 0.15
    assert abs(fit.alpha - TRUE_ALPHA) < 0.02


@pytest.mark.parametrize("count", [0, 1, 2])
def test_fit_refuses_fewer_than_three_points(count):
    with pytest.raises(ConfigError, match="at least three runs"):
        fit_power_law(N[:count], truth(N[:count]))


def test_fit_refuses_nonsense():
    with pytest.raises(ConfigError):
        fit_power_law([1e4, 2e4, -3e4], [3.0, 2.0, 1.0])
    with pytest.raises(ConfigError):
        fit_power_law([1e4, 2e4, 3e4], [3.0, float("nan"), 1.0])


def test_three_points_fit_but_are_not_evidence():
    fit = fit_power_law(N[:3], truth(N[:3]))
    assert not fit.ok and "three" in fit.warning
    assert fit.alpha == pytest.approx(TRUE_ALPHA, abs=0.01)


def test_random_losses_are_flagged_as_a_poor_fit():
    rng = np.random.default_rng(7)
    fit = fit_power_law(N, rng.uniform(1.0, 3.0, len(N)))
    assert not fit.ok and fit.warning
    zigzag = fit_power_law(N, [2.0, 1.5, 1.9, 1.4, 1.8, 1.3])
    assert not zigzag.ok and "poor fit" in zigzag.warning and "did not fall" in zigzag.warning
    rising = fit_power_law(N, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    assert not rising.ok and rising.A == 0 and rising.alpha == 0 and "does not fall" in rising.warning


# -- verdicts -----------------------------------------------------------------------------
@pytest.mark.parametrize("losses, expected", [
    ([3.0, 2.5, 2.2, 2.0, 1.9, 1.8, 1.7, 1.6], "undertrained"),  # still falling at the end
    ([3.0, 2.2, 2.0, 1.95, 1.96, 2.05, 2.2, 2.4], "overfit"),      # turned up after step 400
    ([3.0, 2.2, 2.0, 1.95, 1.95, 1.95, 1.95, 1.949], "ok"),        # flat at the end
    ([3.0, 2.2, 2.0, 1.95, 1.95, 1.955, 1.95, 1.96], "ok"),        # noise within 1%
    ([3.0, 2.0], "n/a"),                                            # too short to tell
])
def test_verdict_reads_the_validation_curve(losses, expected):
    curve = tuple((100 * (i + 1), v) for i, v in enumerate(losses))
    assert verdict(curve) == expected


# -- sizes and budgets --------------------------------------------------------------------
BASE = PRESETS["shakespeare-fast"].model  # vocabulary 65, block 64


@pytest.mark.parametrize("sizes, smallest, largest", [(5, 10_000, 2_000_000), (12, 10_000, 2_000_000),
                                                      (3, 2_000, 20_000)])
def test_ladder_grows_strictly_within_the_range(sizes, smallest, largest):
    configs = scaling.ladder(BASE, sizes, smallest, largest)
    params = [GPT(c).num_params() for c in configs]
    assert len(configs) == sizes
    assert all(a < b for a, b in zip(params, params[1:]))
    assert smallest / 1.5 <= params[0] and params[-1] <= largest * 1.5
    for c in configs:
        assert c.vocab_size == 65 and c.block_size == 64 and c.n_head == max(1, c.n_embd // 32)
        assert not c.problems()
    assert [c.n_layer for c in configs] == sorted(c.n_layer for c in configs)  # depth never shrinks


def test_ladder_keeps_the_base_architecture():
    rope = BASE.replace(position="rope", head_bias=False)
    for c in scaling.ladder(rope, 4, 20_000, 400_000):
        assert c.position == "rope" and not c.head_bias and c.head_size % 2 == 0


@pytest.mark.parametrize("sizes, smallest, largest", [(2, 10_000, 2_000_000), (13, 10_000, 2_000_000),
                                                      (5, 10_000, 15_000), (12, 1_000, 2_000),
                                                      (5, 10, 2_000_000), (5, 10_000, 10**9)])
def test_ladder_refuses_impossible_requests(sizes, smallest, largest):
    with pytest.raises(ConfigError):
        scaling.ladder(BASE, sizes, smallest, largest)


def test_equal_tokens_and_equal_flops_budgets():
    train = PRESETS["shakespeare-fast"].train
    per_step = train.batch_size * BASE.block_size
    configs = scaling.ladder(BASE, 5)
    tokens = [scaling.Budget("tokens", 1e6).steps_for(c, train) * per_step for c in configs]
    assert len(set(tokens)) == 1 and abs(tokens[0] - 1e6) <= per_step / 2
    flops = 1e13
    for c in configs:
        n = GPT(c).num_params()
        steps = scaling.Budget("flops", flops).steps_for(c, train)
        assert abs(steps * per_step - flops / (6 * n)) <= per_step / 2  # tokens = C / (6 N)
        assert abs(scaling.train_flops(n, steps * per_step) - flops) <= 6 * n * per_step / 2
    assert scaling.Budget("tokens", 1).steps_for(configs[0], train) == 1  # never zero steps


@pytest.mark.parametrize("mode, amount", [("tokens", 0), ("flops", -1e12), ("flops", math.inf),
                                          ("steps", 100), ("tokens", True)])
def test_budget_refuses_bad_input(mode, amount):
    with pytest.raises(ConfigError):
        scaling.Budget(mode, amount)


# -- tiny ladders end to end --------------------------------------------------------------
TINY = {"smallest": 2_000, "largest": 20_000}


@pytest.fixture(scope="module")
def fable():
    preset = PRESETS["tiny"]
    train = preset.train.replace(threads=1, eval_batches=4)
    corpus = build_corpus("fable", builtin_text("fable"), train.val_fraction, preset.model.block_size)
    return corpus, preset.model, train


def test_a_ladder_of_three_runs_end_to_end(fable, tmp_path):
    corpus, model, train = fable
    events = list(scaling.run_ladder(corpus, model, train, 3, scaling.Budget("tokens", 12_000),
                                     out_dir=str(tmp_path), **TINY))
    started, done = events[0], events[-1]
    assert isinstance(started, scaling.LadderStarted) and len(started.runs) == 3
    assert isinstance(done, scaling.LadderDone) and not done.stopped and done.frontier == ()
    finished = [e for e in events if isinstance(e, scaling.RunFinished)]
    assert [f.result.index for f in finished] == [0, 1, 2] and finished[-1].seconds_left == 0
    inner = [e.event for e in events if isinstance(e, scaling.RunEvent)]
    assert sum(isinstance(e, Started) for e in inner) == 3 and sum(isinstance(e, Done) for e in inner) == 3
    runs = done.runs
    assert [r.params for r in runs] == [p["params"] for p in started.runs]
    assert all(r.tokens == 23 * 16 * 32 and r.steps == 23 for r in runs)  # 12k tokens / 512 per step
    for r in runs:
        assert r.flops == 6 * r.params * r.tokens and r.val_loss is not None
        assert r.verdict in ("ok", "undertrained", "overfit") and len(r.last_val_losses) >= 8
        assert checkpoint.load(r.path, with_optimizer=False).model.num_params() == r.params
    assert done.fit is not None and done.fit.points == 3 and not done.fit.ok


@pytest.mark.parametrize("when", ["between runs", "midway through the second run"])
def test_stop_keeps_the_finished_runs(fable, when):
    corpus, model, train = fable
    control = TrainControl()
    events, seen_finished = [], False
    for event in scaling.run_ladder(corpus, model, train, 3, scaling.Budget("tokens", 12_000),
                                    control, **TINY):
        events.append(event)
        if isinstance(event, scaling.RunFinished):
            seen_finished = True
            if when == "between runs":
                control.stop()
        if seen_finished and isinstance(event, scaling.RunEvent) and isinstance(event.event, Step) \
                and event.event.step == 5:
            control.stop()
    done = events[-1]
    assert isinstance(done, scaling.LadderDone) and done.stopped
    assert len(done.runs) == 1 and done.runs[0].index == 0 and done.fit is None
    starts = [e for e in events if isinstance(e, scaling.RunStarted)]
    assert len(starts) == (1 if when == "between runs" else 2)


def test_the_frontier_finds_the_best_size_per_budget(fable):
    corpus, model, train = fable
    events = list(scaling.run_frontier(corpus, model, train, 3, [3e8, 8e8], **TINY))
    started, done = events[0], events[-1]
    # 3e8 FLOPs gives the largest size (16.6k params) fewer than 10 steps: skipped
    assert "skipped 1 of 6" in started.warning and started.mode == "frontier"
    assert [r.budget_index for r in done.runs] == [0, 0, 1, 1, 1]
    assert done.fit is None and [b for b, _, _ in done.frontier] == [3e8, 8e8]
    for index, (_, params, loss) in enumerate(done.frontier):
        best = min((r for r in done.runs if r.budget_index == index), key=lambda r: r.val_loss)
        assert (params, loss) == (best.params, best.val_loss)
