"""Corpus loading and checks, the built-in corpora, the train/validation split and batches.

Text is checked once here; everything downstream may assume a usable, non-empty UTF-8 corpus.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from playground.engine.data.generated import GENERATORS
from playground.engine.data.tokenizer import CharTokenizer, Tokenizer
from playground.engine.data.tokenizer_kinds import make_tokenizer
from playground.engine.errors import CorpusError

if TYPE_CHECKING:  # torch loads lazily: the window paints before torch is imported
    import torch

# Built-in corpora: name -> (file in the package playground.corpora, one line for the picker).
BUILTINS: dict[str, tuple[str, str]] = {
    "phrase": ("phrase.txt", "The book's phrase, repeated: learned in seconds"),
    "counting": ("counting.txt", "Counting from 0 to 2,999: can it learn what comes next?"),
    "arithmetic": ("arithmetic.txt", "Two-digit sums like 12+7=19: check its answers"),
    "alphabet": ("alphabet.txt", "Alphabet runs and rhythms: patterns of growing length"),
    "fable": ("fable.txt", "A short fable written for the playground: real words, little data"),
    "repeat": ("", "Random letters, each run written twice: it learns to copy (induction heads)"),
}  # a name with no file is written by code (generated.py)
SHAKESPEARE_ENV = "PLAYGROUND_SHAKESPEARE"
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_FILE_BYTES = 2 * 1024**3  # a corpus beyond 2 GB is almost certainly the wrong file


@dataclass
class Corpus:
    """A checked text with its tokenizer, encoded ids and the train/validation split."""

    name: str
    text: str
    tokenizer: Tokenizer
    ids: np.ndarray          # the whole text encoded, uint8 when the vocabulary fits
    n_train: int             # ids[:n_train] trains, ids[n_train:] validates
    tasks: tuple = ()        # held-out tasks (tasks.Task) scored at each evaluation
    train_chars: int = -1    # characters behind ids[:n_train] (-1: one per id)

    def __post_init__(self):
        if self.train_chars < 0:
            self.train_chars = self.n_train

    @property
    def n_val(self) -> int:
        return len(self.ids) - self.n_train

    @property
    def val_chars(self) -> int:
        return len(self.text) - self.train_chars if self.n_val else 0

    def chars_per_token(self, split: str = "val") -> float:
        """Characters per id in a split (1 for characters): loss per token / ln 2 / this is
        bits per character, the figure that compares a BPE model with a character model."""
        tokens, chars = (self.n_val, self.val_chars) if split == "val" and self.n_val else \
            (self.n_train, self.train_chars)
        return chars / max(tokens, 1)

    def bits_per_char(self, loss: Optional[float], split: str = "val") -> Optional[float]:
        if loss is None:
            return None
        return loss / math.log(2) / self.chars_per_token(split)

    @property
    def has_validation(self) -> bool:
        return self.n_val > 0

    def train_ids(self) -> "torch.Tensor":
        import torch
        return torch.from_numpy(self.ids[: self.n_train])

    def val_ids(self) -> "torch.Tensor":
        import torch
        return torch.from_numpy(self.ids[self.n_train:])


def check_text(text: str) -> str:
    """Return the text ready for training (BOM removed, CRLF -> LF) or raise CorpusError."""
    if not isinstance(text, str):
        raise CorpusError("the corpus must be text")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text:
        raise CorpusError("the corpus is empty: paste some text or pick a built-in corpus")
    if "\x00" in text:
        raise CorpusError("the corpus contains NUL bytes: it looks like a binary file, not text")
    if not text.strip():
        raise CorpusError("the corpus is only whitespace: there is nothing to learn")
    if _SURROGATE.search(text):  # a search, not an encode: no copy of a 50 MB text
        raise CorpusError("the corpus contains unpaired surrogate characters: it is not valid text")
    distinct = set(text)
    if len(distinct) < 2:
        raise CorpusError(f"the corpus has only one distinct character ({text[0]!r}): "
                          "there is nothing to predict")
    return text


def read_text_file(path: str | os.PathLike, progress: Optional[Callable[[float], None]] = None) -> str:
    """Read a UTF-8 text file with clear errors for every way it can fail."""
    path = Path(path)
    if path.is_dir():
        raise CorpusError(f"{path} is a folder, not a text file")
    if not path.exists():
        raise CorpusError(f"{path} does not exist")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CorpusError(f"{path} is {size / 1024**3:.1f} GB: corpora above 2 GB are not supported")
        data = bytearray(size)  # one buffer: a 50 MB file costs 50 MB here, not twice that
        view, done = memoryview(data), 0
        with open(path, "rb") as f:
            while done < size:
                n = f.readinto(view[done:done + 8 * 1024 * 1024])
                if not n:
                    break
                done += n
                if progress:
                    progress(done / max(size, 1))
        view.release()
        del data[done:]  # the file shrank while we read it
    except PermissionError:
        raise CorpusError(f"{path} cannot be read: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if b"\x00" in data:
        raise CorpusError(f"{path.name} contains NUL bytes: it looks like a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path.name} is not UTF-8 text (bad byte at offset {exc.start}); "
                          "save it as UTF-8 and try again") from exc


def builtin_text(name: str) -> str:
    if name not in BUILTINS:
        raise CorpusError(f"unknown built-in corpus {name!r}; choose one of: {', '.join(BUILTINS)}")
    if name in GENERATORS:
        return GENERATORS[name]()
    with resources.as_file(resources.files("playground.corpora") / BUILTINS[name][0]) as path:
        return read_text_file(path)


def local_copy(name: str) -> Optional[Path]:
    """A downloadable corpus already on this machine, or None. Tiny Shakespeare is also found
    at $PLAYGROUND_SHAKESPEARE or in ../shared/corpora beside the checkout."""
    from playground.engine.data import download
    if name == "shakespeare":
        root = Path(__file__).resolve().parents[2]
        for candidate in [os.environ.get(SHAKESPEARE_ENV, ""),
                          root.parent / "shared" / "corpora" / "tinyshakespeare.txt"]:
            if candidate and Path(candidate).is_file():
                return Path(candidate)
    return download.cached(download.SOURCES[name])


def find_shakespeare() -> Path:
    """Tiny Shakespeare on this machine; CorpusError saying how to get it when it is not."""
    path = local_copy("shakespeare")
    if path is None:
        raise CorpusError("Tiny Shakespeare is not on this machine yet: train with --builtin "
                          "shakespeare (it downloads once, 1.1 MB), pass --corpus FILE, or set "
                          f"{SHAKESPEARE_ENV} to the path of tinyshakespeare.txt")
    return path


def resolve_source(builtin: str | None = None, path: str | None = None, text: str | None = None,
                   progress: Optional[Callable[[float], None]] = None, allow_download: bool = True,
                   fetched: Optional[Callable[[int, int], None]] = None) -> tuple[str, str]:
    """Turn one of (built-in name, file path, literal text) into (name, raw text). A
    downloadable corpus not on this machine is fetched (fetched(bytes, total) reports
    progress) unless allow_download is False."""
    from playground.engine.data import download
    given = [x is not None for x in (builtin, path, text)]
    if sum(given) != 1:
        raise CorpusError("give exactly one corpus: a built-in name, a file, or text")
    if text is not None:
        return "pasted text", text
    if path is not None:
        return Path(path).name, read_text_file(path, progress)
    if builtin in download.SOURCES:
        source = download.SOURCES[builtin]
        local = local_copy(builtin)
        if local is None and not allow_download:
            raise CorpusError(f"{source.title} is not on this machine, and downloading is off: "
                              f"drop --no-download to fetch it once ({source.size_text} from "
                              f"{source.url})")
        return builtin, read_text_file(local or download.download(source, fetched), progress)
    return builtin, builtin_text(builtin)


class _Stopped(Exception):
    """Raised inside load_text when reading a file was cancelled."""


def load_text(source, cancelled: Callable[[], bool], report: Callable[[float], None]) -> Optional[str]:
    """A corpus read for the window, as a task: a public-domain text (a download.Source) is
    downloaded first, a file (a path) read; report(percent) as it goes. Cancelled (cancelled()
    becomes true: it is asked between short waits on the network or the disk) it returns None
    and keeps nothing; a failure raises CorpusError in words."""
    from playground.engine.data import download

    def progress(fraction: float) -> None:
        if cancelled():
            raise _Stopped
        report(fraction * 100)

    try:
        path = source
        if isinstance(source, download.Source):
            for done, total in download.fetch(source, cancelled=cancelled):
                report(100 * done / total)
            path = download.cached_path(source)
        return read_text_file(path, progress)
    except (download.DownloadCancelled, _Stopped):
        return None


def build_corpus(name: str, text: str, val_fraction: float = 0.1, block_size: int = 1,
                 tokenizer: Tokenizer | None = None, tasks: tuple = (), kind: str = "char",
                 vocab_size: int = 512, progress: Optional[Callable[[float], None]] = None) -> Corpus:
    """Check and encode a text and hold out its tail for validation.

    The last val_fraction of the characters validates when it holds one full window (block
    size + 1 ids); otherwise every character trains and validation is reported unavailable.
    Without a tokenizer one is made: kind "char" from every character of the text, kind "bpe"
    trained on the training part only (vocab_size tokens at most). With a given tokenizer
    (continuing a saved model) a character model needs the text to use only its characters.
    """
    text = check_text(text)
    n_train_chars, _ = split_sizes(len(text), val_fraction, block_size)
    if tokenizer is None:
        tokenizer = make_tokenizer(kind, text, n_train_chars, vocab_size)
    elif isinstance(tokenizer, CharTokenizer):
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise CorpusError(f"the corpus has {len(unknown)} characters the model's vocabulary "
                              f"lacks ({shown}); train a new model for this corpus")
    if isinstance(tokenizer, CharTokenizer):  # one id per character: the split is the same
        ids = tokenizer.encode_array(text, progress)
        return Corpus(name, text, tokenizer, ids, n_train_chars, tuple(tasks))
    # subwords: each part encoded on its own, so validation is exactly the held-out characters
    train_ids = tokenizer.encode_array(text[:n_train_chars], progress)
    val_ids = tokenizer.encode_array(text[n_train_chars:])
    if len(val_ids) < block_size + 1:
        n_train_chars, val_ids = len(text), val_ids[:0]
        train_ids = tokenizer.encode_array(text)
    return Corpus(name, text, tokenizer, np.concatenate([train_ids, val_ids]), len(train_ids),
                  tuple(tasks), n_train_chars)


def split_sizes(n: int, val_fraction: float, block_size: int) -> tuple[int, int]:
    """(training, validation) lengths of a text of n characters: the tail's share becomes
    validation only when it holds one full window (block size + 1); else all of it trains.
    The one statement of the split: the corpus, the window's stats and its checks use it."""
    n_val = int(n * val_fraction)
    if n_val < block_size + 1:
        n_val = 0
    return n - n_val, n_val


