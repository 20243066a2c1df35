"""The serve rows of the bench: N = 1, 2, 4, 8, 16 concurrent streaming clients of 300 characters
each against `python -m playground serve` in its own process, on 127.0.0.1: completed requests,
errors, time to first token and between tokens (p50, p99), and aggregate characters per second
against one stream. The clients are plain asyncio streams in this process. And the keep-alive
row: one-token requests one after another on one connection, as the openai client sends them."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHARS = 300
CONCURRENCY = (1, 2, 4, 8, 16)
GOAL_RATIO, GOAL_TTFT_MS = 3.0, 100.0
KEEP_ALIVE_REQUESTS, GOAL_KEEP_ALIVE_MS = 50, 20.0  # Nagle + a delayed ACK alone cost ~40 ms


def _model(position: str, folder: Path) -> Path:
    """A Shakespeare-size model (4 x 128, block 64, 65 characters); random weights decode at
    the same speed as trained ones."""
    import torch

    from playground.engine.config import ModelConfig
    from playground.engine.data.tokenizer import CharTokenizer
    from playground.engine.model import checkpoint
    from playground.engine.model.gpt import GPT
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128, block_size=64, position=position))
    tok = CharTokenizer(["\n"] + [chr(32 + i) for i in range(64)])
    return checkpoint.save(folder / position, checkpoint.Checkpoint(model, tok, None, {"start_char": "\n"}))


async def _stream(port: int, seed: int) -> dict:
    """One streaming completion over HTTP/1.0 (the body then simply runs to the close)."""
    body = json.dumps({"model": "m", "prompt": "ROMEO:\n", "max_tokens": CHARS, "temperature": 1.0,
                       "seed": seed, "stream": True}).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status = (await reader.readline()).split()[1]
    arrivals, chars = [], 0
    while line := await reader.readline():  # only the text field is decoded: the load stays light
        at = line.find(b'"text": "')
        if at > 0 and line[at + 9:at + 10] != b'"':
            end = line.index(b'", "logprobs"', at)
            chars += len(json.loads(line[at + 8:end + 1]))
            arrivals.append(time.perf_counter())
    writer.close()
    return {"ok": status == b"200" and chars == CHARS, "chars": chars,
            "ttft": (arrivals[0] - t0) if arrivals else None,
            "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])]}


async def _load(port: int, n: int) -> dict:
    t0 = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*[_stream(port, seed) for seed in range(n)]), timeout=600)
    wall = time.perf_counter() - t0
    ttft = sorted(r["ttft"] * 1000 for r in results if r["ttft"] is not None)
    gaps = sorted(g * 1000 for r in results for g in r["gaps"])
    pick = lambda xs, q: xs[min(int(q * len(xs)), len(xs) - 1)] if xs else float("nan")  # noqa: E731
    return {"n": n, "completed": sum(r["ok"] for r in results), "errors": sum(not r["ok"] for r in results),
            "chars_per_s": sum(r["chars"] for r in results) / wall, "ttft_p50_ms": pick(ttft, 0.5),
            "ttft_p99_ms": pick(ttft, 0.99), "tbt_p50_ms": pick(gaps, 0.5), "tbt_p99_ms": pick(gaps, 0.99)}


def keep_alive_ms(port: int, requests: int = KEEP_ALIVE_REQUESTS) -> list[float]:
    """Each one-token completion's round trip on one kept-alive connection (after one to warm up)."""
    body = json.dumps({"model": "m", "prompt": "ROMEO:\n", "max_tokens": 1, "temperature": 0})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    try:
        for _ in range(requests + 1):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            reply = conn.getresponse()
            ok = reply.status == 200 and json.loads(reply.read())["usage"]["completion_tokens"] == 1
            if not ok:
                raise RuntimeError(f"a one-token request failed ({reply.status})")
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return times[1:]


