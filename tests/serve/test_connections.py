"""The server's connections, on 127.0.0.1 (a free port): TCP_NODELAY on every accepted connection
(else Nagle and the client's delayed ACK add ~40 ms to each keep-alive request), idle and slow
connections closed by deadlines, IPv6 URLs in brackets, a bad port in one line. Every wait is
bounded and no assertion is on a duration."""

import select
import socket
import time

import pytest

from playground.serve.api import Served, Settings
from playground.serve.lifecycle import Server, base_url, listen

from .conftest import connect, serving, strict_json


def server_sockets(server) -> list:
    """The server's side of its open connections (uvicorn's protocols, each with its transport)."""
    for _ in range(50):  # the set belongs to the event loop's thread: copy it when it holds still
        try:
            protocols = list(server.server.server_state.connections)
            break
        except RuntimeError:
            time.sleep(0.01)
    return [p.transport.get_extra_info("socket") for p in protocols]


def test_the_listening_socket_is_tcp_and_accepted_connections_have_nodelay(seed_model):
    model, tok = seed_model
    sock = listen("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only for this
    served = Served(Settings(model_name="seed"))
    from playground.serve.lifecycle import attach_model
    attach_model(served, model, tok, "t", 2, 2)
    server = Server(served, sock).start()
    try:
        conn = connect(server.url)
        for _ in range(3):  # keep-alive: one connection, several requests
            conn.request("POST", "/v1/completions", '{"model": "seed", "prompt": "to", "max_tokens": 1}',
                         {"Content-Type": "application/json"})
            reply = conn.getresponse()
            assert reply.status == 200 and strict_json(reply.read())["usage"]["completion_tokens"] == 1
        ours = server_sockets(server)
        assert len(ours) == 1
        assert ours[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        conn.close()
    finally:
        server.stop(20)


def read_until_closed(sock: socket.socket, seconds: float = 15.0) -> bytes:
    """What the server sends until it closes the connection; fails if it is still open after `seconds`."""
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready:
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
    raise AssertionError(f"the server kept the connection open for {seconds} s; it sent {got[:200]!r}")


@pytest.fixture(scope="module")
def strict_server():
    with serving(Served(Settings(model_name="seed", idle_timeout_s=0.5, read_timeout_s=1.0))) as server:
        yield server


def open_socket(server) -> socket.socket:
    return socket.create_connection(server.sock.getsockname()[:2], timeout=15)


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(strict_server):
    with open_socket(strict_server) as sock:
        assert read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(strict_server):
    with open_socket(strict_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 503")  # answered, then closed when idle


def test_a_slow_head_is_cut_off(strict_server):
    with open_socket(strict_server) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nX-Slow: ")
        assert trickle_until_closed(sock)  # a header's byte every 0.2 s: cut off after 1 s


def trickle_until_closed(sock: socket.socket, steps: int = 75) -> bool:
    """Send a byte every 0.2 s (15 s in all) until the server closes the connection; whether it did."""
    for _ in range(steps):
        try:
            sock.sendall(b" ")
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready and not sock.recv(65536):
                return True
        except OSError:  # reset: closed while bytes were on their way
            return True
    return False


def rest_of_response(sock: socket.socket, got: bytes, seconds: float = 10.0) -> bytes:
    """What is still to come of a response whose first bytes are `got`: with TCP_NODELAY its
    head and body may arrive in separate segments, so read until the head is whole and the
    body has its Content-Length (or the connection closes, or `seconds` pass)."""
    more, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        head, sep, body = (got + more).partition(b"\r\n\r\n")
        if sep:
            lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            if lengths and len(body) >= lengths[0]:
                break
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            chunk = sock.recv(65536)
            if not chunk:
                break
            more += chunk
    return more


def test_a_slow_body_gets_408_then_the_connection_closes(strict_server):
    with open_socket(strict_server) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        got = b""
        for _ in range(75):  # a byte every 0.2 s: 15 s in all unless answered
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                got = sock.recv(65536)
                break
            sock.sendall(b" ")
        got += rest_of_response(sock, got)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), got[:300]
        error = strict_json(body)["error"]
        assert error["code"] == "request_timeout" and "did not arrive within 1 s" in error["message"]
        assert trickle_until_closed(sock)  # the rest of its body buys it no more time


def test_urls_put_ipv6_addresses_in_brackets():
    assert base_url("::1", 8000) == "http://[::1]:8000"
    assert base_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"

    class Bound:  # an IPv6 listening socket's address, without needing IPv6 on this machine
        def getsockname(self):
            return ("::", 8123, 0, 0)
    assert Server(Served(Settings()), Bound()).url == "http://[::]:8123"


def test_a_port_out_of_range_is_one_line_and_exit_2(capsys, tmp_path):
    from playground.cli import main
    from playground.engine.errors import ConfigError
    with pytest.raises(SystemExit) as stopped:
        main(["serve", str(tmp_path / "m.safetensors"), "--port", "70000"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and "out of range" in err
    with pytest.raises(ConfigError, match="out of range"):
        listen("127.0.0.1", 70000)


def test_timeouts_are_options_with_defaults():
    from playground.cli import build_parser
    from playground.cli.serve import served_for
    settings = served_for(build_parser().parse_args(["serve", "m.safetensors"])).settings
    assert (settings.idle_timeout_s, settings.read_timeout_s) == (5.0, 30.0)
    args = build_parser().parse_args(["serve", "m.safetensors", "--idle-timeout", "2", "--read-timeout", "7.5"])
    assert (served_for(args).settings.idle_timeout_s, served_for(args).settings.read_timeout_s) == (2.0, 7.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "m.safetensors", "--read-timeout", "0"])
