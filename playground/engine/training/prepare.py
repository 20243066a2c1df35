"""Getting a run ready, stated once for the command line, the window, the scaling ladder and the
bench: the corpus encoded, the tokenizer made or kept, a new model or a saved one, its optimizer
state, and the rules for continuing a model:

- a model keeps its tokenizer: asking for another kind (or another BPE size) is refused in
  words, and a character model refuses text with characters it never saw;
- a model keeps its shape: the model settings are the file's own;
- a continued run trains with the training settings it is given (the caller decides whose:
  the command line keeps the file's own unless flags change them, the window uses its fields),
  its steps counting on from the model's.
"""

from __future__ import annotations

from typing import Callable, Optional

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.data.corpus import Corpus, build_corpus
from playground.engine.errors import ConfigError


def continued_settings(ckpt, train: TrainConfig) -> TrainConfig:
    """The training settings a continued run of this model uses: `train`, with the model's own
    tokenizer (ConfigError when `train` asks for another)."""
    kind = ckpt.tokenizer.kind
    if train.tokenizer != kind:
        raise ConfigError(f"the model reads {kind} tokens: a model keeps its tokenizer, so it cannot "
                          f"continue as {train.tokenizer}; Train a new model for that")
    asked = ckpt.train_config.bpe_vocab if ckpt.train_config is not None else ckpt.tokenizer.vocab_size
    if kind == "bpe" and train.bpe_vocab != asked:
        raise ConfigError(f"the model's BPE vocabulary is {asked}: a model keeps its tokenizer, so it "
                          f"cannot continue with {train.bpe_vocab}; Train a new model for that")
    return train


def prepare_corpus(name: str, text: str, block_size: int, train: TrainConfig, tokenizer=None,
                   tasks: tuple = (), progress: Optional[Callable[[float], None]] = None) -> Corpus:
    """The text checked, encoded and split: by `tokenizer` when continuing a model, else by a
    new one of the kind the settings ask for."""
    return build_corpus(name, text, train.val_fraction, block_size, tokenizer=tokenizer, tasks=tuple(tasks),
                        kind=train.tokenizer, vocab_size=train.bpe_vocab, progress=progress)


def prepare_trainer(corpus: Corpus, model: ModelConfig, train: TrainConfig, resume=None, **options):
    """A Trainer for a new model of these settings (its vocabulary the corpus's), or for the
    checkpoint `resume` with its weights, step and optimizer state. options: device, compile,
    autograd (Trainer's)."""
    from playground.engine.training.trainer import Trainer
    if resume is not None:
        return Trainer.resume(resume, corpus, continued_settings(resume, train), **options)
    return Trainer(model.replace(vocab_size=corpus.tokenizer.vocab_size).check(), train, corpus, **options)


def prepare_run(name: str, text: str, model: ModelConfig, train: TrainConfig, resume=None,
                tasks: tuple = (), progress: Optional[Callable[[float], None]] = None, **options):
    """prepare_corpus, then prepare_trainer: a run ready to go. resume: a Checkpoint to continue."""
    train.check()
    if resume is not None:
        train = continued_settings(resume, train)
        corpus = prepare_corpus(name, text, resume.model_config.block_size, train, resume.tokenizer, tasks, progress)
    else:
        corpus = prepare_corpus(name, text, model.block_size, train, None, tasks, progress)
    return prepare_trainer(corpus, model, train, resume, **options)


__all__ = ["continued_settings", "prepare_corpus", "prepare_run", "prepare_trainer"]
