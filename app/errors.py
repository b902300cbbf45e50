"""One exception type per failure kind, mapped to a status code in one table.

Bodies keep FastAPI's shape so clients written for the seed's FastAPI service keep working:
{"detail": "sentence"}, and for validation {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from app.responses import FastJSONResponse

logger = logging.getLogger("app")


class ApiError(Exception):
    """A failure with a status code and a one-sentence detail safe to show the client."""

    status_code: ClassVar[int] = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidModelName(ApiError):
    status_code = 400


class ModelOutsideFolder(ApiError):
    status_code = 400


class ModelNotFound(ApiError):
    status_code = 404


class TooManyRecords(ApiError):
    status_code = 413


class ModelLoadFailed(ApiError):
    status_code = 500


class ModelPredictFailed(ApiError):
    status_code = 500


class ModelsFolderUnavailable(ApiError):
    status_code = 503


class RequestInvalid(Exception):
    """The body or query did not validate; `errors` are pydantic's, with FastAPI's loc prefix."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def from_pydantic(cls, error: ValidationError, where: str) -> RequestInvalid:
        raw = error.errors(include_url=False, include_context=False, include_input=False)
        return cls([{"loc": [where, *item["loc"]], "msg": item["msg"], "type": item["type"]} for item in raw])


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status_code >= 500:
        # The traceback (when there is one) goes to the log, never into the response.
        logger.error(
            "%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.detail, exc_info=exc.__cause__
        )
    return FastJSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def request_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestInvalid)
    return FastJSONResponse({"detail": exc.errors}, status_code=422)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return FastJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return FastJSONResponse({"detail": "Internal server error; the cause is in the server log."}, status_code=500)


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    ApiError: api_error,
    RequestInvalid: request_invalid,
    HTTPException: http_exception,
    Exception: unexpected,
}
