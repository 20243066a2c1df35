"""A real server for a model, on 127.0.0.1 on a free port, in a thread (seed_model: tests/conftest.py)."""

import contextlib


@contextlib.contextmanager
def running(served, model=None, tokenizer=None, start_char=None, max_concurrent=8, max_queue=64, batched=True):
    """Serve on 127.0.0.1, port 0 (a free one), by the server's own lifecycle; yields the base
    URL. Without a model the server runs but is 'loading' (its /health answers 503)."""
    from playground.serve.lifecycle import Server, attach_model, listen
    if model is not None:
        attach_model(served, model, tokenizer, start_char, max_concurrent, max_queue, batched)
    server = Server(served, listen("127.0.0.1", 0)).start()
    try:
        yield server.url
    finally:
        server.stop(20)
