"""When do induction heads form? Train the `induction` preset on the `repeat` corpus and read
the induction probe every few steps: the score at initialisation, the step where it jumps, and
whether the training loss bends there (Olsson et al. 2022 report a bump in the loss curve at the
heads' phase change). `python -m playground.bench.induction_formation [--every K] [--json FILE]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class Reading:
    step: int
    seconds: float            # training time so far (the probes' own time left out)
    train_loss: float         # mean of the steps' losses since the previous reading
    score: float              # the strongest head's induction score
    head: tuple[int, int]     # which head (layer, head), from 0
    loss_first_half: float
    loss_second_half: float


def measure(preset_name: str = "induction", every: int = 25, steps: Optional[int] = None,
            seed: Optional[int] = None, report=None) -> list[Reading]:
    """Train the preset from scratch, reading the probe at step 0 and every `every` steps."""
    from dataclasses import replace

    from playground.engine.analysis.interpret import induction
    from playground.engine.data.corpus import build_corpus, builtin_text
    from playground.engine.events import Step
    from playground.engine.presets import get_preset
    from playground.engine.training.trainer import Trainer
    preset = get_preset(preset_name)
    train = replace(preset.train, **{k: v for k, v in (("max_steps", steps), ("seed", seed)) if v is not None})
    corpus = build_corpus(preset.corpus, builtin_text(preset.corpus), train.val_fraction,
                          preset.model.block_size, kind=train.tokenizer, vocab_size=train.bpe_vocab)
    model_cfg = replace(preset.model, vocab_size=corpus.tokenizer.vocab_size)
    trainer = Trainer(model_cfg, train, corpus)

    probing = [0.0]   # seconds spent reading the probe: the trainer's clock runs on meanwhile

    def read(step: int, seconds: float, loss: float) -> Reading:
        t0 = time.perf_counter()
        found = induction(trainer.model, corpus.tokenizer)
        layer, head, score = found.best()
        reading = Reading(step, seconds - probing[0], loss, score, (layer, head), found.loss_first_half, found.loss_second_half)
        probing[0] += time.perf_counter() - t0
        if report:
            report(reading)
        return reading

    readings = [read(0, 0.0, float("nan"))]
    probing[0] = 0.0  # that reading came before the trainer's clock started
    losses: list[float] = []
    for event in trainer.run():
        if isinstance(event, Step):
            losses.append(event.loss)
            if event.step % every == 0 or event.step == train.max_steps:
                readings.append(read(event.step, event.elapsed_s, sum(losses) / len(losses)))
                losses = []
    return readings


def crossing(readings: list[Reading], share: float, least: float = 0.3) -> Optional[int]:
    """The index of the first reading whose score has risen `share` of the way from the first
    to the highest; None when the score never rose by `least` (no induction heads formed)."""
    start, top = readings[0].score, max(r.score for r in readings)
    if top - start < least:
        return None
    return next(i for i, r in enumerate(readings) if r.score >= start + share * (top - start))


def fall(readings: list[Reading], a: int, b: int) -> float:
    """The training loss's fall per 100 steps from reading a to reading b (the first reading,
    at step 0, has no training loss: its next one stands in)."""
    a = max(a, 1)
    if b <= a:
        return float("nan")
    return (readings[a].train_loss - readings[b].train_loss) / (readings[b].step - readings[a].step) * 100


def summary(readings: list[Reading]) -> dict:
    """The score at the start and the end; the jump as the steps from its onset (10% of the
    rise) to its middle (50%); the loss's fall per 100 steps before, during and after it."""
    onset, middle = crossing(readings, 0.1), crossing(readings, 0.5)
    out = {"initial_score": readings[0].score, "final_score": readings[-1].score,
           "final_train_loss": readings[-1].train_loss, "onset_step": None, "jump_step": None,
           "jump_seconds": None, "loss_fall_per_100": None, "readings": [asdict(r) for r in readings]}
    if onset is not None:
        out.update(onset_step=readings[onset].step, jump_step=readings[middle].step,
                   jump_seconds=readings[middle].seconds,
                   loss_fall_per_100={"before": fall(readings, 1, onset), "during": fall(readings, onset, middle),
                                      "after": fall(readings, middle, len(readings) - 1)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.bench.induction_formation",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="induction")
    parser.add_argument("--every", type=int, default=25, help="steps between probe readings")
    parser.add_argument("--steps", type=int, help="train this many steps (default: the preset's)")
    parser.add_argument("--seed", type=int, help="training seed (default: the preset's)")
    parser.add_argument("--json", metavar="FILE", help="also write every reading as JSON")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    def show(r: Reading) -> None:
        print(f"step {r.step:5d} {r.seconds:6.1f}s  train loss {r.train_loss:.3f}  induction {r.score:.3f} "
              f"(layer {r.head[0] + 1} head {r.head[1] + 1})  probe halves {r.loss_first_half:.3f} / "
              f"{r.loss_second_half:.3f}", file=sys.stderr, flush=True)

    found = summary(measure(args.preset, args.every, args.steps, args.seed, show))
    print(f"induction score at initialisation: {found['initial_score']:.3f}; "
          f"at the end: {found['final_score']:.3f} (wall {time.perf_counter() - t0:.0f} s)")
    if found["jump_step"] is None:
        print("the score never jumped")
    else:
        rates = found["loss_fall_per_100"]
        print(f"jump: from step {found['onset_step']} (10% of the rise) to step {found['jump_step']} (half; "
              f"{found['jump_seconds']:.0f} s of training)")
        print(f"training loss fell per 100 steps: {rates['before']:.3f} before, {rates['during']:.3f} during, "
              f"{rates['after']:.3f} after")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(found, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
