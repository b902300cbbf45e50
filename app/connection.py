"""The HTTP connection under `python -m app`: uvicorn's httptools protocol, with a deadline and a size limit
on each request's head (request line and headers).

uvicorn arms no timer while a head arrives: its keep-alive timer stops at a request's first byte and restarts only
after the response, and nothing runs between accepting a connection and its first byte. A client sending its
headers a byte at a time, or nothing at all, would hold the connection for ever; and httptools buffers a header
of any length. The body's limits are the app's (app/limits.py): by then the request has a path and a dialect.

This leans on uvicorn's httptools protocol beyond its documented surface (`uvicorn.run(http=<a class>)` is the
documented part). The subclass uses its attributes `transport`, `loop`, `url`, `headers` and `app` (the ASGI app
it starts for each request), and overrides the httptools parser callbacks `on_message_begin` and
`on_headers_complete` besides asyncio's `connection_made`, `data_received` and `connection_lost`: the only places
a head's bytes and its end can be seen. Swapping `app` for one request answers it without the app, as uvicorn
itself does for `limit_concurrency`. On a uvicorn upgrade, check that those names still exist with the same
meaning (httptools_impl.py) and run tests/test_app_connection.py, which drives a real uvicorn.
"""

from __future__ import annotations

import asyncio
import functools
from http import HTTPStatus

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import ServerSettings

# As nginx's default large_client_header_buffers (4 x 8k) allows, with room: ample for any client of this API.
MAX_HEAD_BYTES = 65_536
# The answer to a head over MAX_HEAD_BYTES, whichever way it is sent.
HEAD_TOO_LARGE_STATUS = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
HEAD_TOO_LARGE_BODY = b"The request head is too large.\n"
HEAD_TOO_LARGE_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(HEAD_TOO_LARGE_BODY)).encode("ascii")),
    (b"connection", b"close"),
]


def raw_response(status: HTTPStatus, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """An HTTP/1.1 answer as bytes on the wire, for a connection whose head never completed (no ASGI request)."""
    lines = [f"HTTP/1.1 {status.value} {status.phrase}".encode("ascii")]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join([*lines, b"", body])


HEAD_TOO_LARGE = raw_response(HEAD_TOO_LARGE_STATUS, HEAD_TOO_LARGE_HEADERS, HEAD_TOO_LARGE_BODY)


async def head_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    """The same answer as HEAD_TOO_LARGE, as an ASGI app: for a head that did complete."""
    await send(
        {"type": "http.response.start", "status": HEAD_TOO_LARGE_STATUS.value, "headers": HEAD_TOO_LARGE_HEADERS}
    )
    await send({"type": "http.response.body", "body": HEAD_TOO_LARGE_BODY})


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
