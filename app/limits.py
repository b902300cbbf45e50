"""What one request may cost a worker: its body's size and sending time, and how many run at once.

Pure ASGI middleware: BaseHTTPMiddleware would buffer bodies and cost throughput. An answer made here takes the
error shape of the path's dialect, from the Dialects app/main.py hands over. The settings are read from the
lifespan state, so they are the ones the app started with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.error_handlers import Dialects
from app.http import READ_BODY, settings_of

# Ends the connection after a refusal: the rest of the body is not worth reading.
CLOSE = {"Connection": "close"}
RETRY_SHORTLY = {"Retry-After": "1"}


class BodyRefused(Exception):
    """The body went over its size, its time, or the bytes the worker gives to bodies being read."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] = CLOSE) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def body_declared(scope: Scope) -> tuple[bool, int | None]:
    """Whether the request has a body, and the length it declares (None: none declared, or not a number)."""
    has_body, declared = False, None
    for name, value in scope["headers"]:
        if name == b"content-length":
            has_body = has_body or value != b"0"
            if declared is None:
                declared = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            has_body = True
    return has_body, declared


def too_large(size: int, limit: int, streamed: bool = False) -> str:
    size_said = f"over {limit} bytes" if streamed else f"{size} bytes"
    return f"The request body is {size_said}; at most MAX_BODY_BYTES={limit} bytes are accepted."


class BodyLimit:
    """Reads each request's whole body first, under MAX_BODY_BYTES and BODY_TIMEOUT, then passes the request on.

    A declared length over the limit is refused before any byte is read (413); a body is cut off as it passes the
    limit (413) or the deadline (408). Read here, before ConcurrencyLimit counts the request, a body that arrives
    slowly holds no working slot. The bodies being read at once hold at most as many bytes as a full house of
    working requests could, MAX_CONCURRENT_REQUESTS times MAX_BODY_BYTES; a body that would pass it is refused (503).
    """

    def __init__(self, app: ASGIApp, dialects: Dialects) -> None:
        self.app = app
        self.dialects = dialects
        self.held = 0  # bytes of the bodies being read now; one event loop per worker: no lock needed
        self.deadlines = Deadlines()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        has_body, declared = body_declared(scope) if scope["type"] == "http" else (False, None)
        if not has_body:
            await self.app(scope, receive, send)
            return
        settings = settings_of(scope)
        if declared is not None and declared > settings.body_limit:
            await self.dialects.refuse(scope, send, 413, too_large(declared, settings.body_limit), CLOSE)
            return
        try:
            body = await self.read(receive, settings)
        except BodyRefused as refusal:
            await self.dialects.refuse(scope, send, refusal.status, refusal.detail, refusal.headers)
            return
        if body is not None:  # None: the client went away while sending it
            scope[READ_BODY] = body  # for app.http.whole_body: Starlette's stream would pass it once more
            await self.app(scope, replay(body, receive), send)

    async def read(self, receive: Receive, settings: Settings) -> bytes | None:
        limit, budget = settings.body_limit, settings.max_concurrent_requests * settings.body_limit
        chunks: list[bytes] = []
        size = 0
        task = self.deadlines.start(settings.body_timeout)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                self.held += len(chunk)
                if size > limit:
                    raise BodyRefused(413, too_large(size, limit, streamed=True))
                if self.held > budget:
                    raise BodyRefused(503, busy_reading(budget), CLOSE | RETRY_SHORTLY)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        except asyncio.CancelledError:
            if not self.deadlines.passed(task):
                raise  # cancelled from elsewhere: the server stopping, the client gone
            detail = f"The request body took longer than BODY_TIMEOUT={settings.body_timeout} seconds to arrive."
            raise BodyRefused(408, detail) from None
        finally:
            self.deadlines.stop(task)
            self.held -= size


class Deadlines:
    """The bodies being read in one event loop at a time, each with its deadline; one timer for them all.

    asyncio.timeout would arm and disarm a timer of the event loop for every request, a cost that shows at the
    requests per second of a one-record prediction. Here a read only notes its deadline; the one timer cancels the
    reads that are late when it rings, then is armed again at the next deadline.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reading: dict[asyncio.Task[object], float] = {}  # the reads on time so far, with their deadlines
        self.late: set[asyncio.Task[object]] = set()  # the reads cancelled for their deadline
        self.timer: asyncio.TimerHandle | None = None

    def start(self, seconds: float) -> asyncio.Task[object]:
        """Note the current task's deadline, seconds from now; returns the task, for stop() and passed()."""
        # The task of the loop already known, found without asking which loop runs: that question costs a system
        # call (asyncio checks the process ID) that shows at the requests per second of a one-record prediction.
        task = asyncio.current_task(self.loop) if self.loop is not None else None
        if task is None:  # the first read, or one in a new event loop (a test client starts its own)
            self.move_to(asyncio.get_running_loop())
            task = asyncio.current_task(self.loop)
        assert task is not None and self.loop is not None  # an ASGI app runs in a task
        deadline = self.loop.time() + seconds
        self.reading[task] = deadline
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self.ring)
        return task

    def move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget the reads of another event loop (a test client starts one of its own) and serve this one."""
        self.loop, self.reading, self.late, self.timer = loop, {}, set(), None

    def stop(self, task: asyncio.Task[object]) -> None:
        self.reading.pop(task, None)
        self.late.discard(task)

    def passed(self, task: asyncio.Task[object]) -> bool:
        """Whether the task was cancelled for its deadline; if so, the cancellation is taken back."""
        if task not in self.late:
            return False
        task.uncancel()
        return True

    def ring(self) -> None:
        assert self.loop is not None
        now, self.timer = self.loop.time(), None
        for task in [task for task, deadline in self.reading.items() if deadline <= now]:
            del self.reading[task]  # no longer waited for: it is late
            self.late.add(task)
            task.cancel()
        if self.reading:
            self.timer = self.loop.call_at(min(self.reading.values()), self.ring)


def busy_reading(budget: int) -> str:
    return (
        f"The server is busy: the request bodies being read hold MAX_CONCURRENT_REQUESTS x MAX_BODY_BYTES={budget} "
        "bytes; retry shortly."
    )


def replay(body: bytes, receive: Receive) -> Receive:
    """The body, already read, as one message; then the server's own receive (a disconnect, eventually)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class ConcurrencyLimit:
    """MAX_CONCURRENT_REQUESTS per worker: one more is answered 503 with Retry-After at once, never queued.

    A request is counted from the moment it reaches this middleware, which BodyLimit lets it do only once its
    whole body has arrived: a slow client costs no slot.
    """

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
            await self.dialects.refuse(scope, send, 503, detail, RETRY_SHORTLY)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
