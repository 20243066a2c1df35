"""Checkpoints: one safetensors file of weights with JSON metadata, optimizer state beside it.

Writes are atomic (temporary file, fsync, os.replace); reads check the header by hand before
safetensors touches the data, so a truncated, foreign or hostile file gives a worded error and
never a huge allocation. No pickle anywhere.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.data.tokenizer import Tokenizer
from playground.engine.data.tokenizer_kinds import tokenizer_from_dict
from playground.engine.errors import CheckpointError, ConfigError
from playground.engine.model.gpt import GPT

FORMAT = "gpt-playground"
# 2: the tokenizer may be a byte-level BPE ({"type": "bpe", "json": ...}), the model may have
# no head bias. Version 1 files (characters, head bias) open unchanged.
# 3: a tied head (tie_embeddings: GPT-2's) is stored once, as wte.weight; format 2 stored it twice,
# a quarter of a GPT-2 small file. Only tied models are written as 3, so versions that read up to
# 2 still read the others, and say "made by a newer GPT Playground" of these.
FORMAT_VERSION = 3
TIED_HEAD = "lm_head.weight"  # (the same tensor as wte.weight in a tied model)
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a real header is a few KB; more means a hostile file
DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "F64": (torch.float64, 8), "I64": (torch.int64, 8), "I32": (torch.int32, 4)}


@dataclass
class Checkpoint:
    model: GPT
    tokenizer: Tokenizer
    train_config: Optional[TrainConfig] = None
    state: dict[str, Any] = field(default_factory=dict)   # step, losses, corpus name, start_char
    optimizer_state: Optional[list[dict]] = None          # one state dict per optimizer

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config


def optimizer_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".optim.safetensors")


# -- writing ------------------------------------------------------------------------------
def _write_temp(path: Path, payload: bytes) -> Path:
    """Write bytes to a synced temporary file beside `path`; the caller renames it into place."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
        try:
            stale.unlink()
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a model file is an ordinary document
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove(Path(tmp))
        raise
    return Path(tmp)


def _write_atomic(files: list[tuple[Path, bytes]]) -> None:
    """Write files so that each `path` is either the old file or the whole new one, never half;
    every file is written and synced before the first rename, so a full disk or a failed write
    changes none of them (a model and its optimizer file stay a pair)."""
    temps: list[Path] = []
    try:
        for path, payload in files:
            temps.append(_write_temp(path, payload))
        for tmp, (path, _) in zip(temps, files):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            _remove(tmp)
        raise
    try:  # make the renames themselves durable
        dir_fd = os.open(files[0][0].parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _own(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor holding its own storage: safetensors refuses views of a shared buffer
    (FlatAdamW keeps parameters and moments as views of one buffer per group)."""
    t = t.detach().cpu().contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    return t


def _optimizer_tensors(states: list[dict]) -> tuple[dict[str, torch.Tensor], list]:
    tensors, layout = {}, []
    for o, sd in enumerate(states):
        groups = json.loads(json.dumps(sd["param_groups"], default=float))
        keys = {}
        for pid, pstate in sd["state"].items():
            for name, value in pstate.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{o}.{pid}.{name}"] = _own(t)
                keys.setdefault(str(pid), []).append(name)
        layout.append({"param_groups": groups, "keys": keys})
    return tensors, layout


def destination(path: str | os.PathLike) -> Path:
    """Where save() writes `path` (with .safetensors added); CheckpointError when its folder is
    missing, so a long run can be refused before it starts rather than after."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot save to {path}: folder {path.parent} does not exist")
    return path


def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Save weights (and optimizer state, if any) atomically; returns the weights path."""
    path = destination(path)
    save_id = uuid.uuid4().hex
    meta = {
        "format": FORMAT, "format_version": 3 if ckpt.model_config.tie_embeddings else 2, "save_id": save_id,
        "model_config": ckpt.model_config.to_dict(), "tokenizer": ckpt.tokenizer.to_dict(),
        "train_config": ckpt.train_config.to_dict() if ckpt.train_config else None,
        "state": ckpt.state, "has_optimizer": ckpt.optimizer_state is not None,
    }
    weights, seen = {}, set()
    for k, v in ckpt.model.state_dict().items():
        if k == TIED_HEAD and ckpt.model_config.tie_embeddings:
            continue  # it is wte.weight (format 3)
        t = _own(v)
        if t.untyped_storage().data_ptr() in seen:  # storage another tensor holds: safetensors refuses it
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        weights[k] = t
    try:
        files = []
        if ckpt.optimizer_state is not None:  # renamed first: the weights' save_id names it
            tensors, layout = _optimizer_tensors(ckpt.optimizer_state)
            opt_meta = {"format": FORMAT + "-optimizer", "format_version": 2,  # (unchanged since 2)
                        "save_id": save_id, "optimizers": layout}
            files.append((optimizer_path(path), st_save(tensors, metadata={"playground": json.dumps(opt_meta)})))
        files.append((path, st_save(weights, metadata={"playground": json.dumps(meta, default=_jsonable)})))
        _write_atomic(files)
    except OSError as exc:
        raise CheckpointError(f"could not save {path.name}: {exc.strerror or exc}; "
                              "the previous file (if any) is unchanged") from exc
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


# -- reading ------------------------------------------------------------------------------
def read_header(path: Path, whole: bool = True) -> tuple[dict, bytes]:
    """Validate the safetensors framing by hand; return (header dict, whole file bytes). Without
    `whole`, the bytes read are the header's alone (a check before loading: check_path), and
    tensors are checked against the file's size."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder, not a model file")
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path.name} is truncated: {size} bytes is too short "
                                      "to be a model file")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n > size - 8:
                raise CheckpointError(f"{path.name} is not a valid model file: its header claims "
                                      f"{n:,} bytes but the file has {size:,}")
            f.seek(0)
            blob = f.read() if whole else f.read(8 + n)  # (head + f.read() would copy the file once more)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except PermissionError:
        raise CheckpointError(f"{path} cannot be read: permission denied") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a model file") from None
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path.name} is not a safetensors model file (unreadable header)") from None
    data_len = (len(blob) if whole else size) - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        _check_entry(path, name, entry, data_len)
    return header, blob


