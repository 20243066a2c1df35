"""train --tensorboard DIR: the event files, read back with TensorBoard's own EventAccumulator,
hold the same numbers as the --log-json log (losses, bits per character, learning rate, gradient
norm, throughput), the samples as text and the settings as hyperparameters; each run gets its own
folder; a missing package or an unusable DIR is one line before training."""

import json
import sys

import pytest

from playground.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

TINY = ["train", "--builtin", "fable", "--layers", "1", "--width", "16", "--heads", "2", "--block", "8",
        "--batch", "8", "--steps", "30", "--eval-interval", "10", "--seed", "3", "--quiet"]


def read(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_the_event_files_hold_what_the_json_log_holds(tmp_path, capsys):
    board, log = tmp_path / "runs", tmp_path / "log.jsonl"
    assert main(TINY + ["--tensorboard", str(board), "--log-json", str(log)]) == 0
    assert f"TensorBoard: {board}" in capsys.readouterr().err
    (folder,) = board.iterdir()
    assert folder.name.endswith("_fable")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval"]
    acc = read(folder)

    def series(tag):
        return {e.step: e.value for e in acc.Scalars(tag)}
    for tag, key, rows in (("loss/train_step", "loss", steps), ("optim/lr", "lr", steps),
                           ("optim/grad_norm", "grad_norm", steps), ("speed/tokens_per_s", "tokens_per_s", steps),
                           ("loss/train", "train_loss", evals), ("loss/val", "val_loss", evals),
                           ("bits_per_char/val", "val_bpc", evals)):
        expected = {e["step"]: e[key] for e in rows}
        assert len(expected) >= (30 if rows is steps else 3)
        assert series(tag) == pytest.approx(expected, rel=1e-6), tag   # float32 in the file
    samples = [e["text"] for e in events if e["event"] == "sample"]
    shown = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("samples/text_summary")]
    assert len(shown) == len(samples) and samples[-1].split("\n")[0] in shown[-1]
    plugin = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["n_layer"].number_value == 1 and start.hparams["corpus"].string_value == "fable"
    assert start.hparams["learning_rate"].number_value > 0
    end = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_end_info"]).session_end_info
    assert end.status == 1   # STATUS_SUCCESS


def test_each_run_gets_a_folder_of_its_own(tmp_path):
    board = tmp_path / "runs"
    assert main(TINY + ["--tensorboard", str(board)]) == 0
    assert main(TINY + ["--tensorboard", str(board), "--lr", "0.01"]) == 0
    folders = sorted(board.iterdir())
    assert len(folders) == 2
    rates = [max(e.value for e in read(f).Scalars("optim/lr")) for f in folders]
    assert rates[1] == pytest.approx(0.01) and rates[0] != pytest.approx(0.01)


def test_a_missing_package_or_an_unusable_dir_is_one_line(tmp_path, capsys, monkeypatch):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("mine")
    assert main(TINY + ["--tensorboard", str(in_the_way)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write TensorBoard files in {in_the_way}/")
    assert in_the_way.read_text() == "mine"
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # as if it were not installed
    assert main(TINY + ["--tensorboard", str(tmp_path / "runs")]) == 2
    assert "pip install 'gpt-playground-studio[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
