"""What one request may cost a worker: its body's size and sending time, and how many run at once.

Pure ASGI middleware: BaseHTTPMiddleware would buffer bodies and cost throughput. An answer made here takes the
error shape of the path's dialect (main.py's ERROR_DIALECTS). The settings are read from the lifespan state, so
they are the ones the app started with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.http import ErrorResponse, error_response_for

Dialects = Sequence[tuple[str, ErrorResponse]]
# Ends the connection after a refusal: the rest of the body is not worth reading.
CLOSE = {"Connection": "close"}


class BodyRefused(Exception):
    """The body went over its size or its time; raised from receive, answered by BodyLimit."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def settings_of(scope: Scope) -> Settings:
    settings: Settings = scope["state"]["settings"]
    return settings


async def refuse(
    scope: Scope, send: Send, dialects: Dialects, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    """Answer in the dialect of the path, without reading the body."""
    response = error_response_for(scope["path"], dialects)(status, detail, headers)
    await response(scope, _nothing_to_receive, send)


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    """MAX_BODY_BYTES and BODY_TIMEOUT: a declared length over the limit is refused before any byte is read;
    a streamed (chunked) body is cut off as it passes the limit (413) or the deadline (408)."""

    def __init__(self, app: ASGIApp, dialects: Dialects) -> None:
        self.app = app
        self.dialects = dialects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = settings_of(scope)
        declared = content_length(scope)
        if declared is not None and declared > settings.body_limit:
            await refuse(scope, send, self.dialects, 413, too_large(declared, settings.body_limit), CLOSE)
            return
        body = LimitedBody(receive, settings)
        try:
            await self.app(scope, body.receive, body.track(send))
        except BodyRefused as refusal:
            if body.answered:
                raise
            await refuse(scope, send, self.dialects, refusal.status, refusal.detail, CLOSE)


def too_large(size: int, limit: int, streamed: bool = False) -> str:
    size_said = f"over {limit} bytes" if streamed else f"{size} bytes"
    return f"The request body is {size_said}; at most MAX_BODY_BYTES={limit} bytes are accepted."


class LimitedBody:
    """One request's receive, counting bytes against the limit and time against the deadline."""

    def __init__(self, receive: Receive, settings: Settings) -> None:
        self._receive = receive
        self.limit = settings.body_limit
        self.timeout = settings.body_timeout
        self.deadline = asyncio.get_running_loop().time() + settings.body_timeout
        self.received = 0
        self.answered = False

    async def receive(self) -> Message:
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            raise BodyRefused(
                408, f"The request body took longer than BODY_TIMEOUT={self.timeout} seconds to arrive."
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise BodyRefused(413, too_large(self.received, self.limit, streamed=True))
        return message

    def track(self, send: Send) -> Send:
        async def tracked(message: Message) -> None:
            self.answered = self.answered or message["type"] == "http.response.start"
            await send(message)

        return tracked


class ConcurrencyLimit:
    """MAX_CONCURRENT_REQUESTS per worker: one more is answered 503 with Retry-After at once, never queued."""

    def __init__(self, app: ASGIApp, dialects: Dialects, exempt: Collection[str]) -> None:
        self.app = app
        self.dialects = dialects
        self.exempt = exempt  # health checks: a busy worker is still alive
        self.active = 0  # one event loop per worker: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        limit = settings_of(scope).max_concurrent_requests
        if self.active >= limit:
            detail = f"The server is busy: MAX_CONCURRENT_REQUESTS={limit} requests are running; retry shortly."
            await refuse(scope, send, self.dialects, 503, detail, {"Retry-After": "1"})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
