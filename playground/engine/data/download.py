"""Public-domain corpora fetched at run time, never shipped: each with its address, size and
SHA-256. A download goes to a temporary file in the user's data folder and becomes the cached
copy only once its size and checksum match; a cancelled, broken or wrong download leaves
nothing behind that could be used."""

from __future__ import annotations

import hashlib
import http.client
import os
import queue
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from playground.engine.errors import CorpusError

DATA_ENV = "PLAYGROUND_DATA_DIR"  # where downloads go instead of the user's data folder
CHUNK = 64 * 1024
TIMEOUT_S = 30  # seconds without any data before a download gives up
POLL_S = 0.25   # how soon a download waiting on the network notices it was cancelled


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    url: str
    size: int          # bytes
    sha256: str
    about: str = ""    # one line for the picker

    @property
    def size_text(self) -> str:
        return f"{self.size / 1e6:.1f} MB" if self.size >= 1e6 else f"{self.size / 1e3:.0f} KB"


# Immutable addresses: Tiny Shakespeare at the address the tutorials use, and Project Gutenberg
# books as GITenberg keeps them on GitHub, pinned to a commit so the bytes never change.
_GITENBERG = "https://raw.githubusercontent.com/GITenberg/"
SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("shakespeare", "Tiny Shakespeare",
           "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
           1_115_394, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
           "40,000 lines of Shakespeare's plays, the corpus every char-level tutorial uses"),
    Source("alice", "Alice's Adventures in Wonderland",
           _GITENBERG + "Alice-s-Adventures-in-Wonderland_11/7f18748e114b994d5d9454d5793581bc0b9cf9d7/11-0.txt",
           173_595, "49a0b2726606e1290ac03a63978fa1dd1bd38a8d805704d98265f393533ea094",
           "Lewis Carroll, 1865 (Project Gutenberg #11)"),
    Source("sherlock", "The Adventures of Sherlock Holmes",
           _GITENBERG + "The-Adventures-of-Sherlock-Holmes_1661/7e5dd2703fbf503c004063e96ab7c61262375e5f/1661.txt",
           594_941, "2a0ce5568625a304f54fbb6bfdeeadf527a1437254b5f0e06b5a9e233d4784a2",
           "Arthur Conan Doyle, 1892 (Project Gutenberg #1661)"),
    Source("pride", "Pride and Prejudice",
           _GITENBERG + "Pride-and-Prejudice_1342/81db45c9c48c592f0b77f01fc59e677ad0a5634e/1342-0.txt",
           724_725, "48e0522844402a86a3ea98f0947ba85ea54838db3c59022299298ed968a5a163",
           "Jane Austen, 1813 (Project Gutenberg #1342)"),
]}


class DownloadCancelled(CorpusError):
    """The user cancelled a download; nothing was kept."""


def data_dir() -> Path:
    base = os.environ.get(DATA_ENV)
    if not base:
        import platformdirs
        base = platformdirs.user_data_dir("gpt-playground", appauthor=False)
    return Path(base) / "corpora"


def cached_path(source: Source) -> Path:
    return data_dir() / f"{source.name}.txt"


def cached(source: Source) -> Optional[Path]:
    """The downloaded copy, if there is one and its bytes are still the right ones."""
    path = cached_path(source)
    try:
        if path.stat().st_size == source.size and _sha256(path) == source.sha256:
            return path
    except OSError:
        pass
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(source: Source, progress: Optional[Callable[[int, int], None]] = None,
             cancelled: Optional[Callable[[], bool]] = None, timeout: float = TIMEOUT_S) -> Path:
    """Fetch the source into the data folder and return the checked copy; progress(bytes,
    total) as it arrives. CorpusError (DownloadCancelled when cancelled()) says why not."""
    chunks = fetch(source, timeout, cancelled)
    try:
        for done, total in chunks:
            if cancelled is not None and cancelled():
                raise DownloadCancelled(f"the download of {source.title} was cancelled")
            if progress is not None:
                progress(done, total)
    finally:
        chunks.close()  # a stopped download removes its partial file now
    return cached_path(source)


