"""The original API's error bodies, FastAPI's shapes, so clients written for the original service keep working.

{"detail": "sentence"}, and for validation {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}.
These handlers are the app's own: a path no route knows is answered in this shape too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from app.errors import ServingError
from app.http import INTERNAL_ERROR, FastJSONResponse, logged_status

logger = logging.getLogger("app")


class RequestInvalid(Exception):
    """The body or query did not validate; `errors` are pydantic's, with FastAPI's loc prefix."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def from_pydantic(cls, error: ValidationError, where: str) -> RequestInvalid:
        raw = error.errors(include_url=False, include_context=False, include_input=False)
        return cls([{"loc": [where, *item["loc"]], "msg": item["msg"], "type": item["type"]} for item in raw])


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """This dialect's error body, for answers made before any route runs (limits, tokens)."""
    return FastJSONResponse({"detail": detail}, status_code=status, headers=headers)


async def serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return FastJSONResponse({"detail": exc.detail}, status_code=logged_status(request, exc))


async def request_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestInvalid)
    return FastJSONResponse({"detail": exc.errors}, status_code=422)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return FastJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return FastJSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    ServingError: serving_error,
    RequestInvalid: request_invalid,
    HTTPException: http_exception,
    Exception: unexpected,
}
