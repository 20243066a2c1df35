"""Checkpoints: round trip, resume, and a worded error for every kind of bad file."""

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from playground.engine.errors import CheckpointError
from playground.engine.events import Step
from playground.engine.model import checkpoint
from playground.engine.training.trainer import Trainer


@pytest.fixture
def trained(tiny_model_cfg, tiny_train_cfg, phrase_corpus):
    trainer = Trainer(tiny_model_cfg, tiny_train_cfg, phrase_corpus)
    list(trainer.run())
    return trainer


@pytest.fixture
def saved(trained, tmp_path):
    return checkpoint.save(tmp_path / "m.safetensors", trained.checkpoint())


def test_round_trip_gives_identical_logits_and_metadata(trained, saved):
    ckpt = checkpoint.load(saved)
    idx = torch.tensor([trained.corpus.tokenizer.encode("to be or")])
    assert torch.equal(ckpt.model(idx)[0], trained.model(idx)[0])
    assert ckpt.tokenizer.chars == trained.corpus.tokenizer.chars
    assert ckpt.train_config == trained.train_cfg
    assert ckpt.state["step"] == 30 and ckpt.state["start_char"] == "t"
    assert ckpt.optimizer_state is not None


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_model_cfg, tiny_train_cfg,
                                                            phrase_corpus, tmp_path):
    whole = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=20), phrase_corpus)
    list(whole.run())
    first = Trainer(tiny_model_cfg, tiny_train_cfg.replace(max_steps=10), phrase_corpus)
    list(first.run())
    path = checkpoint.save(tmp_path / "half.safetensors", first.checkpoint())
    second = Trainer.resume(checkpoint.load(path), phrase_corpus, tiny_train_cfg.replace(max_steps=10))
    assert second.step == 10
    steps = [e.step for e in second.run() if isinstance(e, Step)]
    assert steps == list(range(11, 21))
    # optimizer state came back: the moments are the saved ones, not fresh zeros
    state = second.optimizers[0][0].state_dict()["state"]
    assert state and all(float(s["step"]) == 20 for s in state.values())


def test_no_pickle_is_written(saved):
    for path in (saved, checkpoint.optimizer_path(saved)):
        assert b"\x80\x04" not in path.read_bytes()[:64]  # a pickle protocol 4 header
        (n,) = struct.unpack("<Q", path.read_bytes()[:8])
        json.loads(path.read_bytes()[8:8 + n])


def _header_len(path):
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.mark.parametrize("where", ["length", "header", "data"])
def test_truncated_files(saved, tmp_path, where):
    data = saved.read_bytes()
    cut = {"length": 5, "header": 8 + _header_len(saved) // 2, "data": len(data) - 100}[where]
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated|claims"):
        checkpoint.load(bad)


def test_random_bytes_and_huge_header_claims(tmp_path):
    rnd = tmp_path / "rnd.safetensors"
    rnd.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="not a valid model file|not a safetensors"):
        checkpoint.load(rnd)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        checkpoint.load(huge)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(CheckpointError, match="not a GPT Playground model"):
        checkpoint.load(path)


def _rewrite_meta(saved, tmp_path, change):
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(saved), "pt") as f:
        meta = json.loads(f.metadata()["playground"])
    change(meta)
    out = tmp_path / "edited.safetensors"
    save_file(load_file(str(saved)), str(out), metadata={"playground": json.dumps(meta)})
    return out


def test_newer_format_version(saved, tmp_path):
    path = _rewrite_meta(saved, tmp_path, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="newer GPT Playground"):
        checkpoint.load(path)


def test_vocabulary_that_does_not_match_the_embedding(saved, tmp_path):
    path = _rewrite_meta(saved, tmp_path, lambda m: m["tokenizer"].update(chars="abc"))
    with pytest.raises(CheckpointError, match="vocabulary has 3 characters but the model expects 13"):
        checkpoint.load(path)


def test_settings_that_do_not_match_the_tensors(saved, tmp_path):
    path = _rewrite_meta(saved, tmp_path, lambda m: m["model_config"].update(n_embd=32))
    with pytest.raises(CheckpointError, match="does not match its own settings"):
        checkpoint.load(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="folder"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("failing_write", [1, 2])  # the optimizer file's, the weights'
def test_failed_save_leaves_the_old_file_intact(trained, saved, monkeypatch, failing_write):
    """A save that fails on either file leaves the model and its optimizer file as they were,
    still a pair: the old model opens with its optimizer state."""
    import os
    opt = checkpoint.optimizer_path(saved)
    before, opt_before = saved.read_bytes(), opt.read_bytes()
    real_fsync, calls = os.fsync, []

    def disk_full(fd):
        calls.append(fd)
        if len(calls) == failing_write:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.save(saved, trained.checkpoint())
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert saved.read_bytes() == before and opt.read_bytes() == opt_before
    assert [p.name for p in saved.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert checkpoint.load(saved).optimizer_state is not None


def test_an_optimizer_file_from_another_save_is_refused(trained, saved, tmp_path):
    """The optimizer file beside a model must come from the same save: a stale one (left by an
    earlier save of the same name, or copied from another model) is refused in words, and the
    model itself still opens without it."""
    opt = checkpoint.optimizer_path(saved)
    earlier = opt.read_bytes()
    checkpoint.save(saved, trained.checkpoint())  # saved again: a new pair
    assert checkpoint.load(saved).optimizer_state is not None
    opt.write_bytes(earlier)  # the earlier save's optimizer file comes back
    with pytest.raises(CheckpointError, match="belongs to a different save"):
        checkpoint.load(saved)
    ckpt = checkpoint.load(saved, with_optimizer=False)
    assert ckpt.optimizer_state is None and ckpt.state["step"] == 30
