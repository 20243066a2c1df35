"""The server's engine and life: batched decoding gives each request what it gets alone, a full
queue answers 503, /health waits for the model, CORS answers preflights when asked to, stop
strings are held back until they can be ruled out, and SIGTERM drains the requests in flight."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from playground.engine.config import ModelConfig, SampleConfig
from playground.engine.data.corpus import build_corpus, builtin_text
from playground.engine.model.generation import StopFilter
from playground.engine.training.trainer import Trainer
from playground.serve.api import Served, Settings
from playground.serve.scheduler import Finished, Job, Piece, Scheduler

from .conftest import running
from .test_server import metric, raw

ROOT = Path(__file__).resolve().parents[2]


def collect(engine, jobs_settings, tokenizer) -> list[str]:
    """Submit every job at once; returns each one's text once all have finished."""
    texts, reasons = [[] for _ in jobs_settings], []
    all_done = threading.Event()

    def sink(i):
        def on_event(event):  # called on the engine thread: it must never block
            if isinstance(event, Piece):
                texts[i].append(event.text)
            elif isinstance(event, Finished):
                reasons.append(event.reason)
                if len(reasons) == len(jobs_settings):
                    all_done.set()
        return on_event
    for i, (prompt, cfg) in enumerate(jobs_settings):
        assert engine.submit(Job(tokenizer.encode(prompt), cfg.max_new_chars, cfg, sink(i)))
    assert all_done.wait(60) and set(reasons) == {"length"}
    return ["".join(t) for t in texts]


@pytest.mark.parametrize("position", ["rope", "learned"])
def test_requests_decoded_together_get_what_they_get_alone(position):
    corpus = build_corpus("phrase", builtin_text("phrase"), 0.1, 16)
    cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=2, n_embd=32, block_size=16, position=position)
    from playground.engine.config import TrainConfig
    trainer = Trainer(cfg, TrainConfig(batch_size=16, max_steps=150, learning_rate=1e-2, min_lr=1e-2,
                                       eval_interval=1000, sample_chars=0, threads=1), corpus)
    list(trainer.run())
    model, tok = trainer.model.eval(), corpus.tokenizer
    jobs = [("to be ", SampleConfig(max_new_chars=60, temperature=0)),
            ("that is", SampleConfig(max_new_chars=45, temperature=0)),
            ("question to be or not to be th", SampleConfig(max_new_chars=50, temperature=0)),
            ("o", SampleConfig(max_new_chars=70, temperature=0))]
    together = Scheduler(model, tok, max_concurrent=4)
    together.start()
    assert together.engine.fast  # both position schemes step together
    batched = collect(together, jobs, tok)
    together.stop()
    alone = []
    for job in jobs:
        single = Scheduler(model, tok, max_concurrent=1, batched=False)
        single.start()
        alone += collect(single, [job], tok)
        single.stop()
    assert batched == alone and all(len(t) == job[1].max_new_chars for t, job in zip(batched, jobs))


def test_a_full_queue_answers_503_with_retry_after(seed_model):
    model, tok = seed_model
    with running(Served(Settings(model_name="seed")), model, tok, max_concurrent=1, max_queue=1) as url:
        host, port = url.removeprefix("http://").split(":")
        streams = []
        for i in range(2):  # one runs, then one waits (sent after the first runs: never the other way round)
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("POST", "/v1/completions", json.dumps({"model": "seed", "prompt": "to", "max_tokens": 4000,
                                                                "stream": True}), {"Content-Type": "application/json"})
            streams.append(conn)
            if i == 0:
                conn.getresponse().readline()
        deadline = time.monotonic() + 15  # the second request is queued once the server has read it
        while metric(url, "playground_requests_waiting") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metric(url, "playground_requests_waiting") == 1
        third = raw(url, "POST", "/v1/completions", {"model": "seed", "prompt": "to"})
        assert third.status == 503 and third.getheader("retry-after") == "1"
        assert json.loads(third.read())["error"]["type"] == "server_error"
        for conn in streams:
            conn.close()


def test_health_waits_for_the_model_and_cors_answers_preflights(seed_model):
    served = Served(Settings(model_name="seed", api_keys=("k",), cors_origins=("http://app.example",)))
    with running(served) as url:
        assert raw(url, "GET", "/health").status == 503
        assert raw(url, "GET", "/v1/models", headers={"Authorization": "Bearer k"}).status == 503
        preflight = raw(url, "OPTIONS", "/v1/completions", headers={
            "Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
        assert preflight.status == 200  # no key needed for a preflight
        assert preflight.getheader("access-control-allow-origin") == "http://app.example"
        from playground.serve.lifecycle import attach_model
        model, tok = seed_model
        attach_model(served, model, tok, "t", 2, 2)
        assert raw(url, "GET", "/health").status == 200


@pytest.mark.parametrize("pieces,stops,expected", [
    (list("or not to be"), ["t to"], ("or no", True)),
    (list("abcabd"), ["abd"], ("abc", True)),
    (list("hello"), ["xyz"], ("hello", False)),
    (list("ab"), ["abc"], ("ab", False)),        # held back, then flushed at the end
    (list("aXbYc"), ["Y", "X"], ("a", True)),     # the earliest stop string wins
])
def test_stop_strings_are_held_back_until_ruled_out(pieces, stops, expected):
    f = StopFilter(tuple(stops))
    out, stopped = [], False
    for piece in pieces:
        text, stopped, _ = f.feed(piece)
        out.append(text)
        assert not any(s in "".join(out) for s in stops)
        if stopped:
            break
    if not stopped:
        out.append(f.flush()[0])
    assert ("".join(out), stopped) == expected


SLOW_LOAD = """
import sys, torch
from playground.engine.model import checkpoint
def load(*args, **kwargs):  # a model that takes forever to load: torch at work on the loading thread
    x = torch.randn(256, 256)
    while True:
        x = torch.tanh(x @ x)
checkpoint.load = load
from playground.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_the_model_loads_exits_0_without_aborting(tmp_path, seed_model):
    """Stopped before the model has loaded, the server says so and exits 0; the interpreter's
    exit beside torch's work on the loading thread used to abort ("terminate called without an
    active exception", 134)."""
    from playground.engine.model import checkpoint
    from playground.engine.model.checkpoint import Checkpoint
    model, tok = seed_model
    path = checkpoint.save(tmp_path / "seed", Checkpoint(model, tok, None, {"start_char": "t"}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, "serve", str(path), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", proc.stderr.readline()).group(1))
        assert raw(f"http://127.0.0.1:{port}", "GET", "/health").status == 503  # loading, and listening
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert "stopped before the model had loaded" in err and "terminate called" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(tmp_path, seed_model):
    from playground.engine.model import checkpoint
    from playground.engine.model.checkpoint import Checkpoint
    model, tok = seed_model
    path = checkpoint.save(tmp_path / "seed", Checkpoint(model, tok, None, {"start_char": "t"}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "playground", "serve", str(path), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", proc.stderr.readline()).group(1))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30  # the model loads in the background
        while raw(url, "GET", "/health").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/completions", json.dumps({"model": "seed", "prompt": "to be ", "max_tokens": 400,
                                                            "temperature": 0, "stream": True}),
                     {"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.readline().startswith(b"data: ")
        proc.send_signal(signal.SIGTERM)  # mid-stream
        rest = reply.read().decode()
        assert rest.rstrip().endswith("data: [DONE]") and '"finish_reason": "length"' in rest
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
