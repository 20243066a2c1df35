"""Turning the engine's pieces into answers: a stream of server-sent events (each piece as it
is made, then a usage chunk when asked, then [DONE]) or one JSON answer. A request of n choices
is n jobs decoded together; their events arrive as (choice index, event). A client that hangs
up cancels its jobs: the engine drops them at its next step, or from its queue at once."""

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
            logprobs: bool = False, index: int = 0) -> dict:
    if chat:
        delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
        lp = shapes.chat_logprobs(list(tokens)) if logprobs and tokens else None
        return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}
    lp = shapes.completion_logprobs(list(tokens), offset) if logprobs and tokens else None
    return {"index": index, "text": text, "logprobs": lp, "finish_reason": reason}


class _Chunks:
    """The stream's chunks for one request: its id, model and kind, and the common chunk (a
    piece of text, nothing else) from a template per choice, so only the text is encoded."""

    def __init__(self, served, chat: bool):
        self.chat = chat
        self.kind, prefix = _kind(chat, chunk=True)
        self.rid, self.model = shapes.new_id(prefix), served.settings.model_name
        self.templates: dict[int, str] = {}

    def chunk(self, **fields) -> str:
        return shapes.sse(shapes.envelope(self.kind, self.rid, self.model, **fields))

    def choice(self, index: int, *args, **kwargs) -> str:
        return self.chunk(choices=[_choice(self.chat, *args, index=index, **kwargs)])

    def text(self, index: int, text: str) -> str:
        if index not in self.templates:
            marker = "\u0000text\u0000"
            template = self.choice(index, marker, (), 0)
            self.templates[index] = template.replace("{", "{{").replace("}", "}}").replace(json.dumps(marker), "{}")
        return self.templates[index].format(json.dumps(text))


async def streamed(served, body, jobs: list, queue: asyncio.Queue, prompt: str, chat: bool):
    """SSE lines: each choice's pieces as the engine makes them; no buffering on the way."""
    out = _Chunks(served, chat)
    wants_logprobs = jobs[0].logprobs is not None
    offsets, done, finished = [0] * len(jobs), [None] * len(jobs), False
    try:
        echo = prompt if (not chat and body.echo) else ""
        if chat or echo:  # chat opens with the role; echo opens with the prompt
            for index in range(len(jobs)):
                yield out.choice(index, echo, (), 0, first=True)
                offsets[index] = len(echo)
        def flush(index: int, pieces: list) -> str:
            text = "".join(p.text for p in pieces)
            at, offsets[index] = offsets[index], offsets[index] + len(text)
            if wants_logprobs:
                return out.choice(index, text, tuple(t for p in pieces for t in p.tokens), at, logprobs=True)
            return out.text(index, text)

        while True:
            events = [await queue.get()]
            while not queue.empty():  # with what else is ready: a busy server sends fewer chunks
                events.append(queue.get_nowait())
            held: dict[int, list] = {}  # each choice's pieces of this batch, sent as one chunk
            for index, event in events:
                if isinstance(event, Piece):
                    held.setdefault(index, []).append(event)
                    continue
                if index in held:  # its last pieces go out before its end
                    yield flush(index, held.pop(index))
                if event.reason == "error":
                    yield shapes.sse(shapes.error(event.message, "server_error"))
                    yield shapes.sse("[DONE]")
                    return
                done[index] = event
                yield out.choice(index, "", (), offsets[index], event.reason)
            for index, pieces in held.items():
                yield flush(index, pieces)
            if all(done):
                finished = True
                if body.include_usage:
                    yield out.chunk(choices=[], usage=_usage(done))
                yield shapes.sse("[DONE]")
                return
    finally:
        if not finished:  # the client went away (or a choice failed): stop generating for it
            served.engine.cancel(*jobs)


async def whole(served, request, body, jobs: list, queue: asyncio.Queue, prompt: str, chat: bool,
                headers: dict) -> JSONResponse:
    """One JSON answer once every choice ends; a client that hangs up meanwhile cancels them."""
    texts, tokens = [[] for _ in jobs], [[] for _ in jobs]
    done: list = [None] * len(jobs)

    async def collect() -> None:
        while not all(done):
            index, event = await queue.get()
            if isinstance(event, Finished):
                done[index] = event
            else:
                texts[index].append(event.text)
                tokens[index].extend(event.tokens)

    task = asyncio.ensure_future(collect())
    hangup = asyncio.ensure_future(_hung_up(request))
    try:
        await asyncio.wait({task, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        if not task.done():  # the client went away (or this handler was cancelled)
            served.engine.cancel(*jobs)
            task.cancel()
    if not task.done() or task.cancelled():
        return JSONResponse(shapes.error("the client closed the connection"), status_code=499)
    failed = next((d for d in done if d.reason == "error"), None)
    if failed is not None:
        return JSONResponse(shapes.error(failed.message, "server_error"), status_code=500)
    kind, prefix = _kind(chat, chunk=False)
    wants = jobs[0].logprobs is not None
    echo = prompt if (not chat and body.echo) else ""
    choices = []
    for index, (pieces, toks, end) in enumerate(zip(texts, tokens, done)):
        text = "".join(pieces)
        if chat:
            choices.append({"index": index, "message": {"role": "assistant", "content": text},
                            "logprobs": shapes.chat_logprobs(toks) if wants else None, "finish_reason": end.reason})
        else:
            choices.append({"index": index, "text": echo + text, "finish_reason": end.reason,
                            "logprobs": shapes.completion_logprobs(toks, len(echo)) if wants else None})
    answer = shapes.envelope(kind, shapes.new_id(prefix), served.settings.model_name, choices=choices,
                             usage=_usage(done))
    return JSONResponse(answer, headers=headers)


async def _hung_up(request) -> None:
    """Returns once the client has closed the connection (the server's receive() says so the
    moment it happens: no polling)."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # the connection cannot be read any more: as good as gone
        return


def _usage(done: list) -> dict:
    """The prompt is counted once, every choice's tokens are counted."""
    return shapes.usage(done[0].prompt_tokens, sum(d.completion_tokens for d in done))