def _serve(ckpt: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "playground", "serve", str(ckpt), "--port", "0",
                             "--model-name", "m", "--max-concurrent", "16", *extra], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(root)})
    port = int(re.search(r":(\d+)/v1", proc.stderr.readline()).group(1))
    import urllib.request
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    return proc, port


def measure(position: str, quick: bool, batched: bool = True) -> tuple[list[dict], list[float], list[float]]:
    """Every N once for the table; then one stream and eight, alternated (this machine's speed
    drifts), for the ratio: the median of the pairs' ratios; then the keep-alive round trips."""
    with tempfile.TemporaryDirectory() as folder:
        proc, port = _serve(_model(position, Path(folder)), [] if batched else ["--no-batch"])
        try:
            asyncio.run(_load(port, 1))  # warm-up
            loads = [asyncio.run(_load(port, n)) for n in (CONCURRENCY[:3] if quick else CONCURRENCY)]
            pairs = []
            for _ in range(1 if quick else 5):
                one, eight = asyncio.run(_load(port, 1)), asyncio.run(_load(port, 8))
                pairs.append(eight["chars_per_s"] / one["chars_per_s"])
            return loads, pairs, keep_alive_ms(port, 10 if quick else KEEP_ALIVE_REQUESTS)
        finally:
            proc.terminate()
            proc.wait(60)


def rows(quick: bool) -> list[dict]:
    out = []
    for position in ("rope", "learned"):
        loads, pairs, round_trips = measure(position, quick)
        at8 = next((x for x in loads if x["n"] == 8), loads[-1])
        ratio = statistics.median(pairs)
        table = "; ".join(f"N={x['n']}: {x['chars_per_s']:,.0f} chars/s, TTFT p50/p99 {x['ttft_p50_ms']:.0f}/"
                          f"{x['ttft_p99_ms']:.0f} ms, TBT p50/p99 {x['tbt_p50_ms']:.1f}/{x['tbt_p99_ms']:.1f} ms, "
                          f"{x['completed']} ok, {x['errors']} errors" for x in loads)
        goal = position == "rope"
        passed = (ratio >= GOAL_RATIO and at8["ttft_p99_ms"] < GOAL_TTFT_MS and
                  all(x["errors"] == 0 for x in loads)) if goal and not quick else None
        out.append({
            "name": f"serve_{position}",
            "target": (f"8 streams >= {GOAL_RATIO:g}x one stream's chars/s, p99 TTFT < {GOAL_TTFT_MS:g} ms at 8"
                       if goal else "informational: the learned-position default"),
            "measured": f"8 streams = {ratio:.2f}x one stream's chars/s (median of {len(pairs)} alternated "
                        f"pairs: {', '.join(f'{r:.2f}' for r in pairs)}); p99 TTFT at 8: {at8['ttft_p99_ms']:.0f} ms",
            "reference": table, "passed": passed, "details": {"loads": loads, "ratio_8": ratio, "pairs": pairs}})
        if position == "rope":
            out.append(keep_alive_row(round_trips, quick))
    return out


def keep_alive_row(round_trips: list[float], quick: bool) -> dict:
    ordered = sorted(round_trips)
    median, p90 = statistics.median(ordered), ordered[min(int(0.9 * len(ordered)), len(ordered) - 1)]
    return {"name": "serve_keepalive",
            "target": f"median 1-token request on a kept-alive connection < {GOAL_KEEP_ALIVE_MS:g} ms",
            "measured": f"median {median:.1f} ms, p90 {p90:.1f} ms ({len(ordered)} requests, one connection)",
            "reference": "Nagle's algorithm with the client's delayed ACK adds ~40 ms to each; TCP_NODELAY "
                         "(the listening socket made as IPPROTO_TCP) removes it",
            "passed": None if quick else median < GOAL_KEEP_ALIVE_MS,
            "details": {"ms": round_trips}}


if __name__ == "__main__":
    print(json.dumps(rows("--quick" in sys.argv), indent=2))
    sys.exit(0)
