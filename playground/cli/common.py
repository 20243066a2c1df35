"""What every subcommand shares: a parser that fails in one line, the corpus-source flags and
their resolution, the settings' flags built from their declarations, a progress bar, download
progress, and a first Ctrl+C that stops cleanly after the current step."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from typing import Optional, TextIO


class Parser(argparse.ArgumentParser):
    """Bad arguments end with one line on stderr and exit code 2, never a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(text: str) -> float:
    """Any number; its range is checked with the settings it belongs to (in plain words)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive(text: str) -> float:
    """A finite number above 0 (a budget: 2e6 tokens, 1e13 FLOPs)."""
    value = number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


# -- the corpus -----------------------------------------------------------------------------
def add_corpus_flags(parser, builtin_help: str, text_flag: bool = True, file_flag: str = "--corpus") -> None:
    """--corpus FILE | --text STR | --builtin NAME, and --no-download."""
    from playground.engine.data.corpus import BUILTINS
    from playground.engine.data.download import SOURCES
    group = parser.add_mutually_exclusive_group()
    group.add_argument(file_flag, metavar="FILE", help="a UTF-8 text file")
    if text_flag:
        group.add_argument("--text", metavar="STR", help="the corpus as a literal string")
    group.add_argument("--builtin", choices=sorted(BUILTINS) + sorted(SOURCES), help=builtin_help)
    parser.add_argument("--no-download", action="store_true",
                        help="never download a corpus; fail if it is not on this machine")


def corpus_given(args) -> bool:
    return any(getattr(args, name, None) is not None for name in ("text", "corpus", "builtin"))


def resolve_corpus(args, default_builtin: str) -> tuple[str, str]:
    """(name, text) of the corpus the flags name, or of default_builtin when none does; a
    corpus to download shows its progress."""
    from playground.engine.data.corpus import resolve_source
    if getattr(args, "text", None) is not None:
        return resolve_source(text=args.text)
    if getattr(args, "corpus", None) is not None:
        return resolve_source(path=args.corpus)
    return resolve_source(builtin=args.builtin or default_builtin, allow_download=not args.no_download,
                          fetched=download_progress)


def download_progress(done: int, total: int) -> None:
    """One line on stderr that fills up while a corpus downloads."""
    sys.stderr.write(f"\rdownloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# -- settings -------------------------------------------------------------------------------
def add_setting_flags(parser, *config_classes, only: Optional[set] = None) -> None:
    """A flag for every setting that declares one (engine/config.py: _setting), with its help
    and choices: --layers, --lr, --no-head-bias ... Absent flags stay None (not given)."""
    from playground.engine.config import settings_of
    for config_class in config_classes:
        for f in settings_of(config_class):
            meta = f.metadata
            if only is not None and meta["key"] not in only:
                continue
            dest = meta["key"]
            if f.type in (bool, "bool"):  # a yes/no: its flag turns it on (or off, inverted)
                parser.add_argument(meta["flag"], dest=dest, action="store_true", default=None,
                                    help=meta["help"])
            elif meta["choices"]:
                parser.add_argument(meta["flag"], dest=dest, choices=list(meta["choices"]), help=meta["help"])
            else:
                kind = int if f.type in (int, "int") else number
                parser.add_argument(meta["flag"], dest=dest, type=kind, metavar="N", help=meta["help"])


def setting_edits(args, config_class) -> dict:
    """{field: value} of the settings of this class given on the command line."""
    from playground.engine.config import settings_of
    edits = {}
    for f in settings_of(config_class):
        value = getattr(args, f.metadata["key"], None)
        if value is not None:
            edits[f.name] = (not value) if f.metadata["invert"] else value
    return edits


# -- progress and stopping ------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal; plain lines otherwise."""

    def __init__(self, stream: TextIO, quiet: bool):
        self.stream, self.quiet = stream, quiet
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_draw = 0.0

    def step(self, ev, first: int, last: int) -> None:
        if self.quiet or not self.tty or time.monotonic() - self.last_draw < 0.1 and ev.step != last:
            return
        self.last_draw = time.monotonic()
        frac = (ev.step - first) / max(last - first, 1)
        bar = "#" * int(frac * 30)
        left = ev.elapsed_s / max(frac, 1e-9) * (1 - frac)
        self.stream.write(f"\r[{bar:<30}] {ev.step}/{last} loss {ev.loss:.4f} "
                          f"{ev.tokens_per_s:,.0f} tok/s  left {left:4.0f}s ")
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r" + " " * 90 + "\r")
        print(text, file=self.stream, flush=True)


def follow(events, progress: Progress, log_json: Optional[str] = None, each=None):
    """Run a trainer's events to their end: each written to log_json as one JSON object a line
    (the --log-json format), the steps drawn as the progress bar, every other event handed to
    each(event). Returns the Done event."""
    import json

    from playground.engine.events import Done, Started, Step, to_json_dict
    log_file = open(log_json, "w", encoding="utf-8") if log_json else None
    first = last = 0
    done = None
    try:
        for ev in events:
            if log_file:
                log_file.write(json.dumps(to_json_dict(ev)) + "\n")
            if isinstance(ev, Started):
                first, last = ev.first_step, ev.last_step
            if isinstance(ev, Step):
                progress.step(ev, first, last)
            elif isinstance(ev, Done):
                done = ev
            elif each is not None:
                each(ev)
    finally:
        if log_file:
            log_file.close()
    assert done is not None, "a run ends with a Done event"
    return done


def stop_on_ctrl_c(stop) -> None:
    """First Ctrl+C stops cleanly after the current step (and saves); second kills."""
    def handler(signum, frame):
        print("\nstopping after this step (Ctrl+C again to abort)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop()
    signal.signal(signal.SIGINT, handler)
