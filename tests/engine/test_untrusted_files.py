"""Model files from strangers: every kind of damage gets its own worded error, nothing runs
code, nothing allocates what the file merely claims; a killed save never costs the old file."""

import json
import os
import pickle
import random
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from playground.engine.errors import CheckpointError
from playground.engine.model import checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _header_file(path: Path, header: dict, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_tensor_claiming_a_huge_shape_is_refused_before_allocation(tmp_path):
    path = _header_file(tmp_path / "huge.safetensors",
                        {"wte.weight": {"dtype": "F32", "shape": [2**40, 2**20], "data_offsets": [0, 16]}},
                        b"\x00" * 16)
    with pytest.raises(CheckpointError, match="inconsistent size"):
        checkpoint.load(path)


def test_metadata_claiming_a_giant_model_is_refused_by_shape(tmp_path):
    meta = {"format": "gpt-playground", "format_version": 1, "save_id": "x",
            "model_config": {"vocab_size": 3, "n_layer": 48, "n_head": 32, "n_embd": 4096,
                             "block_size": 4096},
            "tokenizer": {"type": "char", "chars": "abc"}, "state": {}}
    path = tmp_path / "giant.safetensors"
    save_file({"wte.weight": torch.zeros(3, 4)}, str(path), metadata={"playground": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="does not match its own settings"):
        checkpoint.load(path)


def test_wrong_format_name_and_bad_json_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"playground": json.dumps({"format": "llama"})})
    with pytest.raises(CheckpointError, match="not a GPT Playground model"):
        checkpoint.load(path)
    save_file({"w": torch.zeros(1)}, str(path), metadata={"playground": "{not json"})
    with pytest.raises(CheckpointError, match="damaged metadata"):
        checkpoint.load(path)


def test_loading_never_unpickles(tmp_path, monkeypatch, tiny_model_cfg):
    from playground.engine.data.tokenizer import CharTokenizer
    from playground.engine.model.gpt import GPT
    path = checkpoint.save(tmp_path / "m.safetensors",
                           checkpoint.Checkpoint(GPT(tiny_model_cfg), CharTokenizer(list("abcdefghijklm"))))

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert checkpoint.load(path).model.num_params() == GPT(tiny_model_cfg).num_params()


def test_save_into_an_unwritable_folder_reports_and_keeps_the_old_file(tmp_path, monkeypatch, tiny_model_cfg):
    import tempfile

    from playground.engine.data.tokenizer import CharTokenizer
    from playground.engine.model.gpt import GPT
    ckpt = checkpoint.Checkpoint(GPT(tiny_model_cfg), CharTokenizer(list("abcdefghijklm")))
    path = checkpoint.save(tmp_path / "m.safetensors", ckpt)
    before = path.read_bytes()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # root ignores chmod, so simulate it
    with pytest.raises(CheckpointError, match="Permission denied.*unchanged"):
        checkpoint.save(path, ckpt)
    assert path.read_bytes() == before


SAVER = """
import sys, torch
sys.path.insert(0, {root!r})
from playground.engine.model import checkpoint
from playground.engine.config import ModelConfig
from playground.engine.model.gpt import GPT
from playground.engine.data.tokenizer import CharTokenizer
torch.manual_seed(int(sys.argv[2]))
model = GPT(ModelConfig(vocab_size=20, n_layer=4, n_head=4, n_embd=256, block_size=64))
tok = CharTokenizer([chr(97 + i) for i in range(20)])
print("ready", flush=True)
i = 0
while True:
    i += 1
    checkpoint.save(sys.argv[1], checkpoint.Checkpoint(model, tok, state={{"step": i}}))
"""


def test_a_save_killed_mid_write_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "m.safetensors"
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(root=str(ROOT)))
    rng = random.Random(7)
    steps = []
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(round_)],
                                stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], 120)  # bounded: a stuck child fails
        assert ready and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.15, 0.6))  # saves of ~13 MB run back to back: land mid-write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if path.exists():
            ckpt = checkpoint.load(path)  # whole: the old one or the new one, never half
            steps.append(ckpt.state["step"])
    assert len(steps) >= 5 and all(s >= 1 for s in steps)


def _raw(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _refused(path, words, read=checkpoint.read_header):
    with pytest.raises(CheckpointError, match=f"^{re.escape(words)}$"):
        read(path)


def test_the_framing_is_checked_by_hand_with_a_reason_for_each_fault(tmp_path, monkeypatch):
    f = tmp_path / "x.safetensors"
    _refused(f, f"{f} does not exist")
    _refused(tmp_path, f"{tmp_path} is a folder, not a model file")
    f.write_bytes(b"12345")
    _refused(f, "x.safetensors is truncated: 5 bytes is too short to be a model file")
    f.write_bytes(struct.pack("<Q", 3) + b"{}")  # claims one byte more than the file holds
    _refused(f, "x.safetensors is not a valid model file: its header claims 3 bytes but the file has 10")
    f.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    _refused(f, "x.safetensors is not a valid model file: its header claims 4,611,686,018,427,387,904 "
                "bytes but the file has 10")
    assert checkpoint.read_header(_raw(f, b"{}")) == ({}, struct.pack("<Q", 2) + b"{}")  # the header fills it
    for header in (b"[1, 2]", b"{not json", b"\xff\xfe{}"):
        _refused(_raw(f, header), "x.safetensors is not a safetensors model file (unreadable header)")
    _raw(f, b"{}")
    for error, words in [(PermissionError(13, "Permission denied"), "cannot be read: permission denied"),
                         (IsADirectoryError(21, "Is a directory"), "is a folder, not a model file"),
                         (OSError(5, "Input/output error"), "cannot be read: Input/output error"),
                         (OSError("gone"), "cannot be read: gone")]:

        def failing(*args, error=error, **kwargs):
            raise error
        monkeypatch.setattr(checkpoint, "open", failing, raising=False)
        _refused(f, f"{f} {words}")
    monkeypatch.undo()


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):  # tuples become JSON lists
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


