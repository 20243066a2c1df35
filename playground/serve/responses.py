"""Turning the engine's pieces into answers: a stream of server-sent events (each piece as it
is made, then a usage chunk when asked, then [DONE]) or one JSON answer. A client that hangs
up cancels its job: the engine drops it at its next step."""

from __future__ import annotations

import asyncio
import json

from fastapi.responses import JSONResponse

from playground.serve import openai_shapes as shapes
from playground.serve.scheduler import Finished, Piece


def _kind(chat: bool, chunk: bool) -> tuple[str, str]:
    if chat:
        return ("chat.completion.chunk" if chunk else "chat.completion"), "chatcmpl"
    return "text_completion", "cmpl"


def _choice(chat: bool, text: str, tokens: tuple, offset: int, reason=None, first: bool = False,
            logprobs: bool = False) -> dict:
    if chat:
        delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
        lp = shapes.chat_logprobs(list(tokens)) if logprobs and tokens else None
        return {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": reason}
    lp = shapes.completion_logprobs(list(tokens), offset) if logprobs and tokens else None
    return {"index": 0, "text": text, "logprobs": lp, "finish_reason": reason}


async def streamed(served, body, job, queue: asyncio.Queue, prompt: str, chat: bool):
    """SSE lines: a piece per chunk as the engine makes it; no buffering on the way."""
    kind, prefix = _kind(chat, chunk=True)
    rid, model = shapes.new_id(prefix), served.settings.model_name
    wants_logprobs = job.logprobs is not None
    offset, finished = 0, False
    marker = "\u0000text\u0000"
    template = shapes.sse(shapes.envelope(kind, rid, model, choices=[_choice(chat, marker, (), 0)]))
    template = template.replace("{", "{{").replace("}", "}}").replace(json.dumps(marker), "{}")
    try:
        echo = prompt if (not chat and body.echo) else ""
        if chat or echo:  # chat opens with the role; echo opens with the prompt
            yield shapes.sse(shapes.envelope(kind, rid, model, choices=[_choice(chat, echo, (), 0, first=True)]))
            offset = len(echo)
        while True:
            events = [await queue.get()]
            while not queue.empty():  # with what else is ready: a busy server sends fewer chunks
                events.append(queue.get_nowait())
            pieces = [e for e in events if isinstance(e, Piece)]
            if pieces:
                text = "".join(p.text for p in pieces)
                if wants_logprobs:
                    tokens = tuple(t for p in pieces for t in p.tokens)
                    yield shapes.sse(shapes.envelope(kind, rid, model, choices=[
                        _choice(chat, text, tokens, offset, logprobs=True)]))
                else:  # the common chunk: only its text changes, so only the text is encoded
                    yield template.format(json.dumps(text))
                offset += len(text)
            event = events[-1]
            if not isinstance(event, Finished):
                continue
            finished = True
            if event.reason == "error":
                yield shapes.sse(shapes.error(event.message, "server_error"))
            else:
                yield shapes.sse(shapes.envelope(kind, rid, model,
                                                 choices=[_choice(chat, "", (), offset, event.reason)]))
                if body.include_usage:
                    yield shapes.sse(shapes.envelope(kind, rid, model, choices=[],
                                                     usage=shapes.usage(event.prompt_tokens, event.completion_tokens)))
            yield shapes.sse("[DONE]")
            return
    finally:
        if not finished:  # the client went away: stop generating for it
            job.cancelled.set()


async def whole(served, request, body, job, queue: asyncio.Queue, prompt: str, chat: bool):
    """One JSON answer once the job ends; a client that hangs up meanwhile cancels it."""
    pieces, tokens = [], []

    async def collect() -> Finished:
        while True:
            event = await queue.get()
            if isinstance(event, Finished):
                return event
            pieces.append(event.text)
            tokens.extend(event.tokens)

    task = asyncio.ensure_future(collect())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and await request.is_disconnected():
                job.cancelled.set()
                task.cancel()
                return JSONResponse(shapes.error("the client closed the connection"), status_code=499)
    finally:
        if not task.done():
            job.cancelled.set()
            task.cancel()
    done = task.result()
    if done.reason == "error":
        return JSONResponse(shapes.error(done.message, "server_error"), status_code=500)
    kind, prefix = _kind(chat, chunk=False)
    text = "".join(pieces)
    wants = job.logprobs is not None
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": shapes.chat_logprobs(tokens) if wants else None, "finish_reason": done.reason}
    else:
        echo = prompt if body.echo else ""
        choice = {"index": 0, "text": echo + text, "finish_reason": done.reason,
                  "logprobs": shapes.completion_logprobs(tokens, len(echo)) if wants else None}
    return shapes.envelope(kind, shapes.new_id(prefix), served.settings.model_name, choices=[choice],
                           usage=shapes.usage(done.prompt_tokens, done.completion_tokens))
