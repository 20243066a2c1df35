"""Model files from strangers: every kind of damage gets its own worded error, nothing runs
code, nothing allocates what the file merely claims; a killed save never costs the old file."""

import json
import os
import pickle
import random
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
