"""One place shapes every error answer: the app's exception handlers and the middleware's refusals alike take
the shape of the dialect the request's path belongs to.

The shapes are the front-ends' own (their errors.py); app/main.py hands them over as a Dialects table, so no
shared module imports a front-end. A route added to either front-end needs nothing of its own to answer its
errors in its dialect: raising is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler, Message, Scope, Send

from app.errors import ServingError
from app.http import INTERNAL_ERROR, ErrorResponse, RequestInvalid, logged_status
from app.request_id import identity_headers


@dataclass(frozen=True)
class Dialect:
    """How one front-end words an error: a status with one sentence, and a body that did not validate."""

    prefix: str  # the paths it answers: this one and those below it
    error: ErrorResponse
    invalid: Callable[[RequestInvalid], Response]


class Dialects:
    """The front-ends' error shapes by path: the first dialect whose prefix the path is under.

    The last has the prefix "" and takes every other path, an unknown one included.
    """

    def __init__(self, *dialects: Dialect) -> None:
        if not dialects or dialects[-1].prefix:
            raise ValueError("the last dialect takes every other path: its prefix is ''")
        self.dialects = dialects

    def of(self, scope: Scope) -> Dialect:
        """The dialect of the request's path: the one rule the exception handlers and the middleware share."""
        path: str = scope["path"]
        return next(dialect for dialect in self.dialects if _under(path, dialect.prefix))

    async def refuse(
        self, scope: Scope, send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """A middleware's refusal, in the dialect of the path, without reading the body."""
        response = self.of(scope).error(status, detail, headers)
        await response(scope, _nothing_to_receive, send)

    def handlers(self) -> Mapping[Any, ExceptionHandler]:
        """The app's exception handlers, each answering in the request's dialect."""
        return {
            ServingError: self.serving_error,
            RequestInvalid: self.request_invalid,
            HTTPException: self.http_exception,
            Exception: self.unexpected,
        }

    async def serving_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServingError)
        return self.of(request.scope).error(logged_status(request, exc), exc.detail, None)

    async def request_invalid(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestInvalid)
        return self.of(request.scope).invalid(exc)

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        """An unknown path or method, or an HTTPException a route raised."""
        assert isinstance(exc, HTTPException)
        return self.of(request.scope).error(exc.status_code, exc.detail, exc.headers)

    async def unexpected(self, request: Request, exc: Exception) -> Response:
        """Any other exception: a bare 500 with the request's ID; the server logs the exception, traceback and all.

        Starlette runs this handler outermost, after the request-ID middleware has let go of the answer, so the
        ID (and the replica's name) is added here; the exception goes on to the server, which logs it while the
        request's context still holds.
        """
        return self.of(request.scope).error(500, INTERNAL_ERROR, identity_headers(request.scope))


def _under(path: str, prefix: str) -> bool:
    """The path is the prefix or below it: "/v2" and "/v2/models", not "/v2models"."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}
