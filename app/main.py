"""The ASGI app (`uvicorn app.main:app`): the core, both HTTP dialects over it, and the docs.

app/original/ speaks the original service's JSON; app/v2/ the Open Inference Protocol. Both call the
protocol-neutral core (app/dataplane.py) that the lifespan creates.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from app import logs, metrics, original, request_id
from app.config import Settings
from app.dataplane import DataPlane
from app.http import Endpoint, ErrorResponse, FastJSONResponse, routes
from app.observer import Observer, Observers
from app.openapi import SWAGGER_UI_DIR, docs_page, downgrade_to_3_0, openapi_document
from app.original.errors import EXCEPTION_HANDLERS
from app.original.errors import error_response as original_error

ENDPOINTS: list[Endpoint] = [*original.ENDPOINTS]
SCHEMAS = [*original.SCHEMAS]
# Which error shape an answer made outside the routes (a limit, a token check) takes, by path prefix.
ERROR_DIALECTS: list[tuple[str, ErrorResponse]] = [("", original_error)]


class State(TypedDict):
    data_plane: DataPlane
    metrics: metrics.Metrics | None  # None: METRICS=0
    access_log: bool


def create_app(settings: Settings | None = None) -> Starlette:
    """The app; settings default to the environment, read when the app starts."""
    document = openapi_document(ENDPOINTS, SCHEMAS)
    document_3_0 = downgrade_to_3_0(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        current = settings or Settings.from_env()
        logs.configure(current.log_format)
        logs.logger.info("serving models from %s", current.models_dir)
        series = metrics.Metrics() if current.metrics else None
        observers: list[Observer] = [logs.RequestNotes(), *([series] if series else [])]
        plane = DataPlane(current, Observers(observers))
        # What is loaded by now lives as long as the process. Frozen, the garbage collector stops
        # re-scanning it while a big answer is built.
        gc.freeze()
        try:
            yield {"data_plane": plane, "metrics": series, "access_log": current.access_log}
        finally:
            if series:
                series.process_exiting()

    async def openapi_json(request: Request) -> Response:
        return FastJSONResponse(document)

    async def openapi_json_3_0(request: Request) -> Response:
        return FastJSONResponse(document_3_0)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(request.scope.get("root_path", "")))

    documentation = [
        Endpoint("GET", "/openapi.json", openapi_json),
        Endpoint("GET", "/docs", docs),
        Endpoint("GET", "/docs/openapi-3.0.json", openapi_json_3_0),
    ]
    assets = Mount("/docs/static", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    table: list[BaseRoute] = [*routes([*ENDPOINTS, *documentation, *metrics.ENDPOINTS]), assets]
    return Starlette(
        routes=table,
        middleware=[
            # Outermost: every answer carries the request's ID, even one made by a middleware below.
            Middleware(request_id.RequestIdMiddleware, routes=table, dialects=ERROR_DIALECTS),
            Middleware(metrics.MetricsMiddleware, routes=table),
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )


app = create_app()
