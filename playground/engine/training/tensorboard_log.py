"""TensorBoard event files from a run's events (train --tensorboard DIR): losses, bits per
character, learning rate, gradient norm, throughput, samples as text and the run's settings as
hyperparameters. Each run gets a folder of its own under DIR, so `tensorboard --logdir DIR` shows
earlier runs side by side. The JSON Lines log (--log-json) stays the record; this is a view of the
same events, written with torch's SummaryWriter (which needs the `tensorboard` package)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from playground.engine.errors import ConfigError
from playground.engine.events import Done, Eval, Event, PreferenceEval, Sample, Started, Step

INSTALL = "pip install 'gpt-playground-studio[tensorboard]'"
# what the hyperparameter table shows beside each run's settings (scalar tags written below)
METRICS = ("loss/train", "loss/val", "bits_per_char/val")


def check_available() -> None:
    """ConfigError, before a run starts, when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None


def run_folder(root: str | Path, label: str) -> Path:
    """root/DATE_TIME_LABEL, a new folder name (a second run in the same second gets -2)."""
    stem = time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + (re.sub(r"[^\w.-]+", "-", label).strip("-") or "run")
    folder, n = Path(root) / stem, 2
    while folder.exists():
        folder, n = Path(root) / f"{stem}-{n}", n + 1
    return folder


def _plain(value):
    """A hyperparameter TensorBoard can show: numbers, strings and yes/no as they are, the rest as text."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else str(value)
    return "none" if value is None else str(value)


def _finite(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _code(text: str) -> str:
    """Text shown as it is (TensorBoard renders markdown): an indented block."""
    return "\n".join("    " + line for line in (text or "(empty)").split("\n"))


class TensorBoardLog:
    """Writes each event it is given into `folder` (see run_folder); close() when the run ends."""

    def __init__(self, folder: Path, settings: dict):
        """settings: {name: value} of the run (model and training settings, corpus): the
        hyperparameters TensorBoard compares runs by."""
        check_available()
        from torch.utils.tensorboard import SummaryWriter
        try:
            folder.mkdir(parents=True, exist_ok=False)
            self.writer = SummaryWriter(log_dir=str(folder))
        except OSError as exc:
            raise ConfigError(f"cannot write TensorBoard files in {folder}: {exc.strerror or exc}") from None
        self.folder = folder
        self.settings = {k: _plain(v) for k, v in settings.items()}

    def write(self, event: Event) -> None:
        w = self.writer
        if isinstance(event, Started):
            self._hyperparameters()
            w.add_text("run/settings", "\n".join(f"    {k} = {v}" for k, v in self.settings.items()), 0)
            w.add_text("run/started", _code(", ".join(f"{k} {v}" for k, v in asdict(event).items() if v != "")),
                       event.first_step)
        elif isinstance(event, Step):
            for tag, value in (("loss/train_step", event.loss), ("optim/lr", event.lr),
                               ("optim/grad_norm", event.grad_norm), ("speed/tokens_per_s", event.tokens_per_s)):
                self._scalar(tag, value, event.step)
        elif isinstance(event, Eval):
            for tag, value in (("loss/train", event.train_loss), ("loss/val", event.val_loss),
                               ("bits_per_char/train", event.train_bpc), ("bits_per_char/val", event.val_bpc),
                               ("perplexity/train", event.train_ppl), ("perplexity/val", event.val_ppl),
                               ("tasks/accuracy", event.task_accuracy),
                               ("loss/original_text", event.base_val_loss)):
                self._scalar(tag, value, event.step)
        elif isinstance(event, PreferenceEval):
            for name, value in asdict(event).items():
                if name not in ("step", "elapsed_s"):
                    self._scalar(f"preference/{name}", value, event.step)
        elif isinstance(event, Sample):
            answers = [f"{p!r} -> {got!r} (expected {want!r})" for p, want, got in event.answers]
            w.add_text("samples", _code("\n".join([event.text] + answers)), event.step)
        elif isinstance(event, Done):
            w.add_text("run/done", _code(", ".join(f"{k} {v}" for k, v in asdict(event).items() if v != "")),
                       event.step)
            self._session_end(event.status)

    def _scalar(self, tag: str, value, step: int) -> None:
        value = _finite(value)
        if value is not None:   # a missing validation loss is no point, not a zero
            self.writer.add_scalar(tag, value, step)

    def _hyperparameters(self) -> None:
        from torch.utils.tensorboard.summary import hparams
        experiment, start, _ = hparams(self.settings, {tag: 0.0 for tag in METRICS})
        for summary in (experiment, start):
            self.writer.file_writer.add_summary(summary)

    def _session_end(self, status: str) -> None:
        """The hparams plugin's end-of-session record: a diverged run is marked failed."""
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        ok = status != "diverged"
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.STATUS_SUCCESS if ok else api_pb2.Status.STATUS_FAILURE)
        content = plugin_data_pb2.HParamsPluginData(session_end_info=end, version=metadata.PLUGIN_DATA_VERSION)
        data = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(
            tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=data))]))

    def close(self) -> None:
        self.writer.close()


def for_trainer(root, trainer) -> TensorBoardLog:
    """A run's TensorBoard log under root, named by the time and corpus, its settings as
    hyperparameters: the command line's --tensorboard and the window's Run > Log to TensorBoard."""
    name = trainer.corpus.name
    settings = {"corpus": name, **trainer.model_cfg.to_dict(), **trainer.train_cfg.to_dict(),
                "first_step": trainer.step}
    return TensorBoardLog(run_folder(root, name), settings)


def logged(events, board: Optional[TensorBoardLog]):
    """The events as they come, each also written to the board (when there is one), which is
    closed when they end, however they end."""
    if board is None:
        yield from events
        return
    try:
        for event in events:
            board.write(event)
            yield event
    finally:
        board.close()

