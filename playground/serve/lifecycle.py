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
    Connections wait in its backlog from now on, before the server runs.

    It is made as IPPROTO_TCP, not protocol 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    on accepted connections only when their socket says TCP, and with Nagle on, a response's
    second write waits for the client's delayed ACK: about 40 ms on every keep-alive request."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range: use 0 to 65535 (0 picks a free one)")
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # (accepted sockets inherit it too)
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


def base_url(host: str, port: int) -> str:
    """http://host:port, with an IPv6 address in brackets as URLs need it."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def finite_weights(model) -> str:
    """'' when every weight is a finite number, else why the model cannot write text."""
    import torch
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if not bad:
        return ""
    total = sum(1 for _ in model.parameters())
    return (f"its weights hold NaN or inf ({len(bad)} of {total} tensors, first {bad[0]!r}), so its "
            "predictions are not numbers; train it again with a lower learning rate")


def attach_model(served, model, tokenizer, start_char: Optional[str], max_concurrent: int = 8,
                 max_queue: int = 64, batched: bool = True, weights: str = "float32") -> None:
    """Put a model behind the API: its scheduler thread starts, then the API answers. A model
    whose weights are not finite is not put behind it: /health and requests answer 503 with
    the reason (served.problem)."""
    from playground.serve.scheduler import Scheduler
    cfg = model.config
    served.info = {"vocab_size": cfg.vocab_size, "block_size": cfg.block_size,
                   "params": model.num_params(), "position": cfg.position}
    served.problem = finite_weights(model)
    if served.problem:
        return
    scheduler = Scheduler(model, tokenizer, start_char, max_concurrent, max_queue, served.metrics, batched, weights)
    scheduler.start()
    served.engine = scheduler


def connection_protocol(read_timeout_s: float):
    """uvicorn's HTTP/1.1 protocol with the deadlines it lacks: a connection that has sent
    nothing yet is closed after the idle timeout, as uvicorn closes one idle between requests,
    and a request's head must arrive within read_timeout_s of its first byte (the body's own
    deadline is BodyLimit's)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class Connection(AutoHTTPProtocol):
        head_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            between = cycle is None or cycle.response_complete  # these bytes begin a request's head
            super().data_received(data)
            if self.cycle is not cycle:  # the head is in
                self._head_arrived()
            elif between and self.head_timer is None:
                self.head_timer = self.loop.call_later(read_timeout_s, self._head_late, cycle)

        def connection_lost(self, exc) -> None:
            self._head_arrived()
            super().connection_lost(exc)

        def _head_arrived(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_late(self, cycle) -> None:
            self.head_timer = None
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return Connection


class Server:
    """uvicorn serving the app of `served` on `sock`, with the idle and read deadlines of its
    settings."""

    def __init__(self, served, sock: socket.socket, drain_s: float = DRAIN_S, log_level: str = "warning"):
        import uvicorn

        from playground.serve.api import Contained, create_app
        self.served, self.sock = served, sock
        settings = served.settings
        self.server = uvicorn.Server(uvicorn.Config(
            Contained(create_app(served)), log_level=log_level, timeout_graceful_shutdown=drain_s,
            timeout_keep_alive=settings.idle_timeout_s, http=connection_protocol(settings.read_timeout_s)))
        self.drain_s = drain_s
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return base_url(host, port)

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


__all__ = ["DRAIN_S", "Server", "attach_model", "base_url", "finite_weights", "listen"]