def fetch(source: Source, timeout: float = TIMEOUT_S,
          cancelled: Optional[Callable[[], bool]] = None) -> Iterator[tuple[int, int]]:
    """Download the source, yielding (bytes so far, total) as they arrive. When the iteration
    ends, the checked copy is at cached_path(source); stopping it early, cancelled() turning
    true (DownloadCancelled, within POLL_S even while the server sends nothing) or any error
    leaves nothing half-written behind. `timeout`: seconds without data before giving up."""
    dest = cached_path(source)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise CorpusError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = hashlib.sha256()
            done = 0
            for block in _blocks(source, timeout, cancelled):
                done += len(block)
                if done > source.size:
                    raise CorpusError(f"{source.title}: the server sent more than the expected "
                                      f"{source.size:,} bytes, so the download was discarded")
                out.write(block)
                digest.update(block)
                yield done, source.size
            out.flush()
            os.fsync(out.fileno())
        if done != source.size:
            raise CorpusError(f"{source.title}: the connection closed after {done:,} of "
                              f"{source.size:,} bytes; try again")
        if digest.hexdigest() != source.sha256:
            raise CorpusError(f"{source.title}: the downloaded file is not the expected one (its "
                              "SHA-256 does not match), so it was discarded")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _blocks(source: Source, timeout: float,
            cancelled: Optional[Callable[[], bool]] = None) -> Iterator[bytes]:
    """The response body in blocks. A helper thread does the reading, so that no wait for the
    server (to connect, for the headers, for the next block) holds up a cancel: cancelled() is
    asked every POLL_S. (A short socket timeout cannot do this: after one timed-out read, a
    response refuses every later read.) The helper gives up after `timeout` s without data."""
    inbox: queue.Queue = queue.Queue(maxsize=16)  # a slow consumer holds the helper back
    helper = _Receiver(source, timeout, inbox)
    threading.Thread(target=helper.run, name=f"download-{source.name}", daemon=True).start()
    try:
        while True:
            if cancelled is not None and cancelled():
                raise DownloadCancelled(f"the download of {source.title} was cancelled")
            try:
                item = inbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        helper.hang_up()


class _Receiver:
    """Reads the response on its own thread into a queue: blocks, then None at the end, or the
    exception that ended it. hang_up() makes it stop soon, even in the middle of a read."""

    def __init__(self, source: Source, timeout: float, inbox: queue.Queue):
        self.source, self.timeout, self.inbox = source, timeout, inbox
        self.stop = threading.Event()
        self.response = None

    def run(self) -> None:
        try:
            for block in self._read():
                if not self._put(block):
                    return
            self._put(None)
        except Exception as exc:  # the consumer raises it on its own thread
            self._put(exc)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.inbox.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def hang_up(self) -> None:
        self.stop.set()
        # wake a read that may otherwise wait up to `timeout` for a stalled server; the socket
        # is reached through http.client's reader, and when it is not there the read simply
        # ends at its timeout (the thread is a daemon and its data goes nowhere)
        sock = getattr(getattr(getattr(self.response, "fp", None), "raw", None), "_sock", None)
        try:
            if sock is not None:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # below TLS: safe from here
        except (OSError, TypeError):
            pass

    def _read(self) -> Iterator[bytes]:
        """The body in blocks; network failures become CorpusError in words."""
        source = self.source
        request = urllib.request.Request(source.url, headers={"User-Agent": "gpt-playground"})
        received = 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                self.response = response
                if self.stop.is_set():  # cancelled while connecting
                    return
                while block := response.read1(CHUNK):  # what has arrived, without waiting for more
                    received += len(block)
                    yield block
        except urllib.error.HTTPError as exc:
            raise CorpusError(f"{source.title}: {source.url} answered HTTP {exc.code} "
                              f"({exc.reason})") from None
        except http.client.IncompleteRead as exc:
            raise CorpusError(f"{source.title}: the connection closed after "
                              f"{received + len(exc.partial):,} of {source.size:,} bytes; try again") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, socket.timeout):
                raise CorpusError(f"{source.title}: the server sent nothing for {self.timeout:g} s, "
                                  f"so the download stopped; try again later ({source.url})") from None
            raise CorpusError(f"could not download {source.title} ({reason}): is this computer "
                              f"offline? The file is {source.url}") from None
