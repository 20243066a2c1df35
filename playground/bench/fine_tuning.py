"""Fine-tuning figures (informational rows): a `shakespeare-fast` base adapted to the fable, fully
and with LoRA at rank 4 and 16 and with replay; and a random model of GPT-2 small's shape opened
from a transformers folder, generating, and fine-tuned fully and with LoRA.

Each measurement runs in its own process (`python -m playground.bench.fine_tuning --measure ...`),
so its peak resident set is its own; the parent prints the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = [("full", 0, 0.0), ("lora", 4, 0.0), ("lora", 16, 0.0), ("full", 0, 0.25)]


def _peak_mb() -> float:
    from playground.engine.events import proc_status_mb
    return proc_status_mb("VmHWM") or 0.0


def _step_ms(times: list[float]) -> float:
    gaps = [b - a for a, b in zip(times, times[1:])]
    return 1000 * statistics.median(gaps[1:] or gaps)


# -- in the measuring process --------------------------------------------------------------
def make_base(out: str, steps: int) -> dict:
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    from playground.engine.model import checkpoint
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_run
    preset = PRESETS["shakespeare-fast"]
    train = preset.train.replace(max_steps=steps, sample_chars=0) if steps else preset.train.replace(sample_chars=0)
    trainer = prepare_run("tinyshakespeare.txt", read_text_file(find_shakespeare()), preset.model, train)
    done = list(trainer.run())[-1]
    checkpoint.save(out, trainer.checkpoint())
    return {"params": done.params, "val_loss": done.final_val_loss}


def adapt_small(base: str, method: str, rank: int, replay: float, steps: int) -> dict:
    from playground.engine.config import AdaptConfig, TrainConfig
    from playground.engine.data.corpus import builtin_text
    from playground.engine.events import Done, Eval, Step
    from playground.engine.model import checkpoint
    from playground.engine.model.lora import trainable
    from playground.engine.training.adapt import prepare_adaptation
    from playground.engine.training.trainer import Trainer  # noqa: F401  (torch in memory first)
    ckpt = checkpoint.load(base)
    train = TrainConfig(max_steps=steps, learning_rate=1e-3, min_lr=1e-4, eval_interval=max(steps // 4, 1),
                        warmup_steps=0, optimizer="adamw", keep="best", sample_chars=0, threads=2)
    adapt = AdaptConfig(method=method, rank=rank or 8, alpha=16, replay=replay)
    trainer = prepare_adaptation(ckpt, "fable", builtin_text("fable"), train, adapt, drop_unknown=True, in_place=True)
    n, total = trainable(trainer.model)
    times, evals, done = [], [], None
    for ev in trainer.run():
        if isinstance(ev, Step):
            times.append(ev.elapsed_s)
        elif isinstance(ev, Eval):
            evals.append((ev.step, ev.val_loss, ev.base_val_loss))
        elif isinstance(ev, Done):
            done = ev
    kept = done.best_step if done.best_step is not None else done.last_step
    at_kept = next(e for e in evals if e[0] == kept)
    return {"method": method, "rank": rank, "replay": replay, "trainable": n, "total": total,
            "step_ms": _step_ms(times), "peak_mb": _peak_mb(), "kept_step": kept,
            "new_before": evals[0][1], "new_kept": at_kept[1], "original_before": evals[0][2],
            "original_kept": at_kept[2], "original_end": evals[-1][2]}


def build_gpt2(folder: str, quick: bool) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from playground.engine.data.bpe import BPETokenizer
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    torch.manual_seed(0)
    shape = dict(n_layer=2, n_embd=256, n_head=4) if quick else {}  # GPT-2 small: 12 x 768, 12 heads
    model = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    BPETokenizer.train(read_text_file(find_shakespeare()), 8192).tok.save(str(Path(folder) / "tokenizer.json"))
    return {"params": sum(p.numel() for p in model.parameters())}


def open_gpt2(folder: str) -> dict:
    from playground.engine.model import checkpoint
    t = time.perf_counter()
    ckpt = checkpoint.load(folder)
    return {"open_s": time.perf_counter() - t, "verified": ckpt.state.get("verified"), "peak_mb": _peak_mb()}


def generate_gpt2(folder: str, tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from playground.engine.config import SampleConfig
    from playground.engine.model import checkpoint
    from playground.engine.model.generation import stream_tokens
    ckpt = checkpoint.load(folder)
    ckpt.model.requires_grad_(False)  # frozen, as `generate` loads it
    torch.set_num_threads(2)
    theirs = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([ckpt.tokenizer.encode("ROMEO:")])
    config = SampleConfig(max_new_tokens=tokens + 1, max_new_chars=1_000_000, temperature=1.0)
    ours_rate, theirs_rate = [], []
    for _ in range(3):  # alternated
        t0 = time.perf_counter()
        n = sum(1 for _ in stream_tokens(ckpt.model.eval(), ckpt.tokenizer, "ROMEO:", config))
        ours_rate.append(n / (time.perf_counter() - t0))
        with torch.no_grad():
            t0 = time.perf_counter()
            theirs.generate(ids, max_new_tokens=tokens + 1, min_new_tokens=tokens + 1, do_sample=True, pad_token_id=0)
        theirs_rate.append((tokens + 1) / (time.perf_counter() - t0))
    return {"ours_tok_s": statistics.median(ours_rate), "transformers_tok_s": statistics.median(theirs_rate)}


def adapt_gpt2(folder: str, method: str, rank: int, steps: int) -> dict:
    from playground.engine.config import AdaptConfig, TrainConfig
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    from playground.engine.events import Step
    from playground.engine.model import checkpoint
    from playground.engine.model.lora import trainable
    from playground.engine.training.adapt import prepare_adaptation
    ckpt = checkpoint.load(folder)
    train = TrainConfig(batch_size=1, max_steps=steps, learning_rate=1e-4, min_lr=1e-5, warmup_steps=0,
                        eval_interval=10**6, eval_batches=1, sample_chars=0, threads=2, optimizer="adamw", keep="last")
    adapt = AdaptConfig(method=method, rank=rank or 8, alpha=2 * (rank or 8))
    trainer = prepare_adaptation(ckpt, "shakespeare", read_text_file(find_shakespeare())[:200_000], train, adapt,
                                 in_place=True)
    trainer.evaluate_first = False  # the step's own cost, not an evaluation's
    n, total = trainable(trainer.model)
    times = [ev.elapsed_s for ev in trainer.run() if isinstance(ev, Step)]
    return {"method": method, "rank": rank, "trainable": n, "total": total, "block": ckpt.model_config.block_size,
            "step_s": _step_ms(times) / 1000, "peak_mb": _peak_mb()}


# -- the rows ------------------------------------------------------------------------------
def _measure(*args) -> dict:
    out = subprocess.run([sys.executable, "-m", "playground.bench.fine_tuning", "--measure", *map(str, args)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{args[0]} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rows(quick: bool) -> list[dict]:
    steps = 40 if quick else 200
    with tempfile.TemporaryDirectory(prefix="playground-finetune-") as tmp:
        base = str(Path(tmp) / "base.safetensors")
        made = _measure("base", base, 30 if quick else 0)
        small = [_measure("small", base, m, r, replay, steps) for m, r, replay in METHODS]
        folder = str(Path(tmp) / "gpt2")
        built = _measure("build", folder, int(quick))
        opened = _measure("open", folder)
        generated = _measure("generate", folder, 32 if quick else 128)
        big = [_measure("gpt2", folder, m, r, 3 if quick else 8) for m, r in (("full", 0), ("lora", 16))]

    def name(r):
        return ("full" if r["method"] == "full" else f"LoRA r{r['rank']}") + (
            f" + replay {r['replay']:g}" if r.get("replay") else "")
    text = "; ".join(
        f"{name(r)}: {r['trainable']:,} of {r['total']:,} train, {r['step_ms']:.1f} ms/step, peak {r['peak_mb']:.0f} MB, "
        f"new {r['new_before']:.3f} -> {r['new_kept']:.3f} (step {r['kept_step']}), original {r['original_before']:.3f} "
        f"-> {r['original_kept']:.3f} (at step {steps}: {r['original_end']:.3f})" for r in small)
    big_text = (f"open {opened['open_s']:.1f} s (verified {opened['verified']:.1e}, peak {opened['peak_mb']:.0f} MB); "
                f"generate {generated['ours_tok_s']:.1f} tok/s (transformers' generate "
                f"{generated['transformers_tok_s']:.1f}); " + "; ".join(
                    f"{name(r)}: {r['trainable']:,} train, {r['step_s']:.2f} s/step (batch 1 x {r['block']}), "
                    f"peak {r['peak_mb']:.0f} MB" for r in big))
    return [{"name": "finetune_small", "target": "informational: shakespeare-fast adapted to the fable",
             "measured": text, "reference": f"base: {made['params']:,} parameters, {steps} steps each", "passed": None,
             "details": {"base": made, "runs": small}},
            {"name": "finetune_gpt2", "target": "informational: a random model of GPT-2 small's shape",
             "measured": big_text, "reference": f"{built['params']:,} parameters" + (" (quick: 2 x 256)" if quick else ""),
             "passed": None, "details": {"open": opened, "generate": generated, "runs": big}}]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="one fine-tuning measurement, in its own process")
    parser.add_argument("--measure", nargs="+", required=True)
    kind, *a = parser.parse_args(argv).measure
    result = {"base": lambda: make_base(a[0], int(a[1])),
              "small": lambda: adapt_small(a[0], a[1], int(a[2]), float(a[3]), int(a[4])),
              "build": lambda: build_gpt2(a[0], bool(int(a[1]))),
              "open": lambda: open_gpt2(a[0]),
              "generate": lambda: generate_gpt2(a[0], int(a[1])),
              "gpt2": lambda: adapt_gpt2(a[0], a[1], int(a[2]), int(a[3]))}[kind]()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
