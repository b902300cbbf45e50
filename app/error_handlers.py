"""One place shapes every error answer: the app's exception handlers and the middleware's refusals alike take
the shape of the dialect the request's path belongs to.

Under /v2 that is V2's `{"error": "<sentence>"}`; anywhere else the original API's FastAPI shapes. A route added
to either front-end needs nothing of its own to answer its errors in its dialect: raising is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from app import original, v2
from app.errors import ServingError
from app.http import INTERNAL_ERROR, ErrorResponse, RequestInvalid, logged_status
from app.request_id import identity_headers


@dataclass(frozen=True)
class Dialect:
    """How one front-end words an error: a status with one sentence, and a body that did not validate."""

    prefix: str
    error: ErrorResponse
    invalid: Callable[[RequestInvalid], Response]


# The first whose prefix the path starts with; the last takes every other path, an unknown one included.
DIALECTS = (
    Dialect("/v2", v2.error_response, v2.invalid_response),
    Dialect("", original.error_response, original.invalid_response),
)


def dialect_for(path: str) -> Dialect:
    return next(dialect for dialect in DIALECTS if _under(path, dialect.prefix))


def _under(path: str, prefix: str) -> bool:
    """The path is the prefix or below it: "/v2" and "/v2/models", not "/v2models"."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


async def serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return dialect_for(request.url.path).error(logged_status(request, exc), exc.detail, None)


async def request_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestInvalid)
    return dialect_for(request.url.path).invalid(exc)


async def http_exception(request: Request, exc: Exception) -> Response:
    """An unknown path or method, or an HTTPException a route raised."""
    assert isinstance(exc, HTTPException)
    return dialect_for(request.url.path).error(exc.status_code, exc.detail, exc.headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception: a bare 500 with the request's ID; the server logs the exception, traceback and all.

    Starlette runs this handler outermost, after the request-ID middleware has let go of the answer, so the ID
    (and the replica's name) is added here; the exception goes on to the server, which logs it while the request's
    context still holds.
    """
    return dialect_for(request.url.path).error(500, INTERNAL_ERROR, identity_headers(request.scope))


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    ServingError: serving_error,
    RequestInvalid: request_invalid,
    HTTPException: http_exception,
    Exception: unexpected,
}
