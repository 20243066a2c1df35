"""Model, training and sampling settings: frozen dataclasses whose checks speak plain words.

Every check names the field, so a learner can fix it; nothing out of range reaches torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from playground.engine.errors import ConfigError

# Hard upper bounds keep a typo (width 1e9) from freezing the machine before torch even starts.
MAX_LAYERS = 48
MAX_HEADS = 64
MAX_WIDTH = 4096
MAX_BLOCK = 4096
MAX_VOCAB = 1_114_112  # every Unicode code point
MAX_BATCH = 4096
MAX_STEPS = 10_000_000
MAX_THREADS = 256
MIN_BPE_VOCAB, MAX_BPE_VOCAB = 256, 65_536   # the bytes themselves (no merges) .. a large BPE
MAX_LR = 1.0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(errors: list[str], name: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value):
        errors.append(f"{name} must be a whole number, not {value!r}")
    elif not low <= value <= high:
        errors.append(f"{name} {value} is out of range: use {low} to {high:,}")


def _float_in(errors: list[str], name: str, value: Any, low: float, high: float,
              low_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{name} must be a number, not {value!r}")
        return False
    if not math.isfinite(value):
        errors.append(f"{name} must be a finite number, not {value}")
        return False
    if value < low or (low_open and value == low) or value > high:
        bound = f"above {low:g}" if low_open else f"from {low:g}"
        errors.append(f"{name} {value:g} is out of range: use a value {bound} up to {high:g}")
        return False
    return True


class _Checked:
    """Mixin: `check()` raises one ConfigError listing every problem that `problems()` finds."""

    def problems(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self):
        errors = self.problems()
        if errors:
            raise ConfigError("; ".join(errors))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from a dict, ignoring unknown keys; types are checked by `check()`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _setting(default: Any, label: str, *, low: Any = None, high: Any = None, low_open: bool = False,
             choices: tuple = (), key: str = "", flag: str = "", title: str = "", help: str = "",
             tip: str = "", special: str = "", invert: bool = False, window: bool = True,
             names: tuple = (), step: float = 0.0, decimals: int = 0) -> Any:
    """A setting, stated once: its default, its words, its allowed values and how people reach
    it. `problems()` checks the values, the command line's flags (`key`: --layers; `flag`
    overrides) and the window's settings panel (`title`, `tip`) are built from them, and the
    fast-path tests draw every field from them, new fields included.

    label: the words messages use ("learning rate"); key: the short name of its CLI flag, its
    field in the window and the settings file ('' keeps it off both); help: the flag's one line;
    tip: the window's tooltip (help when ''); special: what the window shows for the lowest
    value ("auto"); invert: a yes/no shown the other way round ("no head bias", --no-head-bias);
    names: the words for each of the choices; window=False keeps it on the command line only."""
    return dataclasses.field(default=default, metadata={
        "label": label, "low": low, "high": high, "low_open": low_open, "choices": choices,
        "key": key, "flag": flag or (f"--{key.replace('_', '-')}" if key else ""),
        "title": title or label[:1].upper() + label[1:], "help": help, "tip": tip or help,
        "special": special, "invert": invert, "window": window and bool(key), "names": names,
        "step": step, "decimals": decimals})


class _Declared(_Checked):
    """Settings whose every field is declared with _setting(): the checks read the declarations."""

    def problems(self) -> list[str]:
        errors: list[str] = []
        for f in dataclasses.fields(self):
            _field_problems(errors, f, getattr(self, f.name))
        return errors


@dataclass(frozen=True)
class ModelConfig(_Declared):
    vocab_size: int = _setting(65, "vocabulary size", low=1, high=MAX_VOCAB)  # from the corpus
    n_layer: int = _setting(2, "layers", low=1, high=MAX_LAYERS, key="layers",
                            help="transformer blocks, one on another",
                            tip="Layers: how many transformer blocks are stacked. More can learn more, trains slower")
    n_head: int = _setting(4, "heads", low=1, high=MAX_HEADS, key="heads",
                           help="attention heads per block (the width must divide evenly among them)",
                           tip="Heads: attention heads per block, each looking for its own pattern. "
                               "Width must divide evenly")
    n_embd: int = _setting(64, "width", low=1, high=MAX_WIDTH, key="width",
                           help="length of each token's vector (the embedding width)",
                           tip="Width: size of each character's vector; more learns more, trains slower")
    block_size: int = _setting(32, "block size", low=1, high=MAX_BLOCK, key="block",
                               help="the longest context the model sees at once",
                               tip="Block size: how many previous characters the model can look at")
    dropout: float = _setting(0.0, "dropout", low=0.0, high=0.9, key="dropout", step=0.05, decimals=2,
                              help="fraction of activations zeroed while training (0 for small texts)",
                              tip="Dropout: fraction of signals randomly silenced while training, to fight "
                                  "memorising; 0 for small texts")
    # dropout on the attention probabilities too (GPT-2's attn_pdrop), or on the residual stream
    # and the embeddings only: attention then keeps its fused kernel
    attention_dropout: bool = _setting(True, "attention dropout", choices=(True, False),
                                       key="no_attention_dropout", invert=True, window=False,
                                       title="no attention dropout",
                                       help="dropout on the residual stream and the embeddings only, not "
                                            "on the attention probabilities (attention keeps its fused "
                                            "kernel: about 12%% shorter steps here)")
    # "learned": GPT-2's learned absolute positions (the reference architecture).
    # "rope": rotary positions with attention limited to the last block_size characters at
    # every layer; identical on training windows, and it lets generation keep a rolling cache.
    position: str = _setting("learned", "position scheme", choices=("learned", "rope"), key="position",
                             window=False, help="position scheme of a new model (learned: the reference; "
                                                "rope: rotary, with a window of the block)")
    # the output head's bias (the reference has one); without it every export to Hugging Face
    # transformers is exact, whose GPT-2 and Starcoder2 heads have none
    head_bias: bool = _setting(True, "head bias", choices=(True, False), key="no_head_bias", invert=True,
                               title="no head bias",
                               help="a new model without the output head's bias (every export to "
                                    "transformers is then exact)",
                               tip="Train without a bias on the output layer: exports to transformers "
                                   "(GPT-2, Starcoder2 have none) are then exact for any vocabulary")

    # GPT-2's tanh approximation of the GELU ("gelu_tanh"), for models opened from GPT-2
    activation: str = _setting("gelu", "activation", choices=("gelu", "gelu_tanh"), key="activation",
                               window=False, help="the MLP's GELU: exact (gelu) or GPT-2's tanh approximation")
    # the output head shares the token embedding's weights (GPT-2 does)
    tie_embeddings: bool = _setting(False, "tied embeddings", choices=(False, True), key="tie_embeddings",
                                    window=False, help="the output head shares the token embeddings (as GPT-2)")
    # the rotary positions' base (Starcoder2 models call it rope_theta)
    rope_base: float = _setting(10000.0, "rotary base", low=1.0, high=1e9, key="rope_base", window=False,
                                help="rotary positions' base frequency (rope_theta)")

    def problems(self) -> list[str]:
        errors = super().problems()
        if errors:
            return errors
        if self.tie_embeddings and self.head_bias:
            errors.append("tied embeddings need a head without bias (as GPT-2's)")
        if self.n_embd % self.n_head:
            errors.append(f"width {self.n_embd} must be divisible by heads {self.n_head}")
        elif self.position == "rope" and self.head_size % 2:
            errors.append(f"rotary positions need an even head size; width {self.n_embd} / "
                          f"heads {self.n_head} is odd")
        return errors

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


def _field_problems(errors: list[str], f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    if f.type in (str, "str") and not meta["choices"]:  # free text: its own class checks its words
        if not isinstance(value, str):
            errors.append(f"{meta['label']} must be text, not {value!r}")
    elif meta["choices"]:
        if value not in meta["choices"] or type(value) is not type(meta["choices"][0]):
            allowed = " or ".join(repr(c) for c in meta["choices"])
            errors.append(f"{meta['label']} {value!r} is unknown: use {allowed}")
    elif isinstance(meta["low"], int) and not isinstance(meta["low"], bool):
        _int_in(errors, meta["label"], value, meta["low"], meta["high"])
    else:
        _float_in(errors, meta["label"], value, meta["low"], meta["high"], meta.get("low_open", False))


def settings_of(config_class) -> list[dataclasses.Field]:
    """The fields of a settings class that people reach (a key: a CLI flag, a field in the window)."""
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("key")]


@dataclass(frozen=True)
class TrainConfig(_Declared):
    batch_size: int = _setting(32, "batch size", low=1, high=MAX_BATCH, key="batch",
                               help="windows of text per step",
                               tip="Batch size: windows of text per step. Larger is smoother but slower per step")
    max_steps: int = _setting(500, "steps", low=1, high=MAX_STEPS, key="steps", help="optimizer steps in the run",
                              tip="Steps: how many updates one click on Train makes")
    learning_rate: float = _setting(3e-3, "learning rate", low=0.0, high=MAX_LR, low_open=True, key="lr",
                                    step=1e-4, decimals=5,
                                    help="peak learning rate after warm-up (the minimum keeps its ratio)",
                                    tip="Learning rate: how big each update is. Too high diverges, too low crawls")
    min_lr: float = _setting(3e-3, "minimum learning rate", low=0.0, high=MAX_LR)  # the cosine's end
    warmup_steps: int = _setting(0, "warm-up steps", low=0, high=MAX_STEPS, key="warmup", title="Warm-up",
                                 help="steps of linear warm-up from 0 to the peak learning rate",
                                 tip="Warm-up: steps over which the learning rate rises from 0 to its peak")
    weight_decay: float = _setting(0.0, "weight decay", low=0.0, high=10.0)  # AdamW, on matrices only
    beta1: float = _setting(0.9, "beta1", low=0.0, high=0.9999)
    beta2: float = _setting(0.99, "beta2", low=0.0, high=0.99999)
    grad_clip: float = _setting(1.0, "gradient clip", low=0.0, high=1e6, key="grad_clip", title="Clip", decimals=2,
                                step=0.5, special="off",
                                help="scale each step's gradient down to this global norm (0: never)",
                                tip="Gradient clip: a step whose gradient norm is above this is scaled down "
                                    "to it (the Health tab counts them); 0 turns it off")
    eval_interval: int = _setting(100, "evaluation interval", low=1, high=MAX_STEPS, key="eval_interval",
                                  title="Eval every", help="steps between evaluations (and samples)",
                                  tip="How often (in steps) to measure validation loss and show a sample")
    eval_batches: int = _setting(20, "evaluation batches", low=1, high=10_000)  # averaged per evaluation
    val_fraction: float = _setting(0.1, "validation fraction", low=0.0, high=0.5)  # the text's tail held out
    seed: int = _setting(1337, "seed", low=0, high=2**63 - 1, key="seed", help="random seed: the same seed, the same run",
                         tip="Seed: the same seed and settings give exactly the same run")
    threads: int = _setting(0, "threads", low=0, high=MAX_THREADS, key="threads", special="auto",
                            help="CPU threads (0: auto)",
                            tip="CPU threads for training; 0 picks automatically (small models run best on one)")
    sample_chars: int = _setting(100, "sample length", low=0, high=100_000)  # written at each evaluation
    optimizer: str = _setting("adamw", "optimizer", choices=("adamw", "muon"), key="optimizer", window=False,
                              help="optimizer for the weight matrices (muon: Muon for the hidden ones)")
    muon_lr: float = _setting(0.02, "Muon learning rate", low=0.0, high=MAX_LR, low_open=True)
    # an exponential moving average of the weights, evaluated and kept in their place (0: off)
    ema: float = _setting(0.0, "weight averaging", low=0.0, high=0.9999, key="ema", window=False,
                          help="evaluate and keep a moving average of the weights, this share of it "
                               "carried over each step (0: off; 0.995 averages about the last 200 steps)")
    keep: str = _setting("best", "keep", choices=("best", "last"), key="keep",
                         names=("best (validation)", "last step"),
                         help="end with the weights of the lowest validation loss (best) or of the last step",
                         tip="Which weights the model ends with: those of the lowest validation loss "
                             "(best; a model that starts to memorise is not kept) or the last step's")
    patience: int = _setting(0, "patience", low=0, high=100_000, key="patience", title="Early stop",
                             special="never",
                             help="stop after this many evaluations without a better validation loss (0: never)",
                             tip="Early stopping: stop after this many evaluations without a better "
                                 "validation loss (never: train every step)")
    tokenizer: str = _setting("char", "tokenizer", choices=("char", "bpe"), key="tokenizer",
                              names=("characters", "byte-level BPE"),
                              help="char: one token per character; bpe: byte-level subwords learned from the corpus",
                              tip="Characters: one token per character (the book's way). Byte-level BPE: "
                                  "pieces of words learned from the corpus, as real LLMs use; each step then "
                                  "sees more text")
    bpe_vocab: int = _setting(512, "BPE vocabulary size", low=MIN_BPE_VOCAB, high=MAX_BPE_VOCAB,
                              key="bpe_vocab", flag="--vocab-size", title="Vocabulary",
                              help="BPE vocabulary size, its end-of-text token included (256: the bytes "
                                   "alone, and end-of-text)",
                              tip="How many tokens the BPE learns: the 256 bytes, merges, and an end-of-text "
                                  "token (256 gives the bytes and end-of-text alone); "
                                  "about 1 MB of text wants 512 to 1024")

    def problems(self) -> list[str]:
        errors = super().problems()
        if not errors and self.min_lr > self.learning_rate:
            errors.append(f"minimum learning rate {self.min_lr:g} is above the learning rate "
                          f"{self.learning_rate:g}")
        if _is_int(self.warmup_steps) and _is_int(self.max_steps) and self.warmup_steps > self.max_steps:
            errors.append(f"warm-up steps {self.warmup_steps} exceed the number of steps "
                          f"{self.max_steps}")
        return errors

    def edited(self, **changes: Any) -> "TrainConfig":
        """These settings with a user's edits, by the one rule the CLI and the window share: a
        new peak learning rate moves min_lr with it (the decay keeps its ratio), and a run made
        shorter than its warm-up gets a tenth of its steps as warm-up, unless that was given."""
        new = self.replace(**changes)
        lr = changes.get("learning_rate")
        if "min_lr" not in changes and _usable_rate(lr) and _usable_rate(self.learning_rate):
            new = new.replace(min_lr=min(self.min_lr * lr / self.learning_rate, lr))
        if "warmup_steps" not in changes and _is_int(new.max_steps) and \
                new.max_steps >= 1 and new.warmup_steps > new.max_steps:
            new = new.replace(warmup_steps=new.max_steps // 10)
        return new


def _usable_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and value > 0


LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # every projection of a block


@dataclass(frozen=True)
class AdaptConfig(_Declared):
    """How a model is adapted to new text (the finetune command, the window's Fine-tune)."""
    method: str = _setting("lora", "method", choices=("full", "lora"), key="method",
                           names=("full: every weight", "LoRA: small adapters"),
                           help="full: every weight trains; lora: low-rank adapters beside the projections")
    rank: int = _setting(8, "LoRA rank", low=1, high=1024, key="rank", title="Rank",
                         help="the adapters' rank: more can learn more, and is more to store")
    alpha: float = _setting(16.0, "LoRA alpha", low=0.0, high=10_000.0, low_open=True, key="alpha", title="Alpha",
                            help="the adapters' scale: their update is multiplied by alpha / rank")
    targets: str = _setting(",".join(LORA_TARGETS), "LoRA targets", key="targets", title="Targets",
                            help="which projections get adapters, by name, comma-separated "
                                 f"(any of {', '.join(LORA_TARGETS)})")
    replay: float = _setting(0.0, "replay share", low=0.0, high=0.9, key="replay", title="Replay", decimals=2,
                             step=0.05, help="the share of each batch taken from the model's original text, "
                                             "to forget less of it")

    def target_list(self) -> list[str]:
        return [t.strip() for t in self.targets.split(",") if t.strip()]

    def problems(self) -> list[str]:
        errors = super().problems()
        if isinstance(self.targets, str):
            unknown = [t for t in self.target_list() if t not in LORA_TARGETS]
            if unknown or not self.target_list():
                errors.append(f"LoRA targets {', '.join(unknown) or '(none)'} unknown: use some of "
                              f"{', '.join(LORA_TARGETS)}")
        return errors


@dataclass(frozen=True)
class PreferenceConfig(_Declared):
    """How a model is tuned by preference (DPO: the dpo command, the window's Tune by preference)."""
    beta: float = _setting(0.1, "beta", low=0.0, high=100.0, low_open=True, key="beta", title="Beta", decimals=3,
                           step=0.05, help="DPO's beta: how far the model may move from where it started "
                                           "(higher keeps it closer)")
    heldout: float = _setting(0.1, "held-out share", low=0.0, high=0.5, key="heldout", title="Held out", decimals=2,
                              step=0.05, help="the share of the pairs kept out of training, to measure the "
                                              "preference accuracy on pairs it never saw")
    nll: float = _setting(1.0, "chosen NLL weight", low=0.0, high=100.0, key="nll", title="Chosen NLL", decimals=2,
                          step=0.1, help="adds this weight times the chosen completions' negative log-likelihood "
                                         "per token to DPO's loss (DPO+NLL), so the chosen answers stay likely; "
                                         "0 is the paper's DPO")
    original_weight: float = _setting(1.0, "original-text weight", low=0.0, high=100.0, key="original_weight",
                                      title="Original text", decimals=2, step=0.1,
                                      help="adds this weight times the language-model loss on a batch of the "
                                           "model's original text to each step (as InstructGPT mixed pretraining "
                                           "into its RL), so the rest of what the model writes stays as it was")


@dataclass(frozen=True)
class SampleConfig(_Checked):
    max_new_chars: int = 200   # characters to generate (the last token is cut to fit)
    max_new_tokens: int = 0    # or stop after this many tokens, when not 0 (a BPE token is several characters)
    temperature: float = 1.0   # 0 always picks the likeliest character; higher is wilder
    top_k: int = 0             # keep only the k likeliest characters (0 keeps all)
    top_p: float = 1.0         # keep the smallest set whose odds add up to p (1 keeps all)
    seed: int = 1337

    def problems(self) -> list[str]:
        errors: list[str] = []
        _int_in(errors, "number of characters", self.max_new_chars, 0, 1_000_000)
        _int_in(errors, "number of tokens", self.max_new_tokens, 0, 1_000_000)
        _float_in(errors, "temperature", self.temperature, 0.0, 100.0)
        _int_in(errors, "top-k", self.top_k, 0, MAX_VOCAB)
        _float_in(errors, "top-p", self.top_p, 0.0, 1.0, low_open=True)
        _int_in(errors, "seed", self.seed, 0, 2**63 - 1)
        return errors


def too_short(block_size: int, n_train: int, unit: str = "characters") -> str:
    """Why a training text of this many ids cannot train this block size; '' when it can."""
    if n_train >= block_size + 1:
        return ""
    return (f"block size {block_size} is longer than the training text ({n_train} "
            f"{unit}): it needs at least block size + 1 {unit}")


def check_fits_text(model: ModelConfig, train: TrainConfig, n_train: int,
                    unit: str = "characters") -> None:
    """Raise ConfigError when the settings do not fit a training text of this many ids."""
    errors = [e for e in [too_short(model.block_size, n_train, unit)] if e]
    if train.batch_size > max(n_train, 1):
        errors.append(f"batch size {train.batch_size} is larger than the training text "
                      f"({n_train} {unit})")
    if errors:
        raise ConfigError("; ".join(errors))