def test_each_tensor_entry_must_be_well_formed_consistent_and_inside_the_data(tmp_path):
    f = tmp_path / "x.safetensors"

    def with_entry(entry, data=bytes(8)):
        return _raw(f, json.dumps({"__metadata__": {"a": "b"}, "w": entry}).encode(), data)
    malformed = "x.safetensors is damaged: tensor 'w' has a malformed entry"
    for entry in ({"dtype": "F32", "shape": [2]}, _entry(dtype="F8"), _entry(shape=None),
                  _entry(offsets=[0]), _entry(shape=["a"]), "F32"):
        _refused(with_entry(entry), malformed)
    inconsistent = "x.safetensors is damaged: tensor 'w' has inconsistent size"
    for entry in (_entry(shape=(2.0,)), _entry(shape=(-2, -1), offsets=(0, 8)), _entry(offsets=(8, 0)),
                  _entry(offsets=(-4, 4)), _entry(offsets=(0, 4)), _entry(offsets=(0, 12)),
                  _entry(dtype="F16"), _entry(dtype="F64"), _entry(dtype="I32", shape=(1,))):
        _refused(with_entry(entry), inconsistent)
    # every size as safetensors writes it, an empty tensor, a tensor ending exactly at the end of the data
    for dtype, size in [("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("I64", 8), ("I32", 4)]:
        header, _ = checkpoint.read_header(with_entry(_entry(dtype=dtype, shape=(8 // size,))))
        assert header["w"]["dtype"] == dtype
    checkpoint.read_header(with_entry(_entry(shape=(0,), offsets=(8, 8))))
    checkpoint.read_header(with_entry(_entry(shape=(1, 1), offsets=(4, 8))))
    _refused(with_entry(_entry(offsets=(4, 12))),
             "x.safetensors is truncated: tensor 'w' ends at byte 12 but only 8 bytes of data are present")
    _refused(with_entry(_entry(shape=(1000,), offsets=(0, 4000)), bytes(1500)),
             "x.safetensors is truncated: tensor 'w' ends at byte 4,000 but only 1,500 bytes of data are present")


def _with_meta(path, meta, tensors=None):
    from safetensors.torch import save_file as write
    metadata = None if meta is None else {"playground": meta if isinstance(meta, str) else json.dumps(meta)}
    write(tensors or {"w": torch.zeros(1)}, str(path), metadata=metadata)
    return path


def test_the_playground_metadata_is_checked_with_a_reason_for_each_fault(tmp_path):
    f = tmp_path / "x.safetensors"
    load = checkpoint.load
    no_meta = "x.safetensors is a safetensors file but not a GPT Playground model (no playground metadata)"
    _refused(_with_meta(f, None), no_meta, load)
    from safetensors.torch import save_file as write
    write({"w": torch.zeros(1)}, str(f), metadata={"other": "1"})
    _refused(f, no_meta, load)
    for raw in ("{not json", "[1]", "3"):
        _refused(_with_meta(f, raw), "x.safetensors has damaged metadata (not valid JSON)", load)
    _refused(_with_meta(f, {"format": "llama"}), "x.safetensors is not a GPT Playground model (format 'llama')", load)
    _refused(_with_meta(f, {}), "x.safetensors is not a GPT Playground model (format None)", load)
    for version in (None, "2", 1.0):
        _refused(_with_meta(f, {"format": "gpt-playground", "format_version": version}),
                 "x.safetensors has no valid format version", load)
    _refused(_with_meta(f, {"format": "gpt-playground", "format_version": 4}),
             "x.safetensors was made by a newer GPT Playground (format 4; this version reads up to 3): "
             "update the app", load)
    for version in (0, -1):
        _refused(_with_meta(f, {"format": "gpt-playground", "format_version": version}),
                 f"x.safetensors has an unknown format version {version}", load)
    # the optimizer file has a format of its own: a model file is not one
    meta = {"format": "gpt-playground", "format_version": 2}
    assert checkpoint._metadata(f, {"__metadata__": {"playground": json.dumps(meta)}}, "gpt-playground") == meta
    with pytest.raises(CheckpointError, match=re.escape("(format 'gpt-playground')")):
        checkpoint._metadata(f, {"__metadata__": {"playground": json.dumps(meta)}}, "gpt-playground-optimizer")


def test_the_header_length_is_unsigned_and_its_limit_is_inclusive(tmp_path):
    """A length field of all ones is 2**64 - 1 bytes, not -1; a header of exactly the limit
    passes the size check (and fails later, as JSON), one byte more does not."""
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(CheckpointError, match="claims 18,446,744,073,709,551,615 bytes"):
        checkpoint.read_header(huge)
    for n, claimed in [(checkpoint.MAX_HEADER_BYTES, False), (checkpoint.MAX_HEADER_BYTES + 1, True)]:
        path = tmp_path / f"h{n}.safetensors"
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", n))
            f.truncate(8 + n + 8)  # sparse: room for the header and more
        with pytest.raises(CheckpointError) as caught:
            checkpoint.read_header(path)
        assert ("claims" in str(caught.value)) == claimed, str(caught.value)
