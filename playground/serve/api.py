"""The HTTP API (FastAPI): /v1/completions and /v1/chat/completions (streamed as server-sent
events or whole), /v1/models, /health and /metrics. Errors keep OpenAI's JSON shape; the event
loop only passes characters along, the Engine thread makes them."""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from playground.engine.config import SampleConfig
from playground.engine.errors import PromptError
from playground.serve.limits import BodyLimit
from playground.serve.metrics import Metrics
from playground.serve.openai_shapes import ChatRequest, CompletionRequest, error
from playground.serve.scheduler import Finished, Job, Piece

log = logging.getLogger(__name__)


@dataclass
class Settings:
    model_name: str = "gpt-playground"
    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_tokens_limit: int = 4096
    max_body_bytes: int = 1_000_000


@dataclass
class Served:
    """What the app serves once the model is loaded (engine is None until then)."""
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    engine: Optional[object] = None
    info: dict = field(default_factory=dict)   # vocabulary size, block size, parameters
    mailbox: Optional["Mailbox"] = None


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.body, self.headers = status, error(message, kind, param, code), headers


def create_app(served: Served) -> FastAPI:
    app = FastAPI(title="GPT Playground", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served
    if served.settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(served.settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"])
    app.add_middleware(BodyLimit, max_bytes=served.settings.max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return JSONResponse(error("the request body is not valid JSON"), status_code=400)
        message = f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid value')}"
        return JSONResponse(error(message, param=where[0] if where else None), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # never a traceback to the client
        log.exception("request failed")
        return JSONResponse(error(f"the server failed: {type(exc).__name__}", "server_error"), status_code=500)

    @app.get("/health")
    async def health():
        ready = served.engine is not None
        return JSONResponse({"status": "ok" if ready else "loading"}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(served.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request):
        _ready(served, request)
        entry = {"id": served.settings.model_name, "object": "model", "created": 0,
                 "owned_by": "gpt-playground", **served.info}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        _ready(served, request)
        return await _generate(served, request, body, body.prompt, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        _ready(served, request)
        return await _generate(served, request, body, body.prompt, chat=True)

    return app


def _ready(served: Served, request: Request) -> None:
    """The key, when keys are set (compared in constant time), and a loaded model."""
    keys = served.settings.api_keys
    if keys:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        matched = False
        for key in keys:  # every key is compared, so timing tells nothing about which
            matched |= hmac.compare_digest(given.encode(), key.encode())
        if not given:
            raise APIError(401, "no API key: send it as 'Authorization: Bearer KEY'", "authentication_error",
                           code="invalid_api_key")
        if not matched:
            raise APIError(401, "the API key is not valid", "authentication_error", code="invalid_api_key")
    if served.engine is None:
        raise APIError(503, "the model is still loading; try again in a moment", "server_error",
                       headers={"Retry-After": "1"})


def _job(served: Served, body, prompt: str, chat: bool, emit) -> tuple[Job, int]:
    """The engine's job for a request; APIError for what it cannot answer."""
    from playground.engine.model.generation import prepare_prompt
    settings, engine = served.settings, served.engine
    if body.model != settings.model_name:
        raise APIError(404, f"the model {body.model!r} does not exist; this server has "
                            f"{settings.model_name!r}", param="model", code="model_not_found")
    limit = settings.max_tokens_limit
    default = min(256 if chat else 16, limit)  # OpenAI's completion default is 16
    max_tokens = (getattr(body, "max_completion_tokens", None) if chat else None) or body.max_tokens or default
    if max_tokens > limit:
        raise APIError(400, f"max_tokens {max_tokens} is above this server's limit of {limit}",
                       param="max_tokens")
    try:
        ids = prepare_prompt(engine.tokenizer, prompt).ids
    except PromptError as exc:
        raise APIError(400, str(exc), param="messages" if chat else "prompt") from None
    if chat:
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
    else:
        logprobs = body.logprobs
    config = SampleConfig(max_new_chars=max_tokens, temperature=body.temperature,
                          top_k=max(body.top_k, 0), top_p=body.top_p,
                          seed=body.seed if body.seed is not None else secrets.randbits(62))
    job = Job(list(ids), max_tokens, config, emit, tuple(body.stop or ()), logprobs)
    return job, len(ids)


class Mailbox:
    """Hands the engine thread's events to the event loop's queues with one wake-up for
    whatever is waiting, not one per token per request (a busy server's GIL has better uses)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.waiting, self.scheduled = loop, collections.deque(), False

    def post(self, queue: asyncio.Queue, event) -> None:  # on the engine thread
        self.waiting.append((queue, event))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:  # on the event loop
        self.scheduled = False
        while self.waiting:
            queue, event = self.waiting.popleft()
            queue.put_nowait(event)


def _mailbox(served: Served) -> Mailbox:
    loop = asyncio.get_running_loop()
    if served.mailbox is None or served.mailbox.loop is not loop:
        served.mailbox = Mailbox(loop)
    return served.mailbox


async def _generate(served: Served, request: Request, body, prompt: str, chat: bool):
    queue: asyncio.Queue = asyncio.Queue()
    mailbox = _mailbox(served)
    job, prompt_tokens = _job(served, body, prompt, chat, lambda event: mailbox.post(queue, event))
    if not served.engine.submit(job):
        served.metrics.rejected.inc()
        raise APIError(503, "the server is busy (its queue is full); try again shortly", "server_error",
                       headers={"Retry-After": "1"})
    served.metrics.prompt_tokens.inc(prompt_tokens)
    from playground.serve.responses import streamed, whole
    if body.stream:
        return StreamingResponse(streamed(served, body, job, queue, prompt, chat), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await whole(served, request, body, job, queue, prompt, chat)


__all__ = ["APIError", "Finished", "Piece", "Served", "Settings", "create_app"]
