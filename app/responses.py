"""A JSON response rendered by pydantic-core's serializer (Rust), cheaper than json.dumps."""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)
