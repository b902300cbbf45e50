"""Logging, set up in one place: readable text or one JSON object a line, the request's ID on each line.

`python -m app` hands log_config() to uvicorn, which applies it in every worker (its own lines included);
an app started another way (`uvicorn app.main:app`, tests) applies it at start unless logging is set up.
Every request gets an ID (RequestIdMiddleware): the client's X-Request-ID when it is sane, else a new one.
It is echoed in the response, kept in request.state.request_id, and added to every line logged while the
request runs, a model load on a worker thread included (the context travels with the thread).
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import LogFormat
from app.http import ErrorResponse, error_response_for, route_template
from app.observer import Observer

REQUEST_ID_HEADER = b"x-request-id"
# Visible ASCII only, so an echoed ID cannot split a header or a log line.
SANE_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
# What a log line may carry besides its message, in this order.
FIELDS = (
    "request_id", "method", "route", "path", "status", "duration_ms", "model", "records", "file", "reason", "client",
)  # fmt: skip
# Shown after the message in text lines: what the message itself does not say.
TEXT_FIELDS = ("model", "records", "request_id")
INTERNAL_ERROR = "Internal server error; the cause is in the server log."
logger = logging.getLogger("app")
access_logger = logging.getLogger("app.access")


@dataclass
class RequestContext:
    """The request in progress, as its log lines tell it."""

    request_id: str
    models: list[str] = field(default_factory=list)
    records: int = 0


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


class RequestNotes(Observer):
    """Notes on the request in progress which models answered and for how many records."""

    def predicted(self, model: str, records: int, seconds: float) -> None:
        context = current_request.get()
        if context is not None:
            if model not in context.models:
                context.models.append(model)
            context.records = max(context.records, records)


class RequestFilter(logging.Filter):
    """Adds the current request's ID to every record logged while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request.get()
        if context is not None and not hasattr(record, "request_id"):
            record.request_id = context.request_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the request's fields when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key in FIELDS if (value := getattr(record, key, None)) is not None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """uvicorn's look: `INFO:     app: message model=svc request_id=...`."""

    def format(self, record: logging.LogRecord) -> str:
        name = "" if record.name.startswith("uvicorn") else f"{record.name}: "
        extras = "".join(f" {key}={value}" for key in TEXT_FIELDS if (value := getattr(record, key, None)) is not None)
        line = f"{record.levelname + ':':<10}{name}{record.getMessage()}{extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_config(log_format: LogFormat) -> dict[str, Any]:
    """The logging.config.dictConfig for the app's and uvicorn's loggers."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestFilter}},
        "formatters": {"app": {"()": formatter}},
        "handlers": {
            "app": {"class": "logging.StreamHandler", "formatter": "app", "filters": ["request"]},
        },
        "loggers": {
            "uvicorn": {"handlers": ["app"], "level": "INFO", "propagate": False},
            # The app writes its own access line (RequestIdMiddleware), with the request's ID and route.
            "uvicorn.access": {"handlers": [], "propagate": False},
            "app": {"handlers": ["app"], "level": "INFO", "propagate": False},
        },
    }


def configure(log_format: LogFormat) -> None:
    # Under `python -m app` uvicorn has applied log_config() already; under pytest the root logger handles records.
    if not logger.handlers and not logging.getLogger().handlers:
        logging.config.dictConfig(log_config(log_format))


def client_request_id(scope: Scope) -> str | None:
    """The client's X-Request-ID when it is visible ASCII of at most 128 characters."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if SANE_REQUEST_ID.fullmatch(value) else None
    return None


class RequestIdMiddleware:
    """Pure ASGI: the request's ID in, out and in its log lines; the access-log line when ACCESS_LOG is on.

    Outermost of the app's middleware, so that answers made by the others carry the ID too; an unhandled
    error becomes the dialect's 500 here, logged with the ID, instead of an answer without it.
    """

    def __init__(
        self, app: ASGIApp, routes: Sequence[BaseRoute], dialects: Sequence[tuple[str, ErrorResponse]]
    ) -> None:
        self.app = app
        self.routes = routes
        self.dialects = dialects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = client_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        context = RequestContext(request_id)
        token = current_request.set(context)
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status:
                raise
            status = 500
            logger.exception("%s %s failed", scope["method"], scope["path"])
            respond = error_response_for(scope["path"], self.dialects)
            await respond(500, INTERNAL_ERROR, None)(scope, receive, send_with_id)
        finally:
            if scope["state"].get("access_log"):
                self.log_access(scope, context, status, time.perf_counter() - started)
            current_request.reset(token)

    def log_access(self, scope: Scope, context: RequestContext, status: int, seconds: float) -> None:
        client = "{}:{}".format(*scope["client"]) if scope.get("client") else "-"
        path = quote(scope["path"]) + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
        milliseconds = round(seconds * 1000, 3)
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
