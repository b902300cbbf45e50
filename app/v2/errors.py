"""V2's error answer, {"error": "<one sentence>"}, for the core's failures and for malformed V2 requests."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from app.errors import InvalidInput
from app.http import FastJSONResponse, RequestInvalid


class BadRequest(InvalidInput):
    """The V2 request itself is malformed: its JSON, a tensor's shape, datatype or binary data."""


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return FastJSONResponse({"error": message}, status_code=status, headers=headers)


def invalid_response(invalid: RequestInvalid) -> Response:
    """V2 has no list of validation errors: the first one, in a sentence, as a 400."""
    return error_response(400, f"The request body is invalid: {invalid.errors[0]['msg']}.")