def _check_entry(path: Path, name: str, entry: Any, data_len: int) -> None:
    try:
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        itemsize = DTYPES[dtype][1]
        count = math.prod(int(s) for s in shape)
        ok = all(isinstance(s, int) and s >= 0 for s in shape) and 0 <= begin <= end
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path.name} is damaged: tensor {name!r} has a malformed entry") from None
    if not ok or (end - begin) != count * itemsize:
        raise CheckpointError(f"{path.name} is damaged: tensor {name!r} has inconsistent size")
    if end > data_len:
        raise CheckpointError(f"{path.name} is truncated: tensor {name!r} ends at byte {end:,} "
                              f"but only {data_len:,} bytes of data are present")


def _metadata(path: Path, header: dict, expected_format: str) -> dict:
    raw = (header.get("__metadata__") or {}).get("playground")
    if raw is None:
        raise CheckpointError(f"{path.name} is a safetensors file but not a GPT Playground model "
                              "(no playground metadata)")
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise CheckpointError(f"{path.name} has damaged metadata (not valid JSON)") from None
    if meta.get("format") != expected_format:
        raise CheckpointError(f"{path.name} is not a GPT Playground model (format "
                              f"{meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path.name} has no valid format version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path.name} was made by a newer GPT Playground (format "
                              f"{version}; this version reads up to {FORMAT_VERSION}): update the app")
    if version < 1:
        raise CheckpointError(f"{path.name} has an unknown format version {version}")
    return meta


def check_path(path: Path) -> None:
    """What can be told of a model path without loading its weights: a model file's framing; a
    transformers folder's settings, memory, weight files and tokenizer (hf_folder.opened).
    CheckpointError with the reason, as load would give."""
    if path.is_dir():
        from playground.engine.model import hf_folder
        hf_folder.opened(path)
    else:
        read_header(path, whole=False)


def load(path: str | os.PathLike, with_optimizer: bool = True) -> Checkpoint:
    """Load and check a model file, or open a transformers folder (GPT-2, Starcoder2: see
    hf_folder.py); raise CheckpointError with a reason for any problem."""
    path = Path(path)
    if path.is_dir():
        from playground.engine.model import hf_folder
        model, tokenizer, state = hf_folder.load(path)
        return Checkpoint(model, tokenizer, None, state)
    header, blob = read_header(path)
    meta = _metadata(path, header, FORMAT)
    try:
        model_cfg = ModelConfig.from_dict(meta["model_config"]).check()
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
        train_cfg = TrainConfig.from_dict(meta["train_config"]).check() if meta.get("train_config") else None
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path.name} has incomplete metadata (missing {exc})") from exc
    except ConfigError as exc:
        raise CheckpointError(f"{path.name} has invalid settings: {exc}") from exc
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise CheckpointError(f"{path.name} is inconsistent: the vocabulary has "
                              f"{tokenizer.vocab_size} {tokenizer.unit} but the model expects "
                              f"{model_cfg.vocab_size}")
    with torch.device("meta"):  # shapes only: no memory for a config that claims to be huge
        expected = {k: tuple(v.shape) for k, v in GPT(model_cfg).state_dict().items()}
    found = {k: tuple(e["shape"]) for k, e in header.items() if k != "__metadata__"}
    if model_cfg.tie_embeddings:  # the head is wte.weight: stored once (format 2 stored it twice too)
        expected.pop(TIED_HEAD)
        found.pop(TIED_HEAD, None)
    if found != expected:
        missing = sorted(set(expected) - set(found))[:3]
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])[:3]
        extra = sorted(set(found) - set(expected))[:3]
        raise CheckpointError(f"{path.name} does not match its own settings (missing {missing}, "
                              f"wrong shape {wrong}, unexpected {extra})")
    try:
        weights = st_load(blob)
    except Exception as exc:  # safetensors raises its own error types for damaged data
        raise CheckpointError(f"{path.name} is damaged: {exc}") from exc
    del blob  # (the file's bytes: the weights are copies)
    if model_cfg.tie_embeddings:
        weights[TIED_HEAD] = weights["wte.weight"]
    model = GPT.unset(model_cfg)  # every weight is set next (strict)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    ckpt = Checkpoint(model, tokenizer, train_cfg, meta.get("state") or {})
    if with_optimizer and meta.get("has_optimizer"):
        ckpt.optimizer_state = _load_optimizer(path, meta["save_id"])
    return ckpt


def _load_optimizer(path: Path, save_id: str) -> Optional[list[dict]]:
    opt_path = optimizer_path(path)
    if not opt_path.exists():
        return None
    header, blob = read_header(opt_path)
    meta = _metadata(opt_path, header, FORMAT + "-optimizer")
    if meta.get("save_id") != save_id:
        raise CheckpointError(f"{opt_path.name} belongs to a different save of {path.name}; "
                              "delete it to continue training without the optimizer state")
    try:
        tensors = st_load(blob)
    except Exception as exc:
        raise CheckpointError(f"{opt_path.name} is damaged: {exc}") from exc
    states = []
    for o, layout in enumerate(meta["optimizers"]):
        state = {int(pid): {name: tensors[f"{o}.{pid}.{name}"] for name in names}
                 for pid, names in layout["keys"].items()}
        states.append({"state": state, "param_groups": layout["param_groups"]})
    return states
