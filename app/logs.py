"""Logging, set up in one place: readable text or one JSON object a line, the request's ID on each line.

`python -m app` hands log_config() to uvicorn, which applies it in every worker (its own lines included);
an app started another way (`uvicorn app.main:app`, tests) applies it at start unless logging is set up.
While a request runs (app/request_id.py), every line logged carries its ID, a model load on a worker thread
included: the context travels with the thread.
Standard library only: a worker applies this before it answers uvicorn's first health check.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.observer import Observer
from app.rules import LogFormat

# What a log line may carry besides its message, in this order.
FIELDS = (
    "request_id", "method", "route", "path", "status", "duration_ms", "model", "records", "file", "reason", "client",
)  # fmt: skip
# Shown after the message in text lines: what the message itself does not say.
TEXT_FIELDS = ("model", "records", "request_id")
logger = logging.getLogger("app")
# A UUIDv7's random bits (RFC 9562): 80 bits after the time, less the version's 4 and the variant's 2.
UUID7_RANDOM = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)
UUID7_MARKS = 0x7 << 76 | 0x2 << 62
# Random bits are fetched for this many IDs at once; a forked child must not give out its parent's next ones.
RANDOM_BATCH = 256
_random_pool: deque[int] = deque()
os.register_at_fork(after_in_child=_random_pool.clear)


def new_request_id() -> str:
    """A new request ID: a UUIDv7 in hex, 48 bits of Unix milliseconds then 74 random bits.

    Time first, so IDs sort by when they were given: the capture store's index on them grows at its end instead
    of at random pages, which costs its writer half as much as random IDs do.
    """
    random = random_80_bits() & UUID7_RANDOM
    return f"{time.time_ns() // 1_000_000 << 80 | UUID7_MARKS | random:032x}"


def random_80_bits() -> int:
    """80 bits from the system's random source, fetched RANDOM_BATCH at a time: one system call, not one per ID."""
    try:
        return _random_pool.popleft()  # atomic: threads may take from the pool at once
    except IndexError:
        block = os.urandom(10 * RANDOM_BATCH)
        _random_pool.extend(int.from_bytes(block[start : start + 10], "big") for start in range(10, len(block), 10))
        return int.from_bytes(block[:10], "big")


@dataclass(slots=True)
class RequestContext:
    """The request in progress, as its log lines tell it."""

    request_id: str
    status: int = 0  # 0 until the answer starts
    models: list[str] = field(default_factory=list)
    records: int = 0


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def request_id_or_new() -> str:
    """The ID of the request being served, or a new one outside a request (the core called in process)."""
    context = current_request.get()
    return context.request_id if context is not None else new_request_id()


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
    # By name, not by object: uvicorn hands this to each worker, which imports the module only to apply it.
    formatter = "app.logs.JsonFormatter" if log_format == "json" else "app.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "app.logs.RequestFilter"}},
        "formatters": {"app": {"()": formatter}},
        "handlers": {
            "app": {"class": "logging.StreamHandler", "formatter": "app", "filters": ["request"]},
        },
        "loggers": {
            "uvicorn": {"handlers": ["app"], "level": "INFO", "propagate": False},
            # The app writes its own access line (app/request_id.py), with the request's ID and route.
            "uvicorn.access": {"handlers": [], "propagate": False},
            "app": {"handlers": ["app"], "level": "INFO", "propagate": False},
        },
    }


def configure(log_format: LogFormat) -> None:
    # Under `python -m app` uvicorn has applied log_config() already; under pytest the root logger handles records.
    if not logger.handlers and not logging.getLogger().handlers:
        logging.config.dictConfig(log_config(log_format))
