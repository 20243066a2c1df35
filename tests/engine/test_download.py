"""Downloading a corpus, against a real HTTP server on 127.0.0.1 (a free port per test run):
a good file, a corrupted one, a 404, a slow one that is cancelled, a stalled one that is
cancelled or times out, a connection that drops halfway, and no server at all. Nothing
half-written is ever used."""

import socket
import time

import pytest

from playground.engine.data import download
from playground.engine.data.corpus import resolve_source
from playground.engine.data.download import DownloadCancelled
from playground.engine.errors import CorpusError
from tests.fileserver import BODY, STALL_S, STALLING, source


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "data"))
    return tmp_path / "data" / "corpora"


def leftovers(folder) -> list:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_good_download_is_checked_and_cached(server, data_dir):
    seen = []
    path = download.download(source(server + "/ok"), progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == BODY and download.cached(source(server + "/ok")) == path
    assert seen[-1] == (len(BODY), len(BODY)) and len(seen) > 1
    assert leftovers(data_dir) == ["fixture.txt"]


@pytest.mark.parametrize("path,words", [
    ("/corrupt", "SHA-256 does not match"),
    ("/missing", "HTTP 404"),
    ("/drop", "connection closed after"),
])
def test_a_bad_download_says_why_and_leaves_nothing(server, data_dir, path, words):
    with pytest.raises(CorpusError, match=words):
        download.download(source(server + path))
    assert leftovers(data_dir) == []
    assert download.cached(source(server + path)) is None


def test_a_failed_download_keeps_the_good_copy(server, data_dir):
    good = download.download(source(server + "/ok"))
    with pytest.raises(CorpusError):
        download.download(source(server + "/corrupt"))
    assert good.read_bytes() == BODY and leftovers(data_dir) == ["fixture.txt"]


def test_cancelling_a_slow_download_stops_it_and_leaves_nothing(server, data_dir):
    received = []
    with pytest.raises(DownloadCancelled, match="cancelled"):
        download.download(source(server + "/slow"), progress=lambda done, total: received.append(done),
                          cancelled=lambda: len(received) >= 3)  # after three blocks
    assert len(received) == 3 and received[-1] < len(BODY) / 4  # stopped early, not at the end
    assert leftovers(data_dir) == []


def test_cancelling_a_stalled_download_is_prompt_and_leaves_nothing(server, data_dir):
    """The server sends its headers, then nothing: cancel must not wait for data (or for the
    30 s timeout); it is seen within a poll of the network."""
    STALLING.clear()
    began = time.monotonic()
    with pytest.raises(DownloadCancelled, match="cancelled"):
        download.download(source(server + "/stall"), cancelled=STALLING.is_set)  # once it stalls
    assert time.monotonic() - began < STALL_S / 3  # today's read waits for the whole stall
    assert leftovers(data_dir) == []


def test_a_stalled_download_gives_up_after_its_timeout(server, data_dir):
    STALLING.clear()
    with pytest.raises(CorpusError, match="sent nothing for 0.5 s"):
        download.download(source(server + "/stall"), timeout=0.5)
    assert STALLING.is_set() and leftovers(data_dir) == []


def test_no_server_means_a_message_about_being_offline(data_dir):
    with socket.socket() as s:  # a free port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CorpusError, match="offline"):
        download.download(source(f"http://127.0.0.1:{port}/ok"), timeout=5)
    assert leftovers(data_dir) == []


def test_the_corpus_downloads_once_then_comes_from_the_cache(server, monkeypatch):
    monkeypatch.setitem(download.SOURCES, "fixture", source(server + "/ok"))
    with pytest.raises(CorpusError, match="drop --no-download"):
        resolve_source(builtin="fixture", allow_download=False)
    assert resolve_source(builtin="fixture") == ("fixture", BODY.decode())
    monkeypatch.setitem(download.SOURCES, "fixture", source(server + "/missing"))
    assert resolve_source(builtin="fixture", allow_download=False)[1] == BODY.decode()


def test_every_listed_source_is_well_formed():
    for name, s in download.SOURCES.items():
        assert s.name == name and s.url.startswith("https://") and s.size > 100_000
        assert len(s.sha256) == 64 and int(s.sha256, 16) >= 0
    shakespeare = download.SOURCES["shakespeare"]
    assert shakespeare.size == 1_115_394  # the usual file, byte for byte


def test_the_cli_downloads_a_corpus_and_refuses_with_no_download(server, monkeypatch, capsys):
    from playground.cli import main
    monkeypatch.setitem(download.SOURCES, "alice", source(server + "/ok"))
    tiny = ["--layers", "1", "--heads", "1", "--width", "8", "--block", "8", "--batch", "4",
            "--steps", "3", "--threads", "1", "--quiet"]
    assert main(["train", "--builtin", "alice", "--no-download", *tiny]) == 2
    assert "drop --no-download" in capsys.readouterr().err
    assert main(["train", "--builtin", "alice", *tiny]) == 0
    err = capsys.readouterr().err
    assert "downloading:" in err and "completed at step 3" in err
