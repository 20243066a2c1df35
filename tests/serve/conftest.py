"""A real server for a model, on 127.0.0.1 on a free port, in a thread (seed_model: tests/conftest.py),
and what the tests read from it: raw HTTP on one connection, its metrics, its log."""

import contextlib
import http.client
import json
import logging
import time


@contextlib.contextmanager
def running(served, model=None, tokenizer=None, start_char=None, max_concurrent=8, max_queue=64, batched=True):
    """Serve on 127.0.0.1, port 0 (a free one), by the server's own lifecycle; yields the base
    URL. Without a model the server runs but is 'loading' (its /health answers 503)."""
    with serving(served, model, tokenizer, start_char, max_concurrent, max_queue, batched) as server:
        yield server.url


@contextlib.contextmanager
def serving(served, model=None, tokenizer=None, start_char=None, max_concurrent=8, max_queue=64, batched=True):
    """As running(), yielding the lifecycle's Server itself (its socket, its uvicorn)."""
    from playground.serve.lifecycle import Server, attach_model, listen
    if model is not None:
        attach_model(served, model, tokenizer, start_char, max_concurrent, max_queue, batched)
    server = Server(served, listen("127.0.0.1", 0)).start()
    try:
        yield server
    finally:
        server.stop(20)


def connect(url: str, timeout: float = 30) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def strict_json(text):
    """json.loads that refuses NaN and Infinity, as JSON.parse and other strict parsers do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def wait_until(condition, seconds: float = 15.0) -> bool:
    """Poll condition() every 20 ms until it holds or the time is up; returns its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


class LogRecords(logging.Handler):
    """What the server logs at ERROR or with a traceback: uvicorn's, asyncio's and ours."""

    NAMES = ("uvicorn", "asyncio", "playground")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def __enter__(self):
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)
