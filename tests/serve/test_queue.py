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
