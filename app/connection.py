"""The HTTP connection under `python -m app`: uvicorn's httptools protocol, with a deadline and a size limit
on each request's head (request line and headers).

uvicorn arms no timer while a head arrives: its keep-alive timer stops at a request's first byte and restarts only
after the response, and nothing runs between accepting a connection and its first byte. A client sending its
headers a byte at a time, or nothing at all, would hold the connection for ever; and httptools buffers a header
of any length. The body's limits are the app's (app/limits.py): by then the request has a path and a dialect.
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import ServerSettings

# As nginx's default large_client_header_buffers (4 x 8k) allows, with room: ample for any client of this API.
MAX_HEAD_BYTES = 65_536
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 31\r\nconnection: close\r\n\r\n"
    b"The request head is too large.\n"
)


async def head_too_large(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": b"The request head is too large.\n"})


@functools.cache
def headers_timeout() -> int:
    # The same environment as the one uvicorn.run was called from: worker processes inherit it.
    return ServerSettings.from_env().headers_timeout


class HeadLimitedProtocol(HttpToolsProtocol):
    """Closes a connection whose request head is not complete within HEADERS_TIMEOUT, or is over MAX_HEAD_BYTES."""

    head_deadline: asyncio.TimerHandle | None = None
    head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.head_deadline is None:  # a body, or nothing awaited: not a head's bytes
            return
        self.head_bytes += len(data)
        if self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        if len(self.url) + sum(len(name) + len(value) for name, value in self.headers) <= MAX_HEAD_BYTES:
            super().on_headers_complete()
            return
        # uvicorn's own way to answer without the app (as for limit_concurrency): this request gets a 431 app.
        app, self.app = self.app, head_too_large
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self.head_deadline is None:
            self.head_bytes = 0
            self.head_deadline = self.loop.call_later(headers_timeout(), self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
