"""Who gets in, over real HTTP on 127.0.0.1 (a free port): a request is accepted while running +
waiting stays within --max-concurrent + --max-queue (so --max-queue 0 serves an idle server), n
choices are admitted all or none, and a request whose client hung up while queued gives its place
back at once. Every wait is bounded."""

import contextlib
import json

from playground.serve.api import Served, Settings

from .conftest import connect, running, wait_until
from .test_server import metric

LONG = {"model": "seed", "prompt": "to", "max_tokens": 10**6, "stream": True}  # runs until its client goes


def served() -> Served:
    return Served(Settings(model_name="seed", max_tokens_limit=10**6))


def start_stream(url: str, body=LONG):
    """A streamed request that is generating (its first line is in); its connection, closed on leaving."""
    conn = connect(url)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200 and reply.readline().startswith(b"data: ")
    return contextlib.closing(conn)


def send(url: str, body: dict):
    """A request sent and not read: its connection."""
    conn = connect(url)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    return conn


def status(url: str, body: dict) -> int:
    conn = send(url, body)
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply.status


def test_max_queue_0_serves_an_idle_server_and_refuses_beyond_the_rows(seed_model):
    model, tok = seed_model
    with running(served(), model, tok, "t", max_concurrent=1, max_queue=0) as url:
        assert status(url, {"model": "seed", "prompt": "to", "max_tokens": 3}) == 200
        with start_stream(url):
            assert status(url, {"model": "seed", "prompt": "to", "max_tokens": 3}) == 503
        assert wait_until(lambda: metric(url, "playground_requests_running") == 0)
        assert status(url, {"model": "seed", "prompt": "to", "max_tokens": 3}) == 200


def test_n_choices_are_admitted_all_or_none(seed_model):
    model, tok = seed_model
    with running(served(), model, tok, "t", max_concurrent=2, max_queue=0) as url:
        with start_stream(url):  # one row of two taken: two choices cannot both get one
            before = metric(url, "playground_requests_rejected_total")
            assert status(url, {"model": "seed", "prompt": "to", "max_tokens": 3, "n": 2}) == 503
            assert metric(url, "playground_requests_rejected_total") == before + 1
            assert metric(url, "playground_requests_waiting") == 0  # none of the two was queued
            assert status(url, {"model": "seed", "prompt": "to", "max_tokens": 3, "n": 1}) == 200
        assert wait_until(lambda: metric(url, "playground_requests_running") == 0)
        assert status(url, {"model": "seed", "prompt": "to", "max_tokens": 3, "n": 2}) == 200


def test_a_client_that_hangs_up_while_queued_gives_its_place_back(seed_model):
    model, tok = seed_model
    with running(served(), model, tok, "t", max_concurrent=1, max_queue=1) as url, start_stream(url):
        for stream in (True, False):  # a streamed and a whole request, each queued, then gone
            cancelled = metric(url, "playground_requests_cancelled_total")
            queued = send(url, {**LONG, "stream": stream})
            assert wait_until(lambda: metric(url, "playground_requests_waiting") == 1)
            queued.sock.close()
            queued.close()
            assert wait_until(lambda: metric(url, "playground_requests_waiting") == 0), stream
            assert metric(url, "playground_requests_cancelled_total") == cancelled + 1
            assert metric(url, "playground_requests_running") == 1  # (the first one still runs)
        # its place is free: the next request is queued, not refused
        assert start_stream_or_status(url) == 200


def start_stream_or_status(url: str) -> int:
    """A streamed request's status: 200 as soon as it is queued (its stream opens), 503 if refused."""
    conn = send(url, LONG)
    reply = conn.getresponse()
    conn.close()
    return reply.status


def test_the_queue_bound_by_hand():
    """Scheduler.submit without its thread: room is the rows plus max_queue, less what runs and
    waits; a request's jobs get in all or none; jobs whose client has gone give their place back."""
    from playground.engine.config import ModelConfig, SampleConfig
    from playground.engine.data.tokenizer import CharTokenizer
    from playground.engine.model.gpt import GPT
    from playground.serve.metrics import Metrics
    from playground.serve.scheduler import Finished, Job, Scheduler
    model = GPT(ModelConfig(vocab_size=3, n_layer=1, n_head=1, n_embd=4, block_size=8))
    events = []
    job = lambda: Job([0], 1, SampleConfig(max_new_chars=1), events.append)  # noqa: E731
    metrics = Metrics()
    scheduler = Scheduler(model, CharTokenizer(list("abc")), max_concurrent=2, max_queue=1, metrics=metrics)
    assert scheduler.submit(job(), job()) and scheduler.busy == 2 and metrics.waiting._value.get() == 2
    assert not scheduler.submit(job(), job())             # 2 jobs, 1 place: neither gets in
    assert scheduler.busy == 2
    last = job()
    assert scheduler.submit(last) and scheduler.busy == 3 and not scheduler.submit(job())
    last.cancelled.set()                                   # its client went away: its place is free
    assert scheduler.submit(job()) and scheduler.busy == 3 and events == [Finished("cancelled", 1, 0)]
    scheduler._running = 1                                 # one taken from the queue: one place less
    assert not scheduler.submit(job())
    one_row = Scheduler(model, CharTokenizer(list("abc")), max_concurrent=4, max_queue=0, batched=False)
    assert one_row.submit(job()) and not one_row.submit(job())   # --no-batch: one row
    stopping = Scheduler(model, CharTokenizer(list("abc")), max_concurrent=2, max_queue=2)
    stopping._stopping = True
    assert not stopping.submit(job())                     # a stopping server takes nothing new
