"""What the test HTTP server serves (the `server` fixture in conftest.py runs it on 127.0.0.1):
a text served well, corrupted, missing, slowly, cut off halfway, or stalled (headers, then
nothing); every response is bounded."""

import hashlib
import http.server
import select
import threading
import time

from playground.engine.data.download import Source

BODY = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(4000)).encode()
SLOW_CHUNK, SLOW_PAUSE_S = 4096, 0.05
STALL_S = 10                 # /stall sends nothing for this long at most, then ends
STALLING = threading.Event()  # set once a /stall response has sent its headers


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        body = BODY if self.path != "/corrupt" else BODY[:-1] + b"?"
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        try:
            if self.path == "/drop":
                self.wfile.write(body[: len(body) // 2])  # then the connection closes
            elif self.path == "/stall":
                self.wfile.flush()
                STALLING.set()
                self._wait_for_hang_up(STALL_S)
            elif self.path == "/slow":  # bounded: the whole body at most, then it ends
                for start in range(0, len(body), SLOW_CHUNK):
                    self.wfile.write(body[start:start + SLOW_CHUNK])
                    self.wfile.flush()
                    time.sleep(SLOW_PAUSE_S)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (a cancelled download)

    def _wait_for_hang_up(self, seconds: float) -> None:
        """Send nothing for `seconds`, in short waits, ending early once the client hangs up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable and not self.connection.recv(1, 0):
                return


def source(url: str, name: str = "fixture") -> Source:
    return Source(name, "The fixture text", url, len(BODY), hashlib.sha256(BODY).hexdigest())
