"""Request IDs: every request gets one, every answer carries it, and the access log names it.

The ID is the client's X-Request-ID when it is visible ASCII of at most 128 characters, else a new one, random
and time-ordered (logs.new_request_id). Handlers read it as request.state.request_id; the log lines written
meanwhile carry it (app/logs.py).
With SERVED_BY, every answer also names the host that made it (X-Served-By), so replicas can be told apart.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Sequence
from urllib.parse import quote

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http import route_template
from app.logs import RequestContext, current_request, new_request_id

REQUEST_ID_HEADER = b"x-request-id"
SERVED_BY_HEADER = b"x-served-by"
# Visible ASCII only, so an echoed ID cannot split a header or a log line.
SANE_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
access_logger = logging.getLogger("app.access")


def client_request_id(scope: Scope) -> str | None:
    """The client's X-Request-ID when it is visible ASCII of at most 128 characters."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if SANE_REQUEST_ID.fullmatch(value) else None
    return None


def identity_headers(scope: Scope) -> dict[str, str]:
    """The headers this middleware puts on every answer, for one made outside it (an unexpected error's)."""
    state = scope.get("state", {})
    headers = {REQUEST_ID_HEADER.decode(): state["request_id"]} if state.get("request_id") else {}
    if host := state.get("served_by"):
        headers[SERVED_BY_HEADER.decode()] = host.decode("ascii")
    return headers


def served_by() -> bytes:
    """X-Served-By's value: this host's name (in a container, its ID unless set otherwise)."""
    return socket.gethostname().encode("ascii", "replace")


class RequestIdMiddleware:
    """Pure ASGI: the request's ID in, out and in its log lines; the access-log line when ACCESS_LOG is on.

    Outermost of the app's middleware, so that answers made by the others carry the ID too. An exception that
    escapes goes on to Starlette's last handler (app/error_handlers.py), which answers with the ID itself.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = client_request_id(scope) or new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        context = RequestContext(request_id)
        # Never reset: the request's task ends with it, and the server's own line about an exception that
        # escaped (uvicorn's "Exception in ASGI application") is logged in that task, naming the request too.
        current_request.set(context)
        headers = [(REQUEST_ID_HEADER, request_id.encode("ascii"))]
        if host := state.get("served_by"):
            headers.append((SERVED_BY_HEADER, host))
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if state.get("access_log"):
                self.log_access(scope, context, time.perf_counter() - started)

    def log_access(self, scope: Scope, context: RequestContext, seconds: float) -> None:
        client = "{}:{}".format(*scope["client"]) if scope.get("client") else "-"
        path = quote(scope["path"]) + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
        milliseconds = round(seconds * 1000, 3)
        # No status: an exception escaped before any answer, and the error handler answers 500.
        status = context.status or 500
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d %.2f ms',
            client,
            scope["method"],
            path,
            scope["http_version"],
            status,
            milliseconds,
            extra={
                "method": scope["method"],
                "route": route_template(scope, self.routes),
                "path": path,
                "status": status,
                "duration_ms": milliseconds,
                "model": ",".join(context.models) or None,
                "records": context.records or None,
                "client": client,
            },
        )
