"""Training as a generator of events, driven identically by the CLI and the GUI worker.

`Trainer` owns the model, optimizer and step count, so a run can be paused, stopped, continued
and saved; `Trainer.run()` yields Started, Step, Eval, Sample and finally Done.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Iterator, Optional

import torch

from playground.engine import sample as sampling
from playground.engine.control import TrainControl
from playground.engine.config import ModelConfig, SampleConfig, TrainConfig, check_fits_text
from playground.engine.corpus import Corpus, get_batch
from playground.engine.events import Done, Eval, Event, Sample, Started, Step
from playground.engine.model import GPT
from playground.engine.optim import build_optimizers

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, cfg: TrainConfig, peak: Optional[float] = None) -> float:
    """Linear warm-up to the peak, then cosine decay to min_lr (scaled) at the last step."""
    peak = cfg.learning_rate if peak is None else peak
    floor = cfg.min_lr * peak / cfg.learning_rate
    if step < cfg.warmup_steps:
        return peak * (step + 1) / (cfg.warmup_steps + 1)
    span = max(total - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


def auto_threads(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """Thread count for this size of work: small steps gain nothing from a second core
    (measured by `python -m playground bench`), and one core left free keeps the GUI smooth."""
    cores = os.cpu_count() or 1
    work = model_cfg.num_params() * train_cfg.batch_size * model_cfg.block_size
    return 1 if work < 2e8 or cores < 2 else min(cores, 8)


class Trainer:
    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, corpus: Corpus,
                 model: Optional[GPT] = None, step: int = 0):
        train_cfg.check()
        model_cfg.check()
        if model_cfg.vocab_size != corpus.tokenizer.vocab_size:
            raise ValueError("model vocabulary does not match the corpus tokenizer")
        check_fits_text(model_cfg, train_cfg, corpus.n_train)
        self.model_cfg, self.train_cfg, self.corpus = model_cfg, train_cfg, corpus
        self.threads = train_cfg.threads or auto_threads(model_cfg, train_cfg)
        torch.set_num_threads(self.threads)
        if model is None:
            torch.manual_seed(train_cfg.seed)
            model = GPT(model_cfg)
        self.model = model
        self.step = step  # optimizer steps applied so far, over the model's whole life
        self.optimizers = build_optimizers(model, train_cfg)
        self.last_loss: Optional[float] = None
        self.last_val_loss: Optional[float] = None
        self.train_seconds = 0.0
        self.control = TrainControl()
        # held for each step; snapshot() takes it so a copy never mixes two steps' weights
        self.lock = threading.Lock()

    def snapshot(self) -> GPT:
        """A copy of the model between steps, for generating while training runs."""
        import copy
        with self.lock:
            clone = copy.deepcopy(self.model)
        return clone.eval()

    @property
    def start_char(self) -> str:
        return self.corpus.text[0]

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def estimate_loss(self, split: str) -> Optional[float]:
        """Mean loss over eval_batches fixed batches (the same ones every time)."""
        data = self.corpus.train_ids() if split == "train" else self.corpus.val_ids()
        T = self.model_cfg.block_size
        if len(data) < T + 1:
            return None
        gen = torch.Generator().manual_seed(12345)
        was_training = self.model.training
        self.model.eval()
        try:
            losses = [self.model(*get_batch(data, T, self.train_cfg.batch_size, gen))[1].item()
                      for _ in range(self.train_cfg.eval_batches)]
        finally:
            self.model.train(was_training)
        return sum(losses) / len(losses)

    def sample_text(self) -> str:
        cfg = SampleConfig(max_new_chars=self.train_cfg.sample_chars, temperature=1.0,
                           seed=self.train_cfg.seed)
        return sampling.generate(self.model, self.corpus.tokenizer, "", cfg, self.start_char)

    def _evaluate(self, elapsed: float) -> Iterator[Event]:
        train_loss = self.estimate_loss("train")
        self.last_val_loss = self.estimate_loss("val")
        yield Eval(self.step, train_loss, self.last_val_loss, elapsed)
        if self.train_cfg.sample_chars:
            yield Sample(self.step, "", self.sample_text())

    # -- the loop -----------------------------------------------------------------------
    def run(self, control: Optional[TrainControl] = None) -> Iterator[Event]:
        """Train max_steps more steps, yielding events; stops early on control.stop()."""
        control = control or self.control
        cfg, T, B = self.train_cfg, self.model_cfg.block_size, self.train_cfg.batch_size
        torch.set_num_threads(self.threads)
        first, last = self.step, self.step + cfg.max_steps
        message = "" if self.corpus.has_validation else (
            "validation unavailable: the text is too short to hold out a validation window")
        yield Started(self.model.num_params(), self.model_cfg.vocab_size, self.corpus.n_train,
                      self.corpus.n_val, first, last, self.threads, message)
        data = self.corpus.train_ids()
        gen = torch.Generator().manual_seed(cfg.seed + first)
        params = list(self.model.parameters())
        # weights whose loss was finite, and their step: restored if the loss turns non-finite
        good, good_step = [p.detach().clone() for p in params], self.step
        self.model.train()
        status, note, tokens, paused_for = "completed", "", 0, 0.0
        t0 = t_step = time.perf_counter()
        tok_rate = 0.0
        while self.step < last:
            if control.paused:
                p0 = time.perf_counter()
                while control.paused and not control.stopped:
                    control.wait_while_paused(0.1)
                paused_for += time.perf_counter() - p0
                t_step = time.perf_counter()
            if control.stopped:
                status = "stopped"
                break
            local = self.step - first
            for opt, peak in self.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr_at(local, cfg.max_steps, cfg, peak)
            with self.lock:
                x, y = get_batch(data, T, B, gen)
                _, loss = self.model(x, y)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    with torch.no_grad():
                        torch._foreach_copy_(params, good)
                    bad_step, self.step = self.step, good_step
                    status, note = "diverged", (
                        f"loss became {loss_value} at step {bad_step + 1}: training stopped and the "
                        f"weights of step {good_step} (the last finite loss) were kept; "
                        "the learning rate may be too high")
                    break
                with torch.no_grad():
                    torch._foreach_copy_(good, params)
                good_step = self.step
                for opt, _ in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf")))
                if not math.isfinite(norm):
                    status, note = "diverged", (
                        f"the gradient became {norm} at step {self.step + 1}: training stopped and "
                        f"the weights of step {self.step} were kept; try a lower learning rate")
                    break
                for opt, _ in self.optimizers:
                    opt.step()
                self.step += 1
            tokens += B * T
            self.last_loss = loss_value
            now = time.perf_counter()
            rate = B * T / max(now - t_step, 1e-9)
            tok_rate = rate if local == 0 else 0.9 * tok_rate + 0.1 * rate
            t_step = now
            elapsed = now - t0 - paused_for
            yield Step(self.step, loss_value, self.optimizers[0][0].param_groups[0]["lr"], norm,
                       bool(cfg.grad_clip and norm > cfg.grad_clip), tok_rate, elapsed)
            if self.step % cfg.eval_interval == 0 or self.step == last:
                yield from self._evaluate(elapsed)
                t_step = time.perf_counter()
        run_seconds = time.perf_counter() - t0 - paused_for
        self.train_seconds += run_seconds
        if status == "diverged":
            log.warning(note)
        yield Done(status, self.step, self.model.num_params(), self.last_loss, self.last_val_loss,
                   run_seconds, tokens, note)

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint(self, with_optimizer: bool = True):
        """A consistent copy of model, optimizer and progress, safe to take while training."""
        import copy
        from playground.engine.checkpoint import Checkpoint
        with self.lock:
            model = copy.deepcopy(self.model)
            opt_state = ([copy.deepcopy(opt.state_dict()) for opt, _ in self.optimizers]
                         if with_optimizer else None)
            state = {"step": self.step, "loss": self.last_loss, "val_loss": self.last_val_loss,
                     "train_seconds": round(self.train_seconds, 3), "corpus": self.corpus.name,
                     "start_char": self.start_char, "params": self.model.num_params()}
        return Checkpoint(model, self.corpus.tokenizer, self.train_cfg, state, opt_state)

    @classmethod
    def resume(cls, ckpt, corpus: Corpus, train_cfg: TrainConfig) -> "Trainer":
        """Continue training a loaded checkpoint on a corpus that uses its vocabulary."""
        trainer = cls(ckpt.model_config, train_cfg, corpus, model=ckpt.model,
                      step=int(ckpt.state.get("step", 0)))
        trainer.train_seconds = float(ckpt.state.get("train_seconds") or 0.0)
        saved = ckpt.optimizer_state
        if saved is not None and len(saved) == len(trainer.optimizers) and \
                (ckpt.train_config is None or ckpt.train_config.optimizer == train_cfg.optimizer):
            for (opt, _), state in zip(trainer.optimizers, saved):
                opt.load_state_dict(state)
        return trainer
