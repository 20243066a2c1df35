"""`bench --only tokenizers`: characters against byte-level BPE on Tiny Shakespeare, the same
model and the same budget of training seconds, scored in bits per character on the held-out
text (a loss per token cannot be compared across tokenizers; bits per character can).

Each tokenizer's run is first timed for a few steps, then trained for as many steps as the
budget holds, so every run ends its learning-rate schedule inside the budget. The BPE is
trained on the training part only, before the clock starts (it takes a few seconds, once).
"""

from __future__ import annotations

import math
import os
import time

RECIPE = "shakespeare-fast"     # the model and optimizer every tokenizer trains with
KINDS = [("char", 0), ("bpe", 512), ("bpe", 1024)]
TIMING_STEPS, SETTLE = 30, 10


def rows(quick: bool) -> list[dict]:
    from playground.engine.data.corpus import find_shakespeare, read_text_file
    text = read_text_file(find_shakespeare())
    budget = 8.0 if quick else 30.0
    runs = [measure(text, kind, vocab, budget) for kind, vocab in KINDS]
    char_bpc = runs[0]["val_bpc"]
    text_out = "; ".join(f"{r['label']}: {r['val_bpc']:.3f} bits/char ({r['steps']} steps in {r['train_s']:.0f} s, "
                         f"{r['chars_per_token']:.2f} chars/token)" for r in runs)
    best = min(runs, key=lambda r: r["val_bpc"])
    return [{"name": "tokenizers", "target": f"info: held-out bits/char after {budget:.0f} s of training each",
             "measured": text_out, "reference": f"best: {best['label']}, {char_bpc - best['val_bpc']:.3f} "
                                                 "bits/char below characters",
             "passed": None, "details": {"runs": runs, "budget_s": budget, "recipe": RECIPE}}]


def measure(text: str, kind: str, vocab: int, budget_s: float) -> dict:
    """Train one tokenizer's model for budget_s seconds; its held-out bits per character,
    every validation window scored (not a sample of batches)."""
    import torch

    from playground.engine.analysis.evaluation import full_loss
    from playground.engine.events import Step
    from playground.engine.presets import PRESETS
    from playground.engine.training.prepare import prepare_corpus, prepare_trainer
    preset = PRESETS[RECIPE]
    train = preset.train.replace(sample_chars=0, tokenizer=kind, bpe_vocab=vocab or 512)
    t0 = time.perf_counter()
    corpus = prepare_corpus("shakespeare", text, preset.model.block_size, train)
    prepare_s = time.perf_counter() - t0
    model = preset.model
    timing = [e for e in prepare_trainer(corpus, model, train.replace(max_steps=TIMING_STEPS, warmup_steps=0,
                                                                      eval_interval=10**6)).run()
              if isinstance(e, Step)]
    # the steady pace, after the first steps' one-time costs
    step_s = (timing[-1].elapsed_s - timing[SETTLE].elapsed_s) / (len(timing) - 1 - SETTLE)
    steps = max(int(budget_s / step_s), 20)
    trainer = prepare_trainer(corpus, model, train.replace(max_steps=steps, eval_interval=steps, keep="last"))
    done = list(trainer.run())[-1]
    torch.set_num_threads(os.cpu_count() or 1)
    loss = full_loss(trainer.model, corpus.val_ids(), model.block_size)
    return {"label": "characters" if kind == "char" else f"BPE {vocab}", "vocab": corpus.tokenizer.vocab_size,
            "steps": steps, "train_s": round(done.train_seconds, 2), "prepare_s": round(prepare_s, 2),
            "chars_per_token": corpus.chars_per_token("val"), "val_loss_per_token": loss,
            "val_bpc": loss / math.log(2) / corpus.chars_per_token("val")}
