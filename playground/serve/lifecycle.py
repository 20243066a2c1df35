"""A server's life, stated once: listen on an address, put a model behind the API (the scheduler
thread starts), serve, then stop: stop listening, let the requests in flight finish, stop the
scheduler. `python -m playground serve` runs it in the foreground until SIGTERM or Ctrl+C; the
window's Serve panel and the tests run it in a thread until they switch it off."""

from __future__ import annotations

import socket
import threading
import time
from typing import Optional

from playground.engine.errors import ConfigError

DRAIN_S = 60  # how long a stop waits for the requests in flight


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one); ConfigError in words when it cannot be had.
    Connections wait in its backlog from now on, before the server runs."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def attach_model(served, model, tokenizer, start_char: Optional[str], max_concurrent: int = 8,
                 max_queue: int = 64, batched: bool = True) -> None:
    """Put a model behind the API: its scheduler thread starts, then the API answers."""
    from playground.serve.scheduler import Scheduler
    scheduler = Scheduler(model, tokenizer, start_char, max_concurrent, max_queue, served.metrics, batched)
    scheduler.start()
    cfg = model.config
    served.info = {"vocab_size": cfg.vocab_size, "block_size": cfg.block_size,
                   "params": model.num_params(), "position": cfg.position}
    served.engine = scheduler


class Server:
    """uvicorn serving the app of `served` on `sock`."""

    def __init__(self, served, sock: socket.socket, drain_s: float = DRAIN_S, log_level: str = "warning"):
        import uvicorn

        from playground.serve.api import create_app
        self.served, self.sock = served, sock
        self.server = uvicorn.Server(uvicorn.Config(create_app(served), log_level=log_level,
                                                    timeout_graceful_shutdown=drain_s))
        self.drain_s = drain_s
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def run(self) -> None:
        """Serve in this thread until asked to stop (uvicorn drains on SIGTERM and Ctrl+C), then
        stop the scheduler once its requests are done."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self._stop_scheduler(self.drain_s)

    def start(self, timeout: float = 20.0) -> "Server":
        """Serve in a thread of its own; returns once the server answers."""
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise ConfigError("the server did not start")
        return self

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop listening, let the requests in flight end (up to wait_s), stop the scheduler."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(wait_s)
        self._stop_scheduler(wait_s)

    def _stop_scheduler(self, wait_s: float) -> None:
        if self.served.engine is not None:
            self.served.engine.stop(wait_s)


__all__ = ["DRAIN_S", "Server", "attach_model", "listen"]
