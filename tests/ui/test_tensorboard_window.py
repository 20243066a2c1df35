"""Run > Log runs for TensorBoard: a run trained in the window writes TensorBoard event files,
from the same events the command line's --tensorboard writes, in a folder of its own; the
choice is remembered; without the tensorboard package it is refused in words."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from playground.engine.data.download import DATA_ENV
from playground.engine.errors import ConfigError

from .conftest import use_tiny_settings


def test_a_run_writes_its_events_for_tensorboard_and_the_choice_is_remembered(window, qtbot, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    window.tensorboard_action.trigger()
    root = tmp_path / "data" / "tensorboard"
    assert window.tensorboard_action.isChecked() and window.train_ctl.tensorboard == str(root)
    assert f"tensorboard --logdir {root}" in window.training.status.text()
    use_tiny_settings(window, steps=20, eval_interval=10)
    with qtbot.waitSignal(window.trainingFinished, timeout=120_000):
        assert window.start_training()
    runs = list(root.iterdir())
    assert len(runs) == 1 and window.train_ctl.board_folder == runs[0]
    board = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0})
    board.Reload()
    steps = [e.step for e in board.Scalars("loss/train_step")]
    assert steps == list(range(1, 21)) and [e.step for e in board.Scalars("loss/val")] == [10, 20]

    from playground.ui.controllers.remembered import app_settings, save_window
    save_window(window, app_settings())
    assert str(app_settings().value("run/tensorboard")).lower() == "true"


def test_without_the_package_it_says_how_to_install_it(window, monkeypatch):
    def missing():
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'x[tensorboard]'")
    monkeypatch.setattr("playground.engine.training.tensorboard_log.check_available", missing)
    window.tensorboard_action.trigger()
    assert not window.tensorboard_action.isChecked() and window.train_ctl.tensorboard is None
    assert "Logging for TensorBoard needs the tensorboard package" in window.training.status.text()
