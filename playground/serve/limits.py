"""A request body larger than the server allows is refused with 413 before it is read whole:
by its Content-Length when it gives one, else as soon as the bytes that arrived pass the limit."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException


class BodyLimit:
    """Pure ASGI middleware: it sees the body as it streams in, before anything parses it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.message = f"the request body is larger than this server's limit of {max_bytes:,} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            body = json.dumps({"error": {"message": self.message, "type": "invalid_request_error",
                                         "param": None, "code": "request_too_large"}}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # the app's error handler answers 413
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)
