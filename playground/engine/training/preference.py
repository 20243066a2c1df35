"""Tuning a model by preference: DPO, written from the paper (Rafailov et al. 2023, "Direct
Preference Optimization: Your Language Model is Secretly a Reward Model").

A preference pair is a prompt and two completions, one chosen over the other. With the starting
model frozen as the reference, DPO's loss on a pair is

    -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

where log pi(y) sums the log-probabilities of the completion's tokens only, given the prompt. The
reference never changes, so its log-probabilities are computed once, before the first step (for
LoRA that is the base without its adapters, which is the same thing). beta * the log-ratio is
each completion's implicit reward; the reward margin is chosen's minus rejected's, and a pair
counts as preferred when the margin is positive. A share of the pairs is held out to measure
that on pairs training never saw; the model's original text (kept with its file) and the
corpus's tasks are scored too, so what the preference costs shows beside what it gains.

Pairs files are JSON Lines with the field names TRL and other tools use: {"prompt", "chosen",
"rejected"}, one object a line.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from playground.engine.config import AdaptConfig, PreferenceConfig, SampleConfig, TrainConfig
from playground.engine.data.corpus import get_batch
from playground.engine.errors import ConfigError
from playground.engine.events import Done, PreferenceEval, Started, Step, peak_rss_mb
from playground.engine.model.lora import add_adapters, has_adapters, merged, trainable
from playground.engine.training.control import TrainControl
from playground.engine.training.pairs import Pair
from playground.engine.training.schedule import lr_at
from playground.engine.training.threads import threads_for, usable_cores


@dataclass(frozen=True)
class Encoded:
    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    line: int


def encode_pairs(pairs: list[Pair], tokenizer, block: int, name: str = "the pairs",
                 start_char: Optional[str] = None) -> list[Encoded]:
    """Token ids of each pair; ConfigError naming the line when a text has characters a character
    model never saw, or when prompt and completion do not fit in the model's block."""
    from playground.engine.model.generation import start_ids
    out = []
    for i, pair in enumerate(pairs):
        where = f"{name}, line {pair.line}" if pair.line else f"{name}, pair {i + 1}"
        if tokenizer.kind == "char":
            unknown = sorted(set(pair.prompt + pair.chosen + pair.rejected) - set(tokenizer.chars))
            if unknown:
                raise ConfigError(f"{where}: characters the model never saw ({', '.join(repr(c) for c in unknown[:8])}); "
                                  "a model keeps its vocabulary")
        prompt = tuple(tokenizer.encode(pair.prompt)) if pair.prompt else tuple(start_ids(tokenizer, start_char))
        if len(prompt) >= block:
            raise ConfigError(f"{where}: the prompt is {len(prompt)} tokens; the model sees {block} at once and "
                              "the completion needs room after it")
        ids = {}
        for field in ("chosen", "rejected"):
            ids[field] = tuple(tokenizer.encode(getattr(pair, field)))
            if len(prompt) + len(ids[field]) - 1 > block:
                raise ConfigError(f"{where}: the prompt and the {field} completion are "
                                  f"{len(prompt) + len(ids[field])} tokens; the model sees {block} at once "
                                  f"(shorten them to {block + 1})")
        out.append(Encoded(prompt, ids["chosen"], ids["rejected"], pair.line))
    return out


