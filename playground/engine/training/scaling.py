"""A scaling ladder: several model sizes trained one after another on the same corpus and budget,
yielding events (each run's own training events inside), then a power law fitted through them.
run_frontier trains every size to each of a few compute budgets: the best size per budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from playground.engine.analysis.powerlaw import Fit, fit_power_law, verdict
from playground.engine.config import ModelConfig, TrainConfig, check_fits_text
from playground.engine.data.corpus import Corpus
from playground.engine.errors import ConfigError
from playground.engine.events import Done, Eval
from playground.engine.model.param_count import count_params
from playground.engine.training.control import TrainControl

SIZE_RULE = ("Sizes are spaced geometrically in parameters; depth grows with the target size "
             "(1 layer below 25k parameters, 2 below 150k, 3 below 800k, 4 below 4M, then 6) and "
             "the width is the one, a multiple of 8 with heads = width // 32 (at least 1) dividing "
             "it, that lands nearest the target; block size, batch, optimizer and learning rate "
             "come from the base settings.")
DEPTHS = ((25_000, 1), (150_000, 2), (800_000, 3), (4_000_000, 4), (math.inf, 6))
WIDTHS = range(8, 1025, 8)
SIZES_RANGE = (3, 12)
PARAMS_RANGE = (1_000, 100_000_000)
EVALS_PER_RUN = 9          # each run evaluates about this often (and at its last step)
MIN_FRONTIER_STEPS = 10    # an equal-compute run shorter than this is skipped
MAX_BUDGETS = 6


def _shape(cfg: ModelConfig, width: int) -> Optional[ModelConfig]:
    """The config at this width with heads = width // 32 (at least 1); None if invalid."""
    shaped = cfg.replace(n_embd=width, n_head=max(1, width // 32))
    return None if shaped.problems() else shaped


def ladder(base: ModelConfig, sizes: int = 5, smallest: int = 10_000,
           largest: int = 2_000_000) -> list[ModelConfig]:
    """`sizes` configs by SIZE_RULE, parameters roughly geometric from smallest to largest and
    strictly increasing (a size that would repeat the one below moves up a width). Everything
    but depth, width and heads (vocabulary, block size, dropout, positions) comes from base."""
    check_range(sizes, smallest, largest)
    ratio = (largest / smallest) ** (1 / (sizes - 1))
    configs: list[ModelConfig] = []
    by_depth: dict[int, list[ModelConfig]] = {}  # every valid width at a depth, checked once
    for i in range(sizes):
        target = smallest * ratio ** i
        depth = next(d for limit, d in DEPTHS if target < limit)
        if depth not in by_depth:
            by_depth[depth] = [c for c in (_shape(base.replace(n_layer=depth), w) for w in WIDTHS) if c]
        shaped = by_depth[depth]
        above = count_params(configs[-1]) if configs else 0
        fitting = [c for c in shaped if count_params(c) > above] or shaped[-1:]
        best = min(fitting, key=lambda c: abs(math.log(count_params(c) / target)))
        if count_params(best) <= above:
            raise ConfigError(f"no model of depth {depth} is larger than {above:,} parameters: "
                              "use fewer sizes or a smaller largest size")
        configs.append(best)
    if count_params(configs[-1]) > 2 * largest:
        raise ConfigError(f"{sizes} different sizes do not fit between {smallest:,} and "
                          f"{largest:,} parameters: widen the range or use fewer sizes")
    return configs


def check_range(sizes: int, smallest: int, largest: int) -> None:
    """ConfigError in words when a ladder of these sizes and bounds cannot be asked for."""
    low, high = SIZES_RANGE
    if not isinstance(sizes, int) or not low <= sizes <= high:
        raise ConfigError(f"sizes {sizes} is out of range: a ladder has {low} to {high} sizes")
    for name, value in (("smallest", smallest), ("largest", largest)):
        if not PARAMS_RANGE[0] <= value <= PARAMS_RANGE[1]:
            raise ConfigError(f"{name} size {value:,} is out of range: use "
                              f"{PARAMS_RANGE[0]:,} to {PARAMS_RANGE[1]:,} parameters")
    if largest < 2 * smallest:
        raise ConfigError(f"largest size {largest:,} must be at least twice the smallest "
                          f"({smallest:,}): a ladder needs room to grow")


def train_flops(params: int, tokens: int) -> float:
    """Training compute, 6·N·D: N = every parameter (count_params, embeddings included: the
    number the learner sees), D = training tokens; a forward pass costs about 2·N per token and
    the backward twice that. Attention's own score FLOPs (6·layers·block·width per token) are
    not included; at our sizes they roughly offset counting the embedding tables, which are
    looked up rather than multiplied."""
    return 6.0 * params * tokens


@dataclass(frozen=True)
class Budget:
    """What every size of a ladder gets: mode "tokens" (the same training tokens) or "flops"
    (the same compute, so a model twice the size trains on half the tokens)."""
    mode: str
    amount: float

    def __post_init__(self):
        if self.mode not in ("tokens", "flops"):
            raise ConfigError(f"budget {self.mode!r} is unknown: use 'tokens' or 'flops'")
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) or \
                not math.isfinite(self.amount) or self.amount <= 0:
            raise ConfigError(f"a budget of {self.amount} {self.mode} is not usable: give a "
                              "positive number")

    def tokens_for(self, cfg: ModelConfig) -> float:
        if self.mode == "tokens":
            return float(self.amount)
        return self.amount / train_flops(count_params(cfg), 1)

    def steps_for(self, cfg: ModelConfig, train: TrainConfig) -> int:
        """Optimizer steps that spend the budget (batch x block tokens per step); at least 1."""
        return max(1, round(self.tokens_for(cfg) / (train.batch_size * cfg.block_size)))


@dataclass(frozen=True)
class RunResult:
    """One finished run of a ladder."""
    index: int                 # its place among the ladder's runs, from 0
    params: int
    n_layer: int
    n_head: int
    n_embd: int
    steps: int
    tokens: int                # trained (steps x batch x block)
    flops: float               # train_flops(params, tokens)
    train_seconds: float
    val_loss: Optional[float]  # of the weights kept: the best validation loss of the run
    best_step: Optional[int]
    last_val_losses: tuple     # the validation curve: ((step, val_loss), ...)
    verdict: str               # powerlaw.verdict(): "ok" | "undertrained" | "overfit" | "n/a"
    path: Optional[str] = None  # the run's model file, when out_dir is given
    budget_index: int = 0      # which compute budget (frontier mode)
    size_index: int = 0        # which size of the ladder


@dataclass(frozen=True)
class LadderStarted:
    runs: tuple        # one dict per planned run: index, params, n_layer, n_head, n_embd, steps,
    mode: str          # tokens, flops, budget_index, size_index; mode "tokens"|"flops"|"frontier"
    budgets: tuple     # the budgets' amounts (tokens or FLOPs)
    warning: str = ""  # e.g. runs skipped for too few steps
    rule: str = SIZE_RULE


@dataclass(frozen=True)
class RunStarted:
    index: int
    params: int
    steps: int
    budget_index: int = 0


@dataclass(frozen=True)
class RunEvent:
    index: int
    event: object      # the run's Trainer event: Started, Step, Eval, Sample or Done


@dataclass(frozen=True)
class RunFinished:
    result: RunResult
    seconds_left: Optional[float]  # the ladder's remaining FLOPs x seconds per FLOP so far


@dataclass(frozen=True)
class LadderDone:
    runs: tuple                 # RunResult of every finished run (a stopped run is dropped)
    fit: Optional[Fit]          # None below three runs with a validation loss, and in frontier mode
    stopped: bool
    frontier: tuple = ()        # frontier mode: (budget FLOPs, best params, best loss) per budget


@dataclass(frozen=True)
class _Planned:
    index: int
    size_index: int
    budget_index: int
    config: ModelConfig
    steps: int
    tokens: int
    label: str         # the start of its model file's name: scale-2, or scale-b1-2 per budget

    def describe(self) -> dict:
        c = self.config
        return {"index": self.index, "params": count_params(c), "n_layer": c.n_layer,
                "n_head": c.n_head, "n_embd": c.n_embd, "steps": self.steps, "tokens": self.tokens,
                "flops": train_flops(count_params(c), self.tokens),
                "budget_index": self.budget_index, "size_index": self.size_index}


def run_settings(base: TrainConfig, steps: int) -> TrainConfig:
    """A ladder run's training settings: the base ones for `steps` steps, evaluated about
    EVALS_PER_RUN times, ending on the best weights, no early stop and no samples."""
    return base.edited(max_steps=steps, eval_interval=max(1, math.ceil(steps / EVALS_PER_RUN)),
                       sample_chars=0, keep="best", patience=0).check()


def _sized(corpus: Corpus, base_model: ModelConfig, base_train: TrainConfig) -> ModelConfig:
    model = base_model.replace(vocab_size=corpus.tokenizer.vocab_size).check()
    base_train.check()
    check_fits_text(model, base_train, corpus.n_train, corpus.tokenizer.unit)
    return model


def run_ladder(corpus: Corpus, base_model: ModelConfig, base_train: TrainConfig, sizes: int,
               budget: Budget, control: Optional[TrainControl] = None,
               out_dir: Optional[str] = None, smallest: int = 10_000, largest: int = 2_000_000,
               device: str = "cpu") -> Iterator[object]:
    """Train `sizes` sizes (ladder()) one after another, each to the same budget, and fit
    L(N) through their validation losses. control.stop() ends the run in flight (it is dropped)
    and the ladder; finished runs are kept and fitted. out_dir keeps each run's model."""
    model = _sized(corpus, base_model, base_train)
    plan = []
    for i, cfg in enumerate(ladder(model, sizes, smallest, largest)):
        steps = budget.steps_for(cfg, base_train)
        plan.append(_Planned(i, i, 0, cfg, steps, steps * base_train.batch_size * cfg.block_size,
                             f"scale-{i + 1}"))
    short = [p for p in plan if p.steps < MIN_FRONTIER_STEPS]
    warning = (f"{len(short)} of {len(plan)} runs train fewer than {MIN_FRONTIER_STEPS} steps: "
               "raise the budget" if short else "")
    yield LadderStarted(tuple(p.describe() for p in plan), budget.mode, (budget.amount,), warning)
    yield from _run_plan(corpus, plan, base_train, control, out_dir, device, frontier=None)


def run_frontier(corpus: Corpus, base_model: ModelConfig, base_train: TrainConfig, sizes: int,
                 budgets_flops: Sequence[float], control: Optional[TrainControl] = None,
                 out_dir: Optional[str] = None, smallest: int = 10_000, largest: int = 2_000_000,
                 device: str = "cpu") -> Iterator[object]:
    """Equal compute: every size trained to each FLOP budget in turn; LadderDone.frontier holds
    the best size per budget (the learner's compute-optimal frontier). A (size, budget) whose
    run would be shorter than MIN_FRONTIER_STEPS steps is skipped, and LadderStarted says so."""
    model = _sized(corpus, base_model, base_train)
    budgets = [Budget("flops", b) for b in budgets_flops]
    if not 1 <= len(budgets) <= MAX_BUDGETS:
        raise ConfigError(f"give 1 to {MAX_BUDGETS} compute budgets, not {len(budgets)}")
    configs = ladder(model, sizes, smallest, largest)
    plan, skipped = [], 0
    for b, budget in enumerate(budgets):
        for s, cfg in enumerate(configs):
            steps = budget.steps_for(cfg, base_train)
            if steps < MIN_FRONTIER_STEPS:
                skipped += 1
                continue
            tokens = steps * base_train.batch_size * cfg.block_size
            plan.append(_Planned(len(plan), s, b, cfg, steps, tokens, f"scale-b{b + 1}-{s + 1}"))
    if not plan:
        raise ConfigError(f"every size would train fewer than {MIN_FRONTIER_STEPS} steps at "
                          "these budgets: raise them")
    warning = (f"skipped {skipped} of {len(budgets) * len(configs)} runs: fewer than "
               f"{MIN_FRONTIER_STEPS} steps at their budget" if skipped else "")
    yield LadderStarted(tuple(p.describe() for p in plan), "frontier",
                        tuple(float(b.amount) for b in budgets), warning)
    yield from _run_plan(corpus, plan, base_train, control, out_dir, device,
                         frontier=[b.amount for b in budgets])


def _run_plan(corpus, plan, base_train, control, out_dir, device, frontier) -> Iterator[object]:
    control = control or TrainControl()
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    settings = [run_settings(base_train, p.steps) for p in plan]  # every run's checked first
    results: list[RunResult] = []
    stopped = False
    for planned, train in zip(plan, settings):
        if control.stopped:
            stopped = True
            break
        yield RunStarted(planned.index, count_params(planned.config), planned.steps,
                         planned.budget_index)
        result = yield from _train_one(corpus, planned, train, control, out_dir, device)
        if result is None:
            stopped = True
            break
        results.append(result)
        yield RunFinished(result, _seconds_left(results, plan))
    yield LadderDone(tuple(results), None if frontier else _fit(results), stopped,
                     _frontier(results, frontier) if frontier else ())


def _train_one(corpus, planned: _Planned, train: TrainConfig, control, out_dir, device):
    """Yield the run's events; return its RunResult, or None when it was stopped midway."""
    from playground.engine.training.prepare import prepare_trainer
    trainer = prepare_trainer(corpus, planned.config, train, device=device)
    curve, done = [], None
    for event in trainer.run(control):
        if isinstance(event, Eval):
            curve.append((event.step, event.val_loss))
        elif isinstance(event, Done):
            done = event
        yield RunEvent(planned.index, event)
    if done is None or done.status == "stopped":
        return None
    path = None
    if out_dir is not None:
        from playground.engine.model import checkpoint
        name = f"{planned.label}-{_short(done.params)}.safetensors"
        path = str(checkpoint.save(Path(out_dir) / name,
                                   trainer.checkpoint(with_optimizer=False)))
    c = planned.config
    val = done.best_val_loss if done.best_val_loss is not None else done.final_val_loss
    return RunResult(planned.index, done.params, c.n_layer, c.n_head, c.n_embd, planned.steps,
                     done.tokens, train_flops(done.params, done.tokens), done.train_seconds, val,
                     done.best_step, tuple(curve),
                     "diverged" if done.status == "diverged" else verdict(curve), path,
                     planned.budget_index, planned.size_index)


def _short(params: int) -> str:
    """12k, 1.2M: a size in a file name."""
    if params >= 1_000_000:
        return f"{params / 1e6:.1f}M"
    return f"{params / 1e3:.0f}k" if params >= 1000 else str(params)


def _seconds_left(results: list[RunResult], plan: list[_Planned]) -> Optional[float]:
    """The FLOPs still to train times the seconds per FLOP measured so far."""
    spent = sum(r.flops for r in results)
    if spent <= 0:
        return None
    left = sum(p.describe()["flops"] for p in plan[len(results):])
    return left * sum(r.train_seconds for r in results) / spent


def _fittable(results) -> list[RunResult]:
    return [r for r in results if r.val_loss is not None and r.verdict != "diverged"]


def _fit(results: list[RunResult]) -> Optional[Fit]:
    usable = _fittable(results)
    if len(usable) < 3:
        return None
    return fit_power_law([r.params for r in usable], [r.val_loss for r in usable])


def _frontier(results: list[RunResult], budgets: list[float]) -> tuple:
    """(budget FLOPs, params, loss) of the lowest validation loss at each budget."""
    rows = []
    for b, amount in enumerate(budgets):
        runs = [r for r in _fittable(results) if r.budget_index == b]
        if runs:
            best = min(runs, key=lambda r: r.val_loss)
            rows.append((float(amount), best.params, best.val_loss))
    return tuple(rows)
