"""Training as a generator of events, driven identically by the CLI and the GUI worker.

`Trainer` owns the model, optimizer and step count, so a run can be paused, stopped, continued
and saved; `Trainer.run()` yields Started, Step, Eval, Sample and finally Done.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Generator, Iterator, Optional

import torch

from playground.engine.analysis.evaluation import answer
from playground.engine.config import ModelConfig, SampleConfig, TrainConfig, check_fits_text
from playground.engine.data.corpus import Corpus, distinct_windows, get_weighted_batch
from playground.engine.errors import ConfigError
from playground.engine.events import Done, Eval, Event, Sample, Started, Step, peak_rss_mb
from playground.engine.model import generation as sampling
from playground.engine.model.gpt import GPT
from playground.engine.model.param_count import count_params
from playground.engine.training.averaging import WeightAverage
from playground.engine.training.best_weights import BestKeeper
from playground.engine.training.control import TrainControl
from playground.engine.training.schedule import lr_at
from playground.engine.training.step import autocast, choose_path
from playground.engine.training.threads import MAX_THREADS, threads_for, usable_cores

log = logging.getLogger(__name__)
TASKS_PER_EVAL = 100   # held-out tasks answered at each evaluation (the evaluate command: all)
ANSWERS_SHOWN = 4      # of which the samples show this many


def threads_wanted(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus: Optional[Corpus] = None) -> int:
    """Threads this size of step calls for. Below about 5e6 (parameters x tokens per step) a
    second thread costs more in hand-offs than it gains; above, every usable core wins (the
    `threads` bench measures both sides), up to MAX_THREADS. A tiny or repetitive corpus caps the batch at
    its distinct windows."""
    cores = usable_cores()
    rows = train_cfg.batch_size
    if corpus is not None and model_cfg.dropout == 0:
        rows = min(rows, max(distinct_windows(corpus.ids[: corpus.n_train], model_cfg.block_size), 1))
    work = count_params(model_cfg) * rows * model_cfg.block_size
    return 1 if work < 5e6 or cores < 2 else min(cores, MAX_THREADS)


def auto_threads(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus: Optional[Corpus] = None) -> int:
    """threads_wanted, fewer while other programs keep cores busy (threads.py says why)."""
    wanted = threads_wanted(model_cfg, train_cfg, corpus)
    return 1 if wanted == 1 else threads_for(wanted)


class Trainer:
    """Owns a model, its optimizers and its step count; `run()` trains and yields events.

    device: "cpu" (default), "cuda" (bf16 autocast) or "mps". compile: torch.compile the
    training forward (opt-in; slow to start). With torch.distributed initialised (torchrun),
    the model trains under DistributedDataParallel and each rank draws its own batches.
    autograd=False (default) lets the flat AdamW run where it was verified (step.py): the
    same updates, in less time; True always uses torch's own optimizers.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, corpus: Corpus,
                 model: Optional[GPT] = None, step: int = 0, device: str = "cpu",
                 compile: bool = False, autograd: bool = False, original: Optional[Corpus] = None,
                 replay: float = 0.0):
        train_cfg.check()
        model_cfg.check()
        if model_cfg.vocab_size != corpus.tokenizer.vocab_size:
            raise ValueError("model vocabulary does not match the corpus tokenizer")
        check_fits_text(model_cfg, train_cfg, corpus.n_train, corpus.tokenizer.unit)
        self.model_cfg, self.train_cfg, self.corpus = model_cfg, train_cfg, corpus
        self.device = torch.device(device)
        # automatic: what the step's size calls for (once), less the cores busy elsewhere (again
        # at every evaluation, in run())
        self.threads_wanted = 0 if train_cfg.threads else threads_wanted(model_cfg, train_cfg, corpus)
        self.threads = train_cfg.threads or (1 if self.threads_wanted == 1 else threads_for(self.threads_wanted))
        torch.set_num_threads(self.threads)
        if model is None:
            torch.manual_seed(train_cfg.seed)
            model = GPT(model_cfg)
        self.model = model.to(self.device)
        self.rank, self.world = _dist_rank_world()
        self.train_model = self._wrap(compile)
        # adapters (LoRA) train a few matrices beside frozen weights: torch's own optimizer
        adapted = any(not p.requires_grad for p in self.model.parameters())
        self.path = choose_path(self.model, self.train_model, train_cfg, self.device,
                                plain_only=autograd or compile or self.world > 1 or adapted)
        self.optimizers = self.path.optimizers
        self.step = step  # optimizer steps applied so far, over the model's whole life
        self.last_loss: Optional[float] = None
        self.last_val_loss: Optional[float] = None
        self.train_seconds = 0.0
        self.best = BestKeeper()
        self.last_step = step  # how far training went (the weights in hand may be the best's)
        self.control = TrainControl()
        # held for each step; snapshot() takes it so a copy never mixes two steps' weights
        self.lock = threading.Lock()
        # adapting a model: its original text (loss on its held-out part at each evaluation:
        # what the new text costs; a share of each batch from its training part, with replay)
        self.original, self.replay = original, replay
        if replay and (original is None or len(original.train_ids()) < model_cfg.block_size + 1):
            raise ConfigError("replay needs the model's original text, long enough for a window")
        self.original_record = original_record(corpus)  # kept with the model: its own text
        # adapting a model: evaluate it once before the first step, so the new text's and the
        # original text's losses have their "before" (and the base is the first best to beat)
        self.evaluate_first = False
        self._evaluated: Optional[int] = None  # the step last evaluated
        self.average: Optional[WeightAverage] = None  # TrainConfig.ema's, made at each run's start

    def _wrap(self, compile: bool) -> torch.nn.Module:
        model = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if compile else model

    def snapshot(self) -> GPT:
        """A copy of the model between steps, for generating while training runs (with weight
        averaging, the average)."""
        import copy
        with self.lock, self._averaged(locked=True):  # what the evaluations describe
            clone = copy.deepcopy(self.model)
        return clone.eval()

    @property
    def start_char(self) -> str:
        return self.corpus.text[0]

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def estimate_loss(self, split: str) -> Optional[float]:
        """Mean loss over eval_batches fixed batches (the same ones every time); split
        "original": the held-out part of the model's original text, when adapting it."""
        if split == "original":
            data = self.original.val_ids() if self.original.has_validation else self.original.train_ids()
        else:
            data = self.corpus.train_ids() if split == "train" else self.corpus.val_ids()
        T = self.model_cfg.block_size
        if len(data) < T + 1:
            return None
        gen = torch.Generator().manual_seed(12345)
        was_training = self.model.training
        self.model.eval()
        losses = []
        try:
            for _ in range(self.train_cfg.eval_batches):
                x, y, w = get_weighted_batch(data, T, self.train_cfg.batch_size, gen)
                x, y, w = self._to_device(x, y, w)
                with autocast(self.device):
                    loss = self.model(x, y, weights=w)[1]
                losses.append(loss.item())
        finally:
            self.model.train(was_training)
        return sum(losses) / len(losses)

    def _to_device(self, x, y, w):
        if self.device.type == "cpu":
            return x, y, w
        return x.to(self.device), y.to(self.device), None if w is None else w.to(self.device)

    def sample_text(self) -> str:
        """A short sample from the corpus's first character, the same seed each time. Bytes that
        never became a character (an early BPE model writes such) show as <0xE2>, as the
        window's odds do, not as U+FFFD."""
        cfg = SampleConfig(max_new_chars=self.train_cfg.sample_chars, temperature=1.0,
                           seed=self.train_cfg.seed)
        return "".join(t.text for t in sampling.stream_tokens(self.model, self.corpus.tokenizer, "", cfg,
                                                               self.start_char, byte_labels=True))

    def _evaluate(self, elapsed: float) -> Generator[Event, None, str]:
        """Eval (and Sample) events; returns why training must stop when the last update left
        weights whose loss is not finite (the step's own loss came before the update)."""
        self._evaluated = self.step
        # with weight averaging, the average is what is scored, kept as the best, and sampled
        with self._averaged():
            train_loss = self.estimate_loss("train")
            finite = train_loss is None or math.isfinite(train_loss)
            if finite:
                self.last_val_loss = self.estimate_loss("val")
                self.best.observe(self.step, self.last_val_loss, train_loss, self._params, self.optimizers)
                accuracy, answers = self._task_check()
                base_val = self.estimate_loss("original") if self.original is not None else None
                text = self.sample_text() if self.train_cfg.sample_chars else ""
        if not finite:
            with self.lock:
                return self._restore_good(train_loss, self.step)
        yield Eval(self.step, train_loss, self.last_val_loss, elapsed, self.best.step, accuracy,
                   self.corpus.bits_per_char(train_loss, "train"),
                   self.corpus.bits_per_char(self.last_val_loss, "val"), base_val)
        if self.train_cfg.sample_chars or answers:
            yield Sample(self.step, text, answers)

    @contextlib.contextmanager
    def _averaged(self, locked: bool = False) -> Iterator[None]:
        """The weight average in place of the weights for the duration (nothing without one).
        Each swap holds the lock (unless the caller does), so a copy taken from another thread
        meanwhile gets the whole average or none of it."""
        if self.average is None:
            yield
            return
        lock = contextlib.nullcontext() if locked else self.lock
        with lock:
            held = self.average.swap_in(self._params)
        try:
            yield
        finally:
            with lock:
                self.average.give_back(self._params, held)

    def _task_check(self) -> tuple[Optional[float], tuple]:
        """Accuracy on the corpus's first held-out tasks (a fixed subset, so each evaluation
        stays quick), and the answers to a few of them."""
        tasks = self.corpus.tasks[:TASKS_PER_EVAL]
        if not tasks:
            return None, ()
        answers = [answer(self.model, self.corpus.tokenizer, t, self.start_char) for t in tasks]
        shown = tuple((a.prompt, a.expected, a.got) for a in answers[:ANSWERS_SHOWN])
        return sum(a.correct for a in answers) / len(answers), shown

    # -- the loop -----------------------------------------------------------------------
    def run(self, control: Optional[TrainControl] = None) -> Iterator[Event]:
        """Train max_steps more steps, yielding events; stops early on control.stop()."""
        control = control or self.control
        cfg, T, B = self.train_cfg, self.model_cfg.block_size, self.train_cfg.batch_size
        torch.set_num_threads(self.threads)
        first, last = self.step, self.step + cfg.max_steps
        notes = [] if self.corpus.has_validation else [
            "validation unavailable: the text is too short to hold out a validation window"]
        if cfg.ema:
            notes.append(f"evaluations score a moving average of the weights ({cfg.ema:g} carried over "
                         "each step), which the run ends with")
        message = "; ".join(notes)
        yield Started(self.model.num_params(), self.model_cfg.vocab_size, self.corpus.n_train,
                      self.corpus.n_val, first, last, self.threads, message,
                      self.corpus.tokenizer.kind, self.corpus.chars_per_token(), cfg.ema)
        data = self.corpus.train_ids()
        self._original_train = self.original.train_ids() if self.replay else None
        # each rank draws its own batches; a continued run does not repeat the first one's
        gen = torch.Generator().manual_seed(cfg.seed + first + 1_000_003 * self.rank)
        self._params = self.path.weights
        # weights whose loss was finite, and their step: restored if the loss turns non-finite
        self._good, self._good_step = [p.detach().clone() for p in self._params], self.step
        self.average = WeightAverage(self._params, cfg.ema) if cfg.ema else None
        self.best = BestKeeper()
        if first > 0 and cfg.keep == "best":
            # a continued run keeps the weights it started from unless it beats them: more
            # steps at a bad learning rate must never replace a good model with a worse one
            self.best.observe(first, self.estimate_loss("val"), self.last_loss, self._params, self.optimizers)
        if self.evaluate_first and first == 0:
            yield from self._evaluate(0.0)
        self.model.train()
        status, note, tokens, paused_for = "completed", "", 0, 0.0
        t0 = t_step = time.perf_counter()
        tok_rate = 0.0
        while self.step < last:
            if control.paused:
                paused_for += control.hold()
                t_step = time.perf_counter()
            if control.stopped:
                status = "stopped"
                break
            local = self.step - first
            for opt, peak in self.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr_at(local, cfg.max_steps, cfg, peak)
            x, y, w = self._batch(data, T, B, gen)
            with self.lock:
                loss_value, norm, note = self._train_step(*self._to_device(x, y, w))
            if note:
                status = "diverged"
                break
            tokens += B * T
            now = time.perf_counter()
            rate = B * T * self.world / max(now - t_step, 1e-9)
            tok_rate = rate if local == 0 else 0.9 * tok_rate + 0.1 * rate
            t_step = now
            elapsed = now - t0 - paused_for
            yield Step(self.step, loss_value, self.optimizers[0][0].param_groups[0]["lr"], norm,
                       bool(cfg.grad_clip and norm > cfg.grad_clip), tok_rate, elapsed)
            if self.step % cfg.eval_interval == 0 or self.step == last:
                note = yield from self._evaluate(elapsed)
                if note:
                    status = "diverged"
                    break
                if self.best.out_of_patience(cfg.patience):
                    status, note = "early-stopped", (
                        f"validation loss did not improve for {cfg.patience} evaluations")
                    break
                if self.threads_wanted > 1 and self.device.type == "cpu":  # busy cores may have come or gone
                    self.threads = threads_for(self.threads_wanted)
                    torch.set_num_threads(self.threads)
                t_step = time.perf_counter()
        run_seconds = time.perf_counter() - t0 - paused_for
        if status == "stopped" and cfg.keep == "best" and self.step > first and self.best.step is not None \
                and self._evaluated != self.step:
            # stopped between evaluations: score the weights in hand, so that keeping the best
            # compares them too (and never drops the steps since the last evaluation unseen)
            yield from self._evaluate(run_seconds)
        self.train_seconds += run_seconds
        if status == "diverged":
            log.warning(note)
        last_step = self.last_step = self.step
        if self.average is not None and status != "diverged" and self.step > first:
            with self.lock:  # the run ends with the average (the best kept, below, may replace it)
                self.average.put_in(self._params)
        self.average = None  # (a diverged run keeps the last good weights, as its message says)
        kept = self._keep_best(first)
        note = "; ".join(n for n in (note, kept) if n)
        yield Done(status, self.step, self.model.num_params(), self.last_loss, self.last_val_loss,
                   run_seconds, tokens * self.world, note, peak_rss_mb(), self.best.step,
                   None if self.best.step is None else self.best.val_loss, last_step)

    def _batch(self, data, T: int, B: int, gen: torch.Generator):
        """A batch of the text; with replay, its share of rows from the original text."""
        if not self.replay:  # repeated windows merge only without dropout (their masks would differ)
            return get_weighted_batch(data, T, B, gen, merge=self.model_cfg.dropout == 0)
        old = min(max(round(self.replay * B), 1), B - 1)
        x, y, _ = get_weighted_batch(data, T, B - old, gen, merge=False)
        xo, yo, _ = get_weighted_batch(self._original_train, T, old, gen, merge=False)
        return torch.cat([x, xo]), torch.cat([y, yo]), None

    def _keep_best(self, first_step: int) -> str:
        """With keep="best", end on the weights of the lowest validation loss; says so."""
        best = self.best
        if self.train_cfg.keep != "best" or best.step is None or best.step == self.step:
            return ""
        with self.lock:
            best.restore(self._params, self.optimizers)
            self.step, self.last_loss, self.last_val_loss = best.step, best.train_loss, best.val_loss
        if best.step == first_step:
            return (f"no step of this run beat the weights it started from (validation "
                    f"{best.val_loss:.4f} at step {best.step}), so those were kept")
        return f"kept the best weights: step {best.step}, validation {best.val_loss:.4f}"

    def _restore_good(self, loss_value: float, at_step: int) -> str:
        """Put back the weights of the last step whose loss was finite; says why in words."""
        with torch.no_grad():
            torch._foreach_copy_(self._params, self._good)
        self.step = self._good_step
        return (f"loss became {loss_value} at step {at_step}: training stopped and the "
                f"weights of step {self._good_step} (the last finite loss) were kept; "
                "the learning rate may be too high")

    def _train_step(self, x, y, w) -> tuple[float, float, str]:
        """One update; returns (loss, gradient norm, '' or why training must stop)."""
        params, cfg = self._params, self.train_cfg
        loss = self.path.step(x, y, w)  # the loss, and every parameter's gradient
        loss_value = _global_mean(loss.detach(), self.world)
        if not math.isfinite(loss_value):
            return loss_value, float("nan"), self._restore_good(loss_value, self.step + 1)
        with torch.no_grad():
            torch._foreach_copy_(self._good, params)
        self._good_step = self.step
        norm = _clip_gradients(params, cfg.grad_clip)
        if not math.isfinite(norm):
            return loss_value, norm, (
                f"the gradient became {norm} at step {self.step + 1}: training stopped and "
                f"the weights of step {self.step} were kept; try a lower learning rate")
        for opt, _ in self.optimizers:
            opt.step()
        if self.average is not None:
            self.average.update(params)
        self.step += 1
        self.last_loss = loss_value
        return loss_value, norm, ""

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint(self, with_optimizer: bool = True):
        """A consistent copy of model, optimizer and progress, safe to take while training."""
        import copy

        from playground.engine.model.checkpoint import Checkpoint
        from playground.engine.model.lora import has_adapters, merged
        with self.lock:
            adapted = has_adapters(self.model)
            # with adapters: the merged model, an ordinary one (their optimizer state fits no model)
            with self._averaged(locked=True):  # mid-run: the weights the evaluations describe
                model = merged(self.model) if adapted else copy.deepcopy(self.model)
            opt_state = ([copy.deepcopy(opt.state_dict()) for opt, _ in self.optimizers]
                         if with_optimizer and not adapted else None)
            state = {"step": self.step, "loss": self.last_loss, "val_loss": self.last_val_loss,
                     "trained_to": max(self.last_step, self.step),
                     "train_seconds": round(self.train_seconds, 3), "corpus": self.corpus.name,
                     "start_char": self.start_char, "params": model.num_params(),
                     "original": self.original_record}
        return Checkpoint(model, self.corpus.tokenizer, self.train_cfg, state, opt_state)

    @classmethod
    def resume(cls, ckpt, corpus: Corpus, train_cfg: TrainConfig, **options) -> "Trainer":
        """Continue training a loaded checkpoint on a corpus that uses its vocabulary."""
        trainer = cls(ckpt.model_config, train_cfg, corpus, model=ckpt.model,
                      step=int(ckpt.state.get("step", 0)), **options)
        trainer.train_seconds = float(ckpt.state.get("train_seconds") or 0.0)
        if isinstance(ckpt.state.get("original"), dict):  # it stays the text the model first learned
            trainer.original_record = ckpt.state["original"]
        for key, attr in (("loss", "last_loss"), ("val_loss", "last_val_loss")):
            value = ckpt.state.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                setattr(trainer, attr, float(value))
        saved = ckpt.optimizer_state
        if saved is not None and len(saved) == len(trainer.optimizers) and \
                (ckpt.train_config is None or ckpt.train_config.optimizer == train_cfg.optimizer):
            for (opt, _), state in zip(trainer.optimizers, saved):
                opt.load_state_dict(state)
        return trainer


def _clip_gradients(params: list[torch.Tensor], max_norm: float) -> float:
    """The global gradient norm, scaling the gradients down to max_norm when above it (0: never).
    One fused norm over all gradients; the scaling only happens on the steps that need it."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
    if max_norm and norm > max_norm and math.isfinite(norm):
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return norm


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _global_mean(value: torch.Tensor, world: int) -> float:
    """The loss averaged over ranks (every rank then agrees on stopping for a NaN)."""
    if world > 1:
        import torch.distributed as dist
        value = value.float().clone()
        dist.all_reduce(value)
        value /= world
    return value.item()


ORIGINAL_CHARS = 100_000  # of each part of its text kept with a model (a few hundred KB of JSON at most)


def original_record(corpus: Corpus) -> dict:
    """What a model file keeps of the text it learned, so that adapting it later can measure
    what it forgets (and replay some of it): the text's name and fingerprint, the start of its
    training part and of its held-out part."""
    import hashlib
    text = corpus.text
    split = corpus.train_chars if corpus.has_validation else len(text)
    return {"name": corpus.name, "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            "train": text[:split][:ORIGINAL_CHARS], "validation": text[split:][:ORIGINAL_CHARS]}