# -- the loss ------------------------------------------------------------------------------
def completion_logps(model, items: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> torch.Tensor:
    """For each (prompt, completion): the sum of log p(token) over the completion's tokens only,
    given the prompt and the completion's earlier tokens. One forward over the padded batch: the
    padding follows each sequence, so causal attention never lets it in."""
    device = next(model.parameters()).device
    length = max(len(p) + len(c) for p, c in items) - 1
    x = torch.zeros(len(items), length, dtype=torch.long)
    y = torch.zeros(len(items), length, dtype=torch.long)
    mask = torch.zeros(len(items), length)
    for i, (p, c) in enumerate(items):
        seq = list(p) + list(c)
        x[i, :len(seq) - 1] = torch.tensor(seq[:-1])
        y[i, :len(seq) - 1] = torch.tensor(seq[1:])
        mask[i, len(p) - 1:len(seq) - 1] = 1.0
    x, y, mask = x.to(device), y.to(device), mask.to(device)
    logits, _ = model(x)
    logp = logits.float().log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float,
             nll: float = 0.0, chosen_tokens=None):
    """(mean loss, each pair's reward margin): the paper's equation 7; with `nll` > 0, plus that
    weight times the chosen completions' mean negative log-likelihood per token (DPO+NLL, as in
    Pang et al. 2024, "Iterative Reasoning Preference Optimization"), which keeps DPO from
    lowering the chosen answers' likelihood along with the rejected ones'."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    loss = -F.logsigmoid(margin).mean()
    if nll:
        loss = loss + nll * (-policy_chosen / chosen_tokens).mean()
    return loss, margin


# -- a run --------------------------------------------------------------------------------
TRAIN_SAMPLE = 256  # training pairs scored at each evaluation (a fixed sample)


def prepare_preference(base, pairs: list[Pair], train: TrainConfig, pref: PreferenceConfig,
                       adapt: Optional[AdaptConfig] = None, original_name: Optional[str] = None,
                       original_text: Optional[str] = None, name: str = "the pairs", corpus: Optional[str] = None,
                       weight_given: bool = False, in_place: bool = False) -> tuple["PreferenceTrainer", str]:
    """A PreferenceTrainer with what every caller (the command line, the window) looks up the same
    way: the base's original text (given, kept in its file, or its built-in corpus) and the tasks
    of its corpus (`corpus`, else the one it was trained on). Returns (trainer, note): when the
    original text is not known, the original-text weight drops to 0 and the note says so, unless
    the weight was asked for (`weight_given`), which is an error."""
    from playground.engine.data.tasks import builtin_tasks
    from playground.engine.training.adapt import original_corpus
    original = original_corpus(base, train, original_name, original_text)
    note = ""
    if original is None:
        if weight_given and pref.original_weight:
            raise ConfigError("the original-text weight needs the model's original text: this model file does not "
                              "keep it (name the text, or set the weight to 0)")
        pref = pref.replace(original_weight=0.0)
        note = ("the model's original text is not known: what the tuning costs is neither measured nor "
                "kept (name the text)")
    corpus = corpus or base.state.get("corpus")
    tasks = builtin_tasks(corpus) if isinstance(corpus, str) else ()
    return PreferenceTrainer(base, pairs, train, pref, adapt, original, tasks, name, in_place), note


class PreferenceTrainer:
    """DPO on a checkpoint: run() yields Started, Step, PreferenceEval (one before the first
    step) and Done; control.stop() ends it after the current step, keeping what was trained."""

    def __init__(self, base, pairs: list[Pair], train: TrainConfig, pref: PreferenceConfig,
                 adapt: Optional[AdaptConfig] = None, original=None, tasks: tuple = (),
                 name: str = "the pairs", in_place: bool = False):
        adapt = (adapt or AdaptConfig(method="full")).check()
        train.check()
        pref.check()
        self.base, self.train_cfg, self.pref, self.adapt, self.tasks = base, train, pref, adapt, tuple(tasks)
        self.name, self.original = name, original
        self.tokenizer, self.block = base.tokenizer, base.model_config.block_size
        self.start_char = base.state.get("start_char")
        encoded = encode_pairs(pairs, self.tokenizer, self.block, name, self.start_char)
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(train.seed)).tolist()
        n_held = int(round(len(encoded) * pref.heldout)) if len(encoded) > 1 else 0
        if pref.heldout and len(encoded) > 1:
            n_held = max(n_held, 1)
        self.heldout = [encoded[i] for i in order[:n_held]]
        self.train_pairs = [encoded[i] for i in order[n_held:]]
        if len(self.train_pairs) < train.batch_size:
            raise ConfigError(f"{name} leaves {len(self.train_pairs)} pairs for training"
                              + (f" ({n_held} held out)" if n_held else "")
                              + f", fewer than a batch of {train.batch_size}: rate more pairs or lower the batch")
        if pref.original_weight and (original is None or len(original.train_ids()) < self.block + 1):
            raise ConfigError("the original-text weight needs the model's original text: this model file does not "
                              "keep it; name it, or set the weight to 0")
        self.original_train = original.train_ids().long() if pref.original_weight else None
        self.threads = train.threads or threads_for(min(usable_cores(), 2))
        torch.set_num_threads(self.threads)
        torch.manual_seed(train.seed)
        model = base.model if in_place else copy.deepcopy(base.model)
        model.eval()
        # the reference: the starting model, frozen; its log-probabilities once, up front
        with torch.no_grad():
            self.ref_train = self._logps(model, self.train_pairs)
            self.ref_held = self._logps(model, self.heldout)
        if adapt.method == "lora":
            model = add_adapters(model, adapt)
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=train.learning_rate, betas=(train.beta1, train.beta2),
                                           weight_decay=train.weight_decay)
        self.control = TrainControl()
        self.lock = threading.Lock()
        self.step, self.train_seconds = 0, 0.0
        self.last: Optional[PreferenceEval] = None

    @staticmethod
    def _logps(model, pairs: list[Encoded], chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, rejected = [], []
        for i in range(0, len(pairs), chunk):
            part = pairs[i:i + chunk]
            logps = completion_logps(model, [(p.prompt, p.chosen) for p in part] + [(p.prompt, p.rejected) for p in part])
            chosen.append(logps[:len(part)])
            rejected.append(logps[len(part):])
        empty = torch.zeros(0)
        return (torch.cat(chosen) if chosen else empty, torch.cat(rejected) if rejected else empty)

    @property
    def trainable(self) -> tuple[int, int]:
        return trainable(self.model)

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def _scores(self, pairs: list[Encoded], ref) -> tuple[Optional[float], Optional[float], Optional[float]]:
        if not pairs:
            return None, None, None
        chosen, rejected = self._logps(self.model, pairs)
        loss, margin = dpo_loss(chosen, rejected, ref[0], ref[1], self.pref.beta, self.pref.nll,
                                torch.tensor([float(len(p.chosen)) for p in pairs]))
        return float(loss), float((margin > 0).float().mean()), float(margin.mean())

    @torch.no_grad()
    def evaluate(self, elapsed: float) -> PreferenceEval:
        from playground.engine.analysis.evaluation import full_loss, score_tasks
        was_training = self.model.training
        self.model.eval()
        try:
            n = min(TRAIN_SAMPLE, len(self.train_pairs))
            ref = (self.ref_train[0][:n], self.ref_train[1][:n])
            loss, accuracy, margin = self._scores(self.train_pairs[:n], ref)
            held_loss, held_accuracy, held_margin = self._scores(self.heldout, self.ref_held)
            base_val = None
            if self.original is not None and self.original.has_validation:
                base_val = full_loss(self.model, self.original.val_ids(), self.block)
            task_accuracy = (score_tasks(self.model, self.tokenizer, list(self.tasks), self.start_char).accuracy
                             if self.tasks else None)
        finally:
            self.model.train(was_training)
        self.last = PreferenceEval(self.step, loss, accuracy, margin, held_loss, held_accuracy, held_margin,
                                   elapsed, base_val, task_accuracy)
        return self.last

    # -- the loop -----------------------------------------------------------------------
    def run(self, control: Optional[TrainControl] = None) -> Iterator:
        control = control or self.control
        cfg = self.train_cfg
        torch.set_num_threads(self.threads)
        first, last = self.step, self.step + cfg.max_steps
        n_train, total = self.trainable
        yield Started(total, self.tokenizer.vocab_size, len(self.train_pairs), len(self.heldout), first, last,
                      self.threads, f"{n_train:,} of {total:,} parameters train" if n_train < total else "",
                      self.tokenizer.kind, 1.0)
        t0 = time.perf_counter()
        paused = 0.0
        if first == 0:
            yield self.evaluate(0.0)
        gen = torch.Generator().manual_seed(cfg.seed + first + 1)
        good = [p.detach().clone() for p in self.params]
        status, note, tokens, loss_value = "completed", "", 0, None
        self.model.train()
        while self.step < last:
            if control.paused:
                paused += control.hold()
            if control.stopped:
                status = "stopped"
                break
            lr = lr_at(self.step - first, cfg.max_steps, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            pick = torch.randint(len(self.train_pairs), (cfg.batch_size,), generator=gen).tolist()
            batch = [self.train_pairs[i] for i in pick]
            with self.lock:
                logps = completion_logps(self.model, [(p.prompt, p.chosen) for p in batch]
                                         + [(p.prompt, p.rejected) for p in batch])
                loss, _ = dpo_loss(logps[:len(batch)], logps[len(batch):], self.ref_train[0][pick],
                                   self.ref_train[1][pick], self.pref.beta, self.pref.nll,
                                   torch.tensor([float(len(p.chosen)) for p in batch]))
                if self.original_train is not None:
                    x, y = get_batch(self.original_train, self.block, cfg.batch_size, gen)
                    _, lm = self.model(x, y)
                    loss = loss + self.pref.original_weight * lm
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    with torch.no_grad():
                        torch._foreach_copy_(self.params, good)
                    status, note = "diverged", (f"the loss became {loss_value} at step {self.step + 1}: the weights "
                                                f"of step {self.step} were kept; lower the learning rate")
                    break
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip or float("inf")))
                with torch.no_grad():
                    torch._foreach_copy_(good, self.params)
                self.optimizer.step()
                self.step += 1
            tokens += sum(len(p.prompt) + len(p.chosen) + len(p.prompt) + len(p.rejected) for p in batch)
            now = time.perf_counter()
            elapsed = now - t0 - paused
            yield Step(self.step, loss_value, lr, norm, bool(cfg.grad_clip and norm > cfg.grad_clip),
                       tokens / max(elapsed, 1e-9), elapsed)
            if self.step % cfg.eval_interval == 0 or self.step == last:
                yield self.evaluate(elapsed)
        seconds = time.perf_counter() - t0 - paused
        if status == "stopped" and self.step > first and (self.last is None or self.last.step != self.step):
            yield self.evaluate(seconds)  # what was trained, scored
        self.train_seconds += seconds
        yield Done(status, self.step, total, loss_value, None, seconds, tokens, note, peak_rss_mb(), None, None,
                   self.step)

    # -- the result ---------------------------------------------------------------------
    def checkpoint(self):
        """An ordinary model (adapters merged): the base's tokenizer, settings and original text,
        with what the preference run did."""
        from playground.engine.model.checkpoint import Checkpoint
        with self.lock:
            model = merged(self.model) if has_adapters(self.model) else copy.deepcopy(self.model)
        state = dict(self.base.state)
        state.update({"params": model.num_params(), "preference": {
            "pairs": len(self.train_pairs), "heldout": len(self.heldout), "beta": self.pref.beta,
            "method": self.adapt.method, "steps": self.step, "source": self.name,
            "heldout_accuracy": None if self.last is None else self.last.heldout_accuracy,
            "task_accuracy": None if self.last is None else self.last.task_accuracy}})
        return Checkpoint(model.eval(), self.tokenizer, self.base.train_config, state)


# -- pairs made without a person: a corpus whose tasks have one right answer ---------------------
AUTO = {"arithmetic": re.compile(r"^(\d+\+\d+=)(\d+)$")}  # a training line: the sum, then its answer


def auto_pairs(base, corpus: str = "arithmetic", samples: int = 2, seed: int = 0) -> tuple[list[Pair], dict]:
    """Pairs from the corpus's training part: each line's right answer chosen, the model's own
    wrong answer rejected (its greedy one, else one of `samples` sampled at temperature 1; lines
    it always answers right make no pair). The corpus's held-out tasks are never used: the
    training part is the one the model trained on, and any line whose prompt is a held-out task
    is left out. Returns (pairs, figures)."""
    from playground.engine.data.corpus import builtin_text
    from playground.engine.data.tasks import builtin_tasks
    from playground.engine.model.generation import generate_many
    from playground.engine.training.prepare import prepare_corpus
    if corpus not in AUTO:
        raise ConfigError(f"--auto knows {', '.join(AUTO)} (a corpus whose lines have one right answer), not {corpus!r}")
    pattern = AUTO[corpus]
    train = base.train_config or TrainConfig()
    text = builtin_text(corpus)
    split = prepare_corpus(corpus, text, base.model_config.block_size, train, base.tokenizer)
    held = {t.prompt for t in builtin_tasks(corpus)}
    lines = text[:split.train_chars].split("\n")[1:-1]  # whole lines only: the split may cut the ends
    problems = {}
    for line in lines:
        m = pattern.match(line)
        if m and "\n" + m.group(1) not in held:
            problems["\n" + m.group(1)] = m.group(2) + "\n"
    prompts = sorted(problems)
    longest = max(len(a) for a in problems.values()) + 1

    def answers(temperature: float, seed_: int) -> list[str]:
        configs = [SampleConfig(max_new_chars=longest, temperature=temperature, seed=seed_ + i)
                   for i in range(len(prompts))]
        got = generate_many(base.model.eval(), base.tokenizer, prompts, configs, base.state.get("start_char"),
                            capacity=256)
        return [g[:g.index("\n") + 1] if "\n" in g else g for g in got]

    rejected: dict[str, str] = {}
    greedy = answers(0.0, 0)
    greedy_right = 0
    for prompt, got in zip(prompts, greedy):
        if got == problems[prompt]:
            greedy_right += 1
        elif got:
            rejected[prompt] = got
    for s in range(samples):
        for prompt, got in zip(prompts, answers(1.0, seed * 1_000_003 + (s + 1) * 100_003)):
            if prompt not in rejected and got and got != problems[prompt]:
                rejected[prompt] = got
    pairs = [Pair(p, problems[p], rejected[p]) for p in prompts if p in rejected]
    return pairs, {"sums": len(prompts), "greedy_right": greedy_right, "pairs": len(pairs), "heldout_tasks": len(held)}
