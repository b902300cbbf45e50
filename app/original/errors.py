"""The original API's error bodies, FastAPI's shapes, so clients written for the original service keep working.

{"detail": "sentence"}, and for validation {"detail": [{"loc": [...], "msg": "...", "type": "..."}]} with 422.
A path no route knows is answered in this shape too (app/error_handlers.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from app.http import FastJSONResponse, RequestInvalid


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return FastJSONResponse({"detail": detail}, status_code=status, headers=headers)


def invalid_response(invalid: RequestInvalid) -> Response:
    return FastJSONResponse({"detail": invalid.errors}, status_code=422)
