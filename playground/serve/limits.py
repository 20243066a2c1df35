"""What a request must pass before anything reads its body: the API key (401 before a byte of
the body is read), the body's size (413 by its Content-Length when it gives one, else as soon as
the bytes that arrived pass the limit) and the time it may take to send it (408)."""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from playground.serve.openai_shapes import APIError

TOO_LARGE = "request_too_large"   # one code for both ways a body is found too large


async def answer(send, exc: APIError) -> None:
    """Send an APIError as the whole response (from a middleware, before the app runs)."""
    body = json.dumps(exc.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class KeyCheck:
    """Pure ASGI middleware: with keys set, /v1/ requests need one of them ('Authorization:
    Bearer KEY', compared in constant time); others (/health, /metrics, CORS preflights) don't."""

    def __init__(self, app, keys: tuple[str, ...]):
        self.app, self.keys = app, tuple(k.encode() for k in keys)

    async def __call__(self, scope, receive, send):
        if (self.keys and scope["type"] == "http" and scope["path"].startswith("/v1/")
                and scope["method"] != "OPTIONS"):
            refused = self.refusal(dict(scope.get("headers") or []).get(b"authorization", b""))
            if refused is not None:
                return await answer(send, refused)
        return await self.app(scope, receive, send)

    def refusal(self, header: bytes):
        given = header.removeprefix(b"Bearer ").strip()
        if not given:
            return APIError(401, "no API key: send it as 'Authorization: Bearer KEY'", "authentication_error",
                            code="invalid_api_key")
        matched = False
        for key in self.keys:  # every key is compared, so timing tells nothing about which
            matched |= hmac.compare_digest(given, key)
        if not matched:
            return APIError(401, "the API key is not valid", "authentication_error", code="invalid_api_key")
        return None


class BodyLimit:
    """Pure ASGI middleware: it sees the body as it streams in, before anything parses it; the
    whole body must arrive within read_timeout_s of the request's head."""

    def __init__(self, app, max_bytes: int, read_timeout_s: float = 30.0):
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s
        self.message = f"the request body is larger than this server's limit of {max_bytes:,} bytes"

    def too_large(self) -> APIError:
        return APIError(413, self.message, code=TOO_LARGE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await answer(send, self.too_large())
        seen, complete = 0, False
        deadline = time.monotonic() + self.read_timeout_s

        async def counted():
            nonlocal seen, complete
            if complete:  # the body is in: what follows is the client hanging up, whenever it does
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                # (no Connection: close: closing on bytes still arriving would reset the connection
                # before the client reads the answer; the rest of the body is read and dropped, and
                # the connection closes when no next request's head follows in time)
                raise APIError(408, f"the request body did not arrive within {self.read_timeout_s:g} s",
                               code="request_timeout") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:  # the app's handler answers, in the same words
                    raise self.too_large()
            return message

        await self.app(scope, counted, send)
