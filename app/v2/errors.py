"""V2's error answer, {"error": "<one sentence>"}, for the core's failures and for malformed V2 requests."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from app.errors import InvalidInput, ServingError
from app.http import FastJSONResponse, Handler, logged_status


class BadRequest(InvalidInput):
    """The V2 request itself is malformed: its JSON, a tensor's shape, datatype or binary data."""


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """This dialect's error body; also used for answers made before any route runs (limits, tokens)."""
    return FastJSONResponse({"error": message}, status_code=status, headers=headers)


def answers_errors(handler: Handler) -> Handler:
    """The handler, with every serving failure answered in V2's shape instead of the app-wide one."""

    @functools.wraps(handler)
    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except ServingError as error:
            return error_response(logged_status(request, error), error.detail)

    return handle
