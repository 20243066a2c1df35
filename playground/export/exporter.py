"""export_model: a checkpoint -> a transformers folder, an ONNX file or a GGUF file, verified, then
moved into place. Everything is written in a folder beside --out first, so --out is never half
written, and what cannot be written (no room, a read-only folder, too big for the format) is
refused before anything is.

Callable from a worker thread (the window's): no Qt here; `progress(fraction, stage)` reports.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from playground.engine.model import checkpoint
from playground.export import hf, onnx_file, verify
from playground.export.hf_tokenizer import write_tokenizer
from playground.export.report import FORMATS, INSTALL, TOLERANCE, ExportError, ExportReport

NEEDS = {"hf": (), "onnx": ("onnx", "onnxscript"), "gguf": ("gguf",)}   # to write
VERIFIER = {"hf": "transformers", "onnx": "onnxruntime", "gguf": "llama_cpp"}   # to reload and compare
EXTRA = {"hf": "export", "onnx": "export", "gguf": "gguf"}
ONNX_LIMIT = 2**31   # bytes: an ONNX file with its weights inside is one protobuf message, at most 2 GB
Progress = Callable[[float, str], None]
log = logging.getLogger(__name__)


def export_model(ckpt_path: str | os.PathLike, fmt: str, out: str | os.PathLike,
                 progress: Optional[Progress] = None, force: bool = False) -> ExportReport:
    """Export the model file `ckpt_path` as `fmt`: "hf" into the folder `out`, "onnx" into the
    file `out` (FILE.onnx, its tokenizer beside it as FILE.tokenizer.json), "gguf" into the file
    `out` (FILE.gguf, the tokenizer inside).

    The export is reloaded and compared with our model before it is moved into place; raises
    ExportError (or CheckpointError for the model file) with nothing left behind. Without the
    verifying library (transformers, onnxruntime) it is written and says it was not verified; a
    GGUF file is then read back with gguf's reader instead of llama.cpp."""
    started = time.perf_counter()
    say = progress or (lambda fraction, stage: None)
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is unknown: use " + " or ".join(repr(f) for f in FORMATS))
    missing = [name for name in NEEDS[fmt] if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"exporting to {fmt} needs {', '.join(missing)}: "
                          f"pip install 'gpt-playground-studio[{EXTRA[fmt]}]'")
    out = target(out, fmt, force, ckpt_path)
    say(0.0, "loading the model")
    ckpt = checkpoint.load(ckpt_path, with_optimizer=False)
    ckpt.model.eval()
    check_room(ckpt.model, fmt, out)
    with staging(out) as folder, _no_room_is_an_export_error(out):
        writer = {"hf": _export_hf, "onnx": _export_onnx, "gguf": _export_gguf}[fmt]
        verifying = importlib.util.find_spec(VERIFIER[fmt]) is not None
        report = writer(ckpt, folder, say, verifying, name=out.stem)
        report.out = str(out)
        say(0.95, "moving into place")
        if fmt == "hf":
            report.files = sorted(p.name for p in folder.iterdir())
            place(folder, out)
        else:
            report.files = place_file(folder, out, fmt)
    report.seconds = time.perf_counter() - started
    say(1.0, "done")
    log.info("exported %s as %s to %s in %.1f s", ckpt_path, fmt, out, report.seconds)
    return report


def _export_hf(ckpt: checkpoint.Checkpoint, folder: Path, say: Progress, verifying: bool, name: str) -> ExportReport:
    model, config = ckpt.model, ckpt.model_config
    say(0.1, "converting the weights")
    converted = hf.convert(model)
    say(0.3, "writing")
    hf.write(converted, config, folder)
    write_tokenizer(ckpt.tokenizer, folder, config.block_size if config.position == "learned" else None)
    if not verifying:
        return _unverified(ckpt, folder, "hf", converted.architecture, converted.notes)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    with _transformers_quiet():
        say(0.5, "verifying: reloading with transformers")
        reloaded, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
        reloaded.eval()
        wrong = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if wrong:
            raise ExportError(f"transformers did not take every weight as written: {wrong}")
        hf_tokenizer = AutoTokenizer.from_pretrained(folder)
        if type(reloaded).__name__ != converted.architecture:
            raise ExportError(f"transformers opened the folder as {type(reloaded).__name__}, "
                              f"not {converted.architecture}")
        verify.check_tokenizer(ckpt.tokenizer, lambda s: hf_tokenizer.encode(s, add_special_tokens=False),
                               hf_tokenizer.decode)
        say(0.6, "verifying: log-probabilities")
        error = verify.max_logprob_error(model, lambda ids: reloaded(ids).logits,
                                         own=verify.own_text(model, ckpt.tokenizer, ckpt.state.get("start_char")))
        say(0.8, "verifying: greedy decoding")
        prompt, n = verify.greedy_plan(model, ckpt.tokenizer, ckpt.state.get("start_char"))
        theirs = verify.greedy_transformers(reloaded, prompt, n)
    report = _judge(ckpt, error, converted.fold_residual <= hf.FOLD_EXACT, prompt, n, theirs,
                    hf_tokenizer.decode(theirs))
    report.format, report.architecture = "hf", converted.architecture
    report.notes = converted.notes + report.notes
    return report


