"""The HTTP API (FastAPI): /v1/completions and /v1/chat/completions (streamed as server-sent
events or whole), /v1/models, /health and /metrics. Errors keep OpenAI's JSON shape; the event
loop only passes characters along: prompts are tokenised on a worker thread, the Engine thread
makes the text."""

from __future__ import annotations

import asyncio
import collections
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
from playground.serve.limits import BodyLimit, KeyCheck
from playground.serve.metrics import Metrics
from playground.serve.openai_shapes import APIError, ChatRequest, CompletionRequest, error, ignored_header
from playground.serve.scheduler import Finished, Job, Piece

log = logging.getLogger(__name__)
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32


@dataclass
class Settings:
    model_name: str = "gpt-playground"
    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_tokens_limit: int = 4096
    max_body_bytes: int = 1_000_000
    idle_timeout_s: float = 5.0    # a connection with no request in flight is closed after this
    read_timeout_s: float = 30.0   # a request's head, then its body, must arrive within this


@dataclass
class Served:
    """What the app serves once the model is loaded (engine is None until then)."""
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    engine: Optional[object] = None
    info: dict = field(default_factory=dict)   # vocabulary size, block size, parameters
    mailbox: Optional["Mailbox"] = None
    problem: str = ""   # why the model cannot write text (its weights are not finite numbers)


def create_app(served: Served) -> FastAPI:
    app = FastAPI(title="GPT Playground", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served
    settings = served.settings
    # outermost last: CORS (preflights need no key), then the key, then the body's size and time
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, read_timeout_s=settings.read_timeout_s)
    app.add_middleware(KeyCheck, keys=settings.api_keys)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"])

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
        if served.problem:
            return JSONResponse({"status": "error", "reason": served.problem}, status_code=503)
        ready = served.engine is not None
        return JSONResponse({"status": "ok" if ready else "loading"}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(served.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        _ready(served)
        return {"object": "list", "data": [_model_entry(served)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        _ready(served)
        if model_id != settings.model_name:
            raise _unknown_model(served, model_id)
        return _model_entry(served)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        _ready(served)
        return await _generate(served, request, body, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        _ready(served)
        return await _generate(served, request, body, chat=True)

    return app


class Contained:
    """Around the app: Starlette raises an unexpected exception again after its handler has
    answered 500, and uvicorn would then close the connection and log the traceback twice.
    Once the answer is whole the exception stops here (it is logged once, by the handler), so
    the client's next request on the connection is served."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        answered = False

        async def watched(message):
            nonlocal answered
            await send(message)
            answered = answered or (message["type"] == "http.response.body" and not message.get("more_body"))

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not answered:
                raise


def _ready(served: Served) -> None:
    """A model that is loaded and can write (the key was checked before the body was read)."""
    if served.problem:
        raise APIError(503, f"this server's model cannot write text: {served.problem}", "server_error",
                       code="model_unusable")
    if served.engine is None:
        raise APIError(503, "the model is still loading; try again in a moment", "server_error",
                       headers={"Retry-After": "1"})


def _model_entry(served: Served) -> dict:
    return {"id": served.settings.model_name, "object": "model", "created": 0, "owned_by": "gpt-playground",
            **served.info}


def _unknown_model(served: Served, name: str) -> APIError:
    return APIError(404, f"the model {name!r} does not exist; this server has {served.settings.model_name!r}",
                    param="model", code="model_not_found")


def _check(served: Served, body, chat: bool) -> int:
    """What can be refused before the prompt is read; returns max_tokens."""
    settings, engine = served.settings, served.engine
    if body.model != settings.model_name:
        raise _unknown_model(served, body.model)
    unsupported = body.unsupported()
    if unsupported:
        raise APIError(400, f"{unsupported} is not supported by this server: leave it out (or send its default)",
                       param=unsupported, code="unsupported_parameter")
    limit = settings.max_tokens_limit
    default = min(256 if chat else 16, limit)  # OpenAI's completion default is 16
    max_tokens = (getattr(body, "max_completion_tokens", None) if chat else None) or body.max_tokens or default
    if max_tokens > limit:
        raise APIError(400, f"max_tokens {max_tokens} is above this server's limit of {limit}",
                       param="max_tokens")
    if body.n > engine.max_concurrent:
        raise APIError(400, f"n {body.n} is more choices than this server decodes at once "
                            f"({engine.max_concurrent}, its --max-concurrent)", param="n")
    return max_tokens


async def _jobs(served: Served, body, chat: bool, emit) -> tuple[list[Job], int]:
    """The engine's jobs for a request, one per choice (emit(i) is choice i's event sink);
    APIError for what it cannot answer. The prompt is tokenised on a worker thread: a long
    prompt must not stall the streams in flight."""
    from playground.engine.model.generation import prepare_prompt
    max_tokens = _check(served, body, chat)
    try:
        ids = (await asyncio.to_thread(prepare_prompt, served.engine.tokenizer, body.prompt)).ids
    except PromptError as exc:
        raise APIError(400, str(exc), param="messages" if chat else "prompt") from None
    logprobs = ((body.top_logprobs or 0) if body.logprobs else None) if chat else body.logprobs
    # choice i draws with seed + i, so a seeded request of n choices is reproducible
    seeds = [(body.seed + i) % 2**63 if body.seed is not None else secrets.randbits(62) for i in range(body.n)]
    # a top_p below float32's smallest normal number reads as 0 in the engine's float32 arithmetic,
    # which keeps nothing; any top_p up to the likeliest token's probability keeps just that one
    top_p = max(body.top_p, FLOAT32_TINY)
    return [Job(list(ids), max_tokens, SampleConfig(max_new_chars=max_tokens, temperature=body.temperature,
                                                   top_k=max(body.top_k, 0), top_p=top_p, seed=seed),
                emit(i), tuple(body.stop or ()), logprobs) for i, seed in enumerate(seeds)], len(ids)


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


async def _generate(served: Served, request: Request, body, chat: bool):
    queue: asyncio.Queue = asyncio.Queue()
    mailbox = _mailbox(served)
    jobs, prompt_tokens = await _jobs(served, body, chat,
                                      lambda i: lambda event: mailbox.post(queue, (i, event)))
    if not served.engine.submit(*jobs):
        served.metrics.rejected.inc()
        raise APIError(503, "the server is busy (its queue is full); try again shortly", "server_error",
                       headers={"Retry-After": "1"})
    served.metrics.prompt_tokens.inc(prompt_tokens * len(jobs))
    ignored = body.ignored()
    headers = {"X-Ignored-Fields": ignored_header(ignored)} if ignored else {}
    from playground.serve.responses import streamed, whole
    if body.stream:
        return StreamingResponse(streamed(served, body, jobs, queue, body.prompt, chat),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})
    return await whole(served, request, body, jobs, queue, body.prompt, chat, headers)


__all__ = ["APIError", "Contained", "Finished", "Piece", "Served", "Settings", "create_app"]
