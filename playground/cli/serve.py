"""`python -m playground serve CKPT`: listen on 127.0.0.1 (by default), load the model in the
background (/health answers 503 until it is in), serve until SIGTERM or Ctrl+C, then let the
requests in flight finish and exit 0."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from playground.cli.common import positive
from playground.engine.errors import ConfigError

KEY_ENV = "PLAYGROUND_API_KEY"  # one key, or several separated by commas


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0 picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range: use 0 to 65535 (0 picks a free one)")
    return value


def add_arguments(s) -> None:
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                                                         "computer only)")
    s.add_argument("--port", type=port, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--model-name", help="the model's id in the API (default: the file's name)")
    s.add_argument("--api-key", action="append", metavar="KEY",
                   help=f"require this key (repeat for several; also ${KEY_ENV})")
    s.add_argument("--cors-origin", action="append", metavar="URL",
                   help="allow browser pages from this origin (repeat; CORS is off without it)")
    s.add_argument("--max-concurrent", type=int, default=8, help="requests generated at once (default 8)")
    s.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting beyond those decoded (0: none wait); more get 503 (default 64)")
    s.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens accepted")
    s.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body accepted")
    s.add_argument("--idle-timeout", type=positive, default=5.0, metavar="S",
                   help="close a connection with no request in flight after S seconds (default 5)")
    s.add_argument("--read-timeout", type=positive, default=30.0, metavar="S",
                   help="a request's head, then its body, must arrive within S seconds; "
                        "else the connection closes, or 408 (default 30)")
    s.add_argument("--no-batch", action="store_true",
                   help="decode requests one by one instead of in one batched step (to compare)")
    s.add_argument("--int8", action="store_true",
                   help="8-bit weights for each new token (x86 CPUs): 1.4x faster on a model of GPT-2 "
                        "small's size, log-probabilities within about 0.1 of float32's")


def served_for(args):
    from playground.serve.api import Served, Settings
    keys = tuple(args.api_key or ()) + tuple(k.strip() for k in os.environ.get(KEY_ENV, "").split(",") if k.strip())
    for name, value, low in [("--max-concurrent", args.max_concurrent, 1), ("--max-queue", args.max_queue, 0),
                             ("--max-tokens-limit", args.max_tokens_limit, 1),
                             ("--max-body-bytes", args.max_body_bytes, 1024)]:
        if value < low:
            raise ConfigError(f"{name} {value} is too small: use {low} or more")
    path = Path(args.checkpoint)  # (a folder's name is its model's: "gpt2-v1.5", not "gpt2-v1"; "." too)
    settings = Settings(model_name=args.model_name or (path.resolve().name if path.is_dir() else path.stem), api_keys=keys,
                        cors_origins=tuple(args.cors_origin or ()), max_tokens_limit=args.max_tokens_limit,
                        max_body_bytes=args.max_body_bytes, idle_timeout_s=args.idle_timeout,
                        read_timeout_s=args.read_timeout)
    return Served(settings)


def run(args) -> int:
    try:
        import uvicorn  # noqa: F401  (the serve extra: say so before anything else)

        from playground.serve.lifecycle import DRAIN_S, Server, attach_model, listen
    except ImportError as exc:
        raise ConfigError(f"serving needs the serve extra ({exc.name} is missing): "
                          "pip install 'gpt-playground-studio[serve]'") from None
    from playground.engine.model import checkpoint
    from playground.engine.model.generation import weights_refusal
    checkpoint.check_path(Path(args.checkpoint))  # a missing or broken model fails now, not later
    served = served_for(args)
    server = Server(served, listen(args.host, args.port), DRAIN_S)
    failure = []

    def load() -> None:
        try:
            ckpt = checkpoint.load(args.checkpoint, with_optimizer=False)
            ckpt.model.requires_grad_(False)  # served, never trained: the cached step may keep copies
            weights = "int8" if args.int8 else "float32"
            refusal = weights_refusal(ckpt.model, weights)
            if refusal:
                raise ConfigError(refusal)
            attach_model(served, ckpt.model, ckpt.tokenizer, ckpt.state.get("start_char"),
                         args.max_concurrent, args.max_queue, batched=not args.no_batch, weights=weights)
            if served.problem:  # served all the same: /health says why every request gets 503
                print(f"warning: the model cannot write text: {served.problem}", file=sys.stderr, flush=True)
        except Exception as exc:  # reported below; the server stops
            failure.append(exc)
            server.server.should_exit = True

    loader = threading.Thread(target=load, name="serve-load", daemon=True)
    loader.start()
    print(f"serving {served.settings.model_name!r} on {server.url}/v1 "
          f"(OpenAI-compatible; Ctrl+C stops after the requests in flight)", file=sys.stderr, flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        # uvicorn catches these to drain, then raises them again once it has: by then the
        # requests are done, and a stop asked for is a clean exit (0), not a death by signal
        signal.signal(sig, _already_drained)
    server.run()
    if failure:
        raise failure[0]
    if loader.is_alive():
        # stopped while the model loads: torch's work on that thread cannot be interrupted, and
        # the interpreter's exit beside it aborted ("terminate called without an active
        # exception", exit 134); nothing was served, so nothing is left to finish
        print("stopped before the model had loaded", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)
    return 0


def _already_drained(signum, frame) -> None:
    pass
