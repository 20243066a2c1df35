"""One generation engine under every window onto the model: the same prompt, settings and seed
give the same text from the command line, the window, the server and evaluation's tasks."""

import json

import pytest

from playground.engine.analysis.evaluation import score_tasks
from playground.engine.data.tasks import Task
from playground.engine.model import checkpoint
from playground.serve.api import Served, Settings
from tests.serve.conftest import running
from tests.serve.test_server import raw

PROMPT = "to be or"


@pytest.fixture
def saved(seed_model, tmp_path):
    model, tokenizer = seed_model
    path = checkpoint.save(tmp_path / "seed.safetensors",
                           checkpoint.Checkpoint(model, tokenizer, None, {"start_char": "t", "step": 500}))
    return path


def cli(path, capsys, chars, temperature, seed) -> str:
    from playground.cli import main
    assert main(["generate", str(path), "--prompt", PROMPT, "--chars", str(chars),
                 "--temperature", str(temperature), "--seed", str(seed)]) == 0
    return capsys.readouterr().out.removesuffix("\n").removeprefix(PROMPT)


def window_text(window, qtbot, path, chars, temperature, seed) -> str:
    panel = window.generation
    if window.current.value is None:
        assert window.open_model(str(path))
    panel.prompt.setText(PROMPT)
    panel.temperature.setValue(round(temperature * 100))
    panel.length.setValue(chars)
    panel.seed.setValue(seed)
    with qtbot.waitSignal(window.generationFinished, timeout=60_000):
        panel.generate.click()
    return panel.text().removeprefix(PROMPT)


def server_text(url, chars, temperature, seed) -> str:
    reply = raw(url, "POST", "/v1/completions", {"model": "seed", "prompt": PROMPT, "max_tokens": chars,
                                                 "temperature": temperature, "seed": seed})
    return json.loads(reply.read())["choices"][0]["text"]


def test_the_same_request_writes_the_same_text_through_every_consumer(window, qtbot, saved, seed_model, capsys):
    model, tokenizer = seed_model
    with running(Served(Settings(model_name="seed")), model, tokenizer, "t") as url:
        for chars, temperature, seed in [(60, 0.0, 1), (80, 1.3, 7), (45, 0.9, 123)]:
            expected = cli(saved, capsys, chars, temperature, seed)
            assert len(expected) == chars
            assert window_text(window, qtbot, saved, chars, temperature, seed) == expected
            assert server_text(url, chars, temperature, seed) == expected
            if temperature == 0:  # evaluation's tasks answer greedily
                found = score_tasks(model, tokenizer, [Task(PROMPT, expected), Task(PROMPT, expected[:5] + "#")])
                assert (found.correct, found.total) == (1, 2) and found.failures[0].got == expected[:6]
