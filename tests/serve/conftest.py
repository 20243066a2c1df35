"""A real server for a model, on 127.0.0.1 on a free port, in a thread (seed_model: tests/conftest.py)."""

import contextlib
import socket
import threading
import time


@contextlib.contextmanager
def running(served, model=None, tokenizer=None, start_char=None, max_concurrent=8, max_queue=64, batched=True):
    """Serve on a socket bound here (127.0.0.1, port 0: a free one); yields the base URL.
    Without a model the server runs but is 'loading' (its /health answers 503)."""
    import uvicorn

    from playground.serve.api import create_app
    from playground.serve.cli import start_engine
    if model is not None:
        start_engine(served, model, tokenizer, start_char, max_concurrent, max_queue, batched)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(served), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        if served.engine is not None:
            served.engine.stop(10)