def distinct_windows(text, block_size: int, limit: int = 50_000) -> int:
    """How many different training windows (block size + 1 ids) a text (a str, or its ids as
    a numpy array) holds: a text that repeats itself holds few, and a merged batch computes
    only those. One longer than `limit` is taken to repeat nothing (counting would cost more
    than it tells)."""
    n = len(text) - block_size
    if n <= 0 or len(text) > limit:
        return max(n, 0)
    if isinstance(text, np.ndarray):
        data, width = text.tobytes(), text.itemsize
        return len({data[i * width:(i + block_size + 1) * width] for i in range(n)})
    return len({text[i:i + block_size + 1] for i in range(n)})


def window_count(n_ids: int, block_size: int) -> int:
    """How many distinct training windows of block_size + 1 characters a split holds."""
    return max(n_ids - block_size, 0)


def get_batch(data: "torch.Tensor", block_size: int, batch_size: int,
              generator: "torch.Generator") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Random windows as (inputs, targets), each (B, T) int64, gathered in one indexing op."""
    x, y, _ = get_weighted_batch(data, block_size, batch_size, generator, merge=False)
    return x, y


def get_weighted_batch(data: "torch.Tensor", block_size: int, batch_size: int,
                       generator: "torch.Generator", merge: bool = True
                       ) -> tuple["torch.Tensor", "torch.Tensor", Optional["torch.Tensor"]]:
    """Like get_batch, but with merge=True a window drawn several times appears once, with
    a weight: its share of the batch. Windows are the same when their text is, wherever they
    start (a repeated phrase has one window per position in the phrase). The weighted mean
    loss (and its gradient) equals the plain batch mean; a tiny or repetitive corpus then
    costs a fraction of the compute. Weights are None when nothing repeats enough."""
    import torch
    starts = torch.randint(window_count(len(data), block_size), (batch_size,), generator=generator)
    rows = data[starts[:, None] + torch.arange(block_size + 1)].long()  # (B, T+1)
    weights = None
    if merge:
        unique, counts = torch.unique(rows, dim=0, return_counts=True)
        if len(unique) <= 0.75 * batch_size:
            rows, weights = unique, counts.float() / batch_size
    return rows[:, :-1], rows[:, 1:], weights