def _export_onnx(ckpt: checkpoint.Checkpoint, folder: Path, say: Progress, verifying: bool, name: str) -> ExportReport:
    from tokenizers import Tokenizer as HFTokenizer
    model, config = ckpt.model, ckpt.model_config
    say(0.1, "exporting the graph (torch.onnx)")
    onnx_file.write(model, folder / "model.onnx")
    write_tokenizer(ckpt.tokenizer, folder, config.block_size if config.position == "learned" else None)
    if not verifying:
        return _unverified(ckpt, folder, "onnx", f"ONNX (opset {onnx_file.OPSET})", [])
    say(0.6, "verifying: onnxruntime")
    run = onnx_file.session_logits(folder / "model.onnx")
    tokenizer = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    verify.check_tokenizer(ckpt.tokenizer, lambda s: tokenizer.encode(s, add_special_tokens=False).ids,
                           tokenizer.decode)
    error = verify.max_logprob_error(model, run, own=verify.own_text(model, ckpt.tokenizer, ckpt.state.get("start_char")))
    say(0.8, "verifying: greedy decoding")
    prompt, n = verify.greedy_plan(model, ckpt.tokenizer, ckpt.state.get("start_char"))
    window = config.block_size if config.position == "learned" else None
    theirs = verify.greedy_logits(run, prompt, n, window)
    report = _judge(ckpt, error, True, prompt, n, theirs, tokenizer.decode(theirs))
    report.format, report.architecture = "onnx", f"ONNX (opset {onnx_file.OPSET})"
    report.notes.insert(0, "input_ids (batch, sequence) -> logits (batch, sequence, vocab), weights inside"
                        + (f"; up to {config.block_size} tokens" if window else "; any length"))
    return report


def _export_gguf(ckpt: checkpoint.Checkpoint, folder: Path, say: Progress, verifying: bool, name: str) -> ExportReport:
    from playground.export import gguf_check, gguf_file
    say(0.1, "converting the weights")
    plan = gguf_file.convert(ckpt.model, ckpt.tokenizer)
    say(0.3, "writing")
    gguf_file.write(plan, folder / "model.gguf", name)   # general.name: what Ollama and llama.cpp show
    return gguf_check.check(ckpt, folder / "model.gguf", plan, verifying, say)


def _unverified(ckpt, folder: Path, fmt: str, architecture: str, notes: list[str]) -> ExportReport:
    """Written but not reloaded: the verifying library is not installed. The tokenizer is still
    checked (tokenizers is always there)."""
    from tokenizers import Tokenizer as HFTokenizer
    tokenizer = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    verify.check_tokenizer(ckpt.tokenizer, lambda s: tokenizer.encode(s, add_special_tokens=False).ids,
                           tokenizer.decode)
    report = ExportReport(format=fmt, out="", architecture=architecture, max_logprob_error=float("nan"),
                          exact=False, greedy_match=False, verified=False, notes=list(notes))
    report.warnings.append(f"written but NOT verified: {VERIFIER[fmt]} is not installed to reload it "
                           f"and compare ({INSTALL})")
    return report


def _judge(ckpt, error: float, mapping_exact: bool, prompt: list[int], n: int,
           theirs: list[int], their_text: str) -> ExportReport:
    """The verdict: an exact mapping that misses the tolerance is a bug (ExportError); an
    approximate one (a head bias folded by least squares) passes with a warning."""
    exact = error < TOLERANCE
    if mapping_exact and not exact:
        raise ExportError(f"verification failed: the export's log-probabilities differ from the "
                          f"model's by up to {error:.3g} (more than {TOLERANCE:g})")
    ours = verify.greedy_ours(ckpt.model, ckpt.tokenizer, prompt, n)
    match = ours == theirs and verify.same_text(ckpt.tokenizer.decode(ours), their_text)
    report = ExportReport(format="", out="", architecture="", max_logprob_error=error, exact=exact,
                          greedy_match=match, greedy_text=their_text)
    if not exact:
        cfg = ckpt.model_config
        report.warnings.append(
            f"the export is approximate: log-probabilities differ by up to {error:.3g}, because the "
            f"head's bias over {cfg.vocab_size} tokens cannot be folded exactly into width {cfg.n_embd}; "
            "train with --no-head-bias (\"no head bias\" in the window) for an exact export")
    if not match:
        report.warnings.append("greedy decoding picked different tokens from the model's")
    return report


