"""Checkpoints: round trip, resume, and a worded error for every kind of bad file."""

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.errors import CheckpointError
from playground.engine.events import Step
from playground.engine.model import checkpoint
from playground.engine.model.gpt import GPT
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
    with pytest.raises(CheckpointError, match="truncated|claims") as loading:
        checkpoint.load(bad)
    with pytest.raises(CheckpointError) as checking:  # serve's check before it listens: the header alone
        checkpoint.check_path(bad)
    assert str(checking.value) == str(loading.value)


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


# Two optimizers' state as torch writes it, with a plain number among the tensors and a tensor
# learning rate (torch allows one): numbers come back as tensors, group settings as plain JSON.
STATE = [{"state": {0: {"step": 3, "exp_avg": torch.arange(4.0)}},
          "param_groups": [{"lr": torch.tensor(0.25), "betas": (0.9, 0.99), "params": [0]}]},
         {"state": {0: {"momentum_buffer": torch.ones(2, 2)}, 5: {"momentum_buffer": torch.zeros(3)}},
          "param_groups": [{"lr": 0.02, "params": [0, 5]}]}]


def _tiny(cfg, **kwargs):
    torch.manual_seed(0)
    return checkpoint.Checkpoint(GPT(cfg), CharTokenizer(list("abcdefghijklm")), **kwargs)


def test_optimizer_state_comes_back_per_optimizer_numbers_as_tensors(tmp_path, tiny_model_cfg):
    path = checkpoint.save(tmp_path / "m", _tiny(tiny_model_cfg, optimizer_state=STATE))
    first, second = checkpoint.load(path).optimizer_state
    assert first["param_groups"] == [{"lr": 0.25, "betas": [0.9, 0.99], "params": [0]}]
    assert second["param_groups"] == [{"lr": 0.02, "params": [0, 5]}]
    assert list(first["state"]) == [0] and sorted(second["state"]) == [0, 5]
    assert torch.equal(first["state"][0]["step"], torch.tensor(3))
    assert torch.equal(first["state"][0]["exp_avg"], torch.arange(4.0))
    assert torch.equal(second["state"][0]["momentum_buffer"], torch.ones(2, 2))
    assert torch.equal(second["state"][5]["momentum_buffer"], torch.zeros(3))