def target(out: str | os.PathLike, fmt: str, force: bool, ckpt_path: str | os.PathLike) -> Path:
    """The folder to write, after refusing what is in the way (even --force never replaces the
    folder you are in, your home folder, or one that holds the model)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ExportError(f"cannot export to {out}: folder {out.parent} does not exist")
    if fmt != "hf":
        if out.suffix != f".{fmt}":
            raise ExportError(f"for {fmt}, --out names the file to write: {out}.{fmt}, or {out / f'model.{fmt}'}")
        if out.is_dir() or (fmt == "onnx" and tokenizer_beside(out).is_dir()):
            raise ExportError(f"{out} is a folder: --out names the .{fmt} file to write")
        if out.exists() and not force:
            raise ExportError(f"{out} exists: choose another --out, or --force to replace it")
        if out.exists() and out.resolve() == Path(ckpt_path).resolve():
            raise ExportError(f"{out} is the model itself: choose another --out")
        return out
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"{out} exists and is not a folder: choose another --out")
        if any(out.iterdir()) and not force:
            raise ExportError(f"{out} exists and is not empty: choose another --out, or --force "
                              "to replace it")
        where = out.resolve()
        cwd, model = Path.cwd().resolve(), Path(ckpt_path).resolve()
        if where in (cwd, *cwd.parents, Path.home().resolve()) or where in model.parents:
            raise ExportError(f"{out} holds the current folder, your home folder or the model "
                              "itself: export into a folder of its own")
    return out


def tokenizer_beside(onnx: Path) -> Path:
    """Where an ONNX file's tokenizer goes: FILE.onnx -> FILE.tokenizer.json."""
    return onnx.with_name(onnx.stem + ".tokenizer.json")


def check_room(model, fmt: str, out: Path) -> None:
    """Refuse, before writing, a model the format cannot hold or the disk has no room for."""
    weights = 4 * sum(p.numel() for p in model.parameters())   # float32, as every format here writes
    if fmt == "onnx" and weights >= ONNX_LIMIT:
        raise ExportError(f"the model's weights take {weights / 1e9:.1f} GB, and an ONNX file that holds its "
                          f"weights is one protobuf message of at most {ONNX_LIMIT / 1e9:.1f} GB: export "
                          "--format hf or gguf")
    free = shutil.disk_usage(out.parent).free
    needed = int(weights * 1.05) + 2**20   # plus the tokenizer and the metadata
    if needed > free:
        raise ExportError(f"not enough room in {out.parent}: the export needs about {needed / 1e6:,.0f} MB "
                          f"and {free / 1e6:,.0f} MB are free")


@contextmanager
def _no_room_is_an_export_error(out: Path) -> Iterator[None]:
    """A full disk or a folder taken away while writing: one clear line (staging cleans up)."""
    try:
        yield
    except OSError as exc:
        raise ExportError(f"could not write the export beside {out}: {exc.strerror or exc}") from None


def place_file(folder: Path, out: Path, fmt: str) -> list[str]:
    """Move the verified file (and an ONNX file's tokenizer, first, so a model file that can be
    seen has its tokenizer) into place; returns their names."""
    if fmt == "gguf":
        os.chmod(folder / "model.gguf", 0o644)
        os.replace(folder / "model.gguf", out)
        return [out.name]
    tokenizer = tokenizer_beside(out)
    for path in (folder / "tokenizer.json", folder / "model.onnx"):
        os.chmod(path, 0o644)
    os.replace(folder / "tokenizer.json", tokenizer)
    os.replace(folder / "model.onnx", out)
    return [out.name, tokenizer.name]


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A new folder beside `out`, removed afterwards unless place() moved it."""
    for stale in out.parent.glob(f".{out.name}.*.export-tmp"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export-tmp", dir=out.parent))
    except OSError as exc:
        raise ExportError(f"cannot write in {out.parent}: {exc.strerror or exc} (a read-only folder?): "
                          "choose another --out") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def place(folder: Path, out: Path) -> None:
    """Move the finished folder to `out`; an old `out` is set aside first and removed after."""
    os.chmod(folder, 0o755)  # mkdtemp makes 0700; an export is an ordinary folder
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.export-tmp")
        os.replace(out, old)
    try:
        os.replace(folder, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _transformers_quiet() -> Iterator[None]:
    """No progress bars, no warnings about generation flags it ignores: the report says what
    matters."""
    from transformers.utils import logging as hf_logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