def test_a_save_writes_beside_its_target_and_the_next_save_clears_what_a_killed_one_left(
        tmp_path, monkeypatch, tiny_model_cfg):
    assert checkpoint.optimizer_path(tmp_path / "m.safetensors") == tmp_path / "m.optim.safetensors"
    renamed, real_replace = [], os.replace

    def recording(src, dst):
        renamed.append((Path(src), Path(dst)))
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", recording)
    ckpt = _tiny(tiny_model_cfg, optimizer_state=STATE)
    path = checkpoint.save(tmp_path / "m", ckpt)
    monkeypatch.undo()
    assert path == tmp_path / "m.safetensors"
    assert [dst for _, dst in renamed] == [tmp_path / "m.optim.safetensors", path]  # optimizer first
    for src, dst in renamed:  # a hidden temporary beside the file: the rename stays on one disk
        assert src.parent == dst.parent and re.fullmatch(rf"\.{re.escape(dst.name)}\.\w+\.tmp", src.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.optim.safetensors", "m.safetensors"]
    assert [p.stat().st_mode & 0o777 for p in sorted(tmp_path.iterdir())] == [0o644, 0o644]
    for src, _ in renamed:  # what a save killed before its renames leaves behind
        src.write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_bytes(b"not ours")
    checkpoint.save(path, ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.optim.safetensors", "m.safetensors", "notes.tmp"]


def test_a_damaged_foreign_or_stale_optimizer_file_is_named(tmp_path, tiny_model_cfg):
    ckpt = _tiny(tiny_model_cfg, optimizer_state=STATE)
    path = checkpoint.save(tmp_path / "m", ckpt)
    opt = checkpoint.optimizer_path(path)
    earlier = opt.read_bytes()
    opt.write_bytes(earlier + bytes(8))  # the framing holds; the data is longer than its tensors
    with pytest.raises(CheckpointError, match=r"^m\.optim\.safetensors is damaged: .*not fully covered"):
        checkpoint.load(path)
    save_file({"w": torch.zeros(1)}, str(opt))
    with pytest.raises(CheckpointError, match=r"^m\.optim\.safetensors is a safetensors file but not a GPT "
                                              r"Playground model \(no playground metadata\)$"):
        checkpoint.load(path)
    checkpoint.save(path, ckpt)
    opt.write_bytes(earlier)
    with pytest.raises(CheckpointError, match=r"^m\.optim\.safetensors belongs to a different save of "
                                              r"m\.safetensors; delete it to continue training without "
                                              r"the optimizer state$"):
        checkpoint.load(path)
    opt.unlink()  # no optimizer file: the model opens without its state
    assert checkpoint.load(path).optimizer_state is None
    path.write_bytes(path.read_bytes() + bytes(8))
    with pytest.raises(CheckpointError, match=r"^m\.safetensors is damaged: .*not fully covered"):
        checkpoint.load(path)


def test_tied_weights_views_and_numpy_numbers_are_saved_by_value(tmp_path, tiny_model_cfg):
    cfg = tiny_model_cfg.replace(tie_embeddings=True, head_bias=False)
    buf = torch.arange(6.0)  # two overlapping views of one buffer, as a hand-made optimizer might keep
    state = [{"state": {0: {"exp_avg": buf[:4], "exp_avg_sq": buf[2:]}}, "param_groups": [{"lr": 0.1}]}]
    ckpt = _tiny(cfg, state={"loss": np.float32(1.5), "val_loss": torch.tensor(2.5)}, optimizer_state=state)
    assert ckpt.model.lm_head.weight is ckpt.model.wte.weight
    back = checkpoint.load(checkpoint.save(tmp_path / "m", ckpt))
    assert back.state == {"loss": 1.5, "val_loss": 2.5}
    assert torch.equal(back.model.wte.weight, ckpt.model.wte.weight) and back.model.lm_head.weight is back.model.wte.weight
    (opt,) = back.optimizer_state
    assert opt["state"][0]["exp_avg"].tolist() == [0, 1, 2, 3] and opt["state"][0]["exp_avg_sq"].tolist() == [2, 3, 4, 5]


def test_save_errors_name_the_file_and_the_reason(tmp_path, monkeypatch, tiny_model_cfg):
    missing = tmp_path / "gone"
    with pytest.raises(CheckpointError, match=f"^{re.escape(f'cannot save to {missing}/m.safetensors: folder {missing} does not exist')}$"):
        checkpoint.save(missing / "m", _tiny(tiny_model_cfg))
    for error, reason in [(OSError(28, "No space left on device"), "No space left on device"),
                          (OSError("the disk went away"), "the disk went away")]:  # no strerror: the error itself

        def failing(fd, error=error):
            raise error
        monkeypatch.setattr(os, "fsync", failing)
        with pytest.raises(CheckpointError, match=f"^could not save m.safetensors: {reason}; "
                                                  r"the previous file \(if any\) is unchanged$"):
            checkpoint.save(tmp_path / "m", _tiny(tiny_model_cfg))


def _rewrite(path, out, meta_change=None, tensors_change=None):
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["playground"])
    tensors = load_file(str(path))
    if meta_change:
        meta_change(meta)
    if tensors_change:
        tensors_change(tensors)
    save_file(tensors, str(out), metadata={"playground": json.dumps(meta)})
    return out


def test_a_model_file_must_hold_complete_valid_settings_and_exactly_their_tensors(tmp_path, tiny_model_cfg):
    path = checkpoint.save(tmp_path / "m", _tiny(tiny_model_cfg, state={"step": 7}))
    bad = tmp_path / "x.safetensors"

    def refused(words, **changes):
        with pytest.raises(CheckpointError, match=f"^{re.escape(words)}"):
            checkpoint.load(_rewrite(path, bad, **changes))
    refused("x.safetensors has incomplete metadata (missing 'model_config')", meta_change=lambda m: m.pop("model_config"))
    refused("x.safetensors has incomplete metadata (missing 'tokenizer')", meta_change=lambda m: m.pop("tokenizer"))
    refused("x.safetensors has invalid settings: ", meta_change=lambda m: m["model_config"].update(n_head=3))
    refused("x.safetensors has invalid settings: ",
            meta_change=lambda m: m.update(train_config={"learning_rate": -1.0}))

    def reshape(t):
        t["wte.weight"] = torch.zeros(13, 4)
        t["zzz.weight"] = torch.zeros(1)
        for name in ("lm_head.bias", "ln_f.bias", "ln_f.weight", "wpe.weight"):
            del t[name]
    refused("x.safetensors does not match its own settings (missing ['lm_head.bias', 'ln_f.bias', 'ln_f.weight'], "
            "wrong shape ['wte.weight'], unexpected ['zzz.weight'])", tensors_change=reshape)
    # what a file may leave out: the training settings, the progress, the optimizer file
    loaded = checkpoint.load(_rewrite(path, bad, meta_change=lambda m: m.update(state=None, train_config=None)))
    assert loaded.state == {} and loaded.train_config is None and loaded.optimizer_state is None
    assert checkpoint.load(path).state == {"step": 7}
    # half-precision weights open as float32 with the same values
    half = checkpoint.load(_rewrite(path, bad, tensors_change=lambda t: t.update({k: v.half() for k, v in t.items()})))
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert torch.equal(half.model.wte.weight, checkpoint.load(path).model.wte.weight.half().float())


def test_an_optimizer_file_is_read_only_when_the_model_file_says_it_has_one(tmp_path, tiny_model_cfg):
    with_state = checkpoint.save(tmp_path / "a", _tiny(tiny_model_cfg, optimizer_state=STATE))
    without = checkpoint.save(tmp_path / "m", _tiny(tiny_model_cfg))
    assert not checkpoint.optimizer_path(without).exists()
    checkpoint.optimizer_path(without).write_bytes(checkpoint.optimizer_path(with_state).read_bytes())
    assert checkpoint.load(without).optimizer_state is None  # not its own: never read
    assert checkpoint.load(with_state).optimizer_state is not None
    assert checkpoint.load(with_state, with_optimizer=False).optimizer_state is None


@pytest.mark.parametrize("position,tied", [("learned", False), ("rope", True)])
def test_a_loaded_model_is_built_unset_and_then_holds_exactly_the_saved_weights(tmp_path, tiny_model_cfg,
                                                                                position, tied):
    """load builds its model unset (GPT.unset: no random initialisation, which was most of a
    large model's load time) and sets every weight from the file: the same logits as the model
    saved, by the plain forward and by the cached step (rotary tables, tied head included)."""
    from playground.engine.config import SampleConfig
    from playground.engine.model.generation import Engine, Request
    cfg = tiny_model_cfg.replace(position=position, tie_embeddings=tied, head_bias=not tied)
    torch.manual_seed(4)
    ckpt = _tiny(cfg)
    back = checkpoint.load(checkpoint.save(tmp_path / "m", ckpt)).model
    assert (back.lm_head.weight is back.wte.weight) == tied
    assert [n for n, _ in back.named_parameters()] == [n for n, _ in ckpt.model.named_parameters()]
    idx = torch.randint(cfg.vocab_size, (2, cfg.block_size))
    assert torch.equal(back(idx)[0], ckpt.model(idx)[0])
    texts = []
    for model in (ckpt.model, back):
        engine = Engine(model, ckpt.tokenizer, capacity=1)
        engine.add(Request((1, 2, 3), SampleConfig(max_new_tokens=2 * cfg.block_size, temperature=1.0, seed=5)))
        texts.append([token.id for _ in range(2 * cfg.block_size) for _, token in engine.step()])
    assert texts[0] == texts[1] and len(texts[0]) == 2 * cfg.block_size



def test_a_tied_head_is_stored_once_and_format_2_files_holding_it_twice_still_open(tmp_path, tiny_model_cfg):
    """Format 3: a tied model's head is its embedding, stored once (a quarter of a GPT-2 small
    file was the second copy), and the file says format 3, so a version that reads up to 2 says
    "made by a newer GPT Playground" instead of "missing lm_head.weight". Untied models are
    still written as 2. A format-2 file of a tied model, both copies in it, opens tied."""
    tied_cfg = tiny_model_cfg.replace(tie_embeddings=True, head_bias=False)
    tied = checkpoint.save(tmp_path / "tied", _tiny(tied_cfg))
    untied = checkpoint.save(tmp_path / "untied", _tiny(tiny_model_cfg))
    header, _ = checkpoint.read_header(tied)
    meta = json.loads(header["__metadata__"]["playground"])
    assert "lm_head.weight" not in header and "wte.weight" in header and meta["format_version"] == 3
    header, _ = checkpoint.read_header(untied)
    assert "lm_head.weight" in header and json.loads(header["__metadata__"]["playground"])["format_version"] == 2
    model = _tiny(tied_cfg).model
    old = tmp_path / "old.safetensors"  # as format 2 wrote it: the head a second time
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(old),
              metadata={"playground": json.dumps({**meta, "format_version": 2})})
    for path in (tied, old):
        back = checkpoint.load(path).model
        assert back.lm_head.weight is back.wte.weight and torch.equal(back.wte.weight, model.wte.weight)
    assert old.stat().st_size - tied.stat().st_size >= model.wte.weight.numel() * 4  # (and its header entry)
