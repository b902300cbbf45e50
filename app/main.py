"""The ASGI app (`uvicorn app.main:app`): the core, both HTTP dialects over it, and the docs.

app/original/ speaks the original service's JSON; app/v2/ the Open Inference Protocol. Both call the
protocol-neutral core (app/dataplane.py) that the lifespan creates.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from app import logs, metrics, original, request_id, v2
from app.auth import BearerToken
from app.config import Settings
from app.dataplane import DataPlane
from app.error_handlers import Dialect, Dialects
from app.feedback_metrics import FeedbackCollector
from app.http import Endpoint, FastJSONResponse, routes
from app.limits import BodyLimit, ConcurrencyLimit
from app.multiprocess import shared_folder
from app.observer import Observer, Observers
from app.openapi import SWAGGER_UI_DIR, docs_page, downgrade_to_3_0, openapi_document, with_bearer_scheme

ENDPOINTS: list[Endpoint] = [*original.ENDPOINTS, *v2.ENDPOINTS]
SCHEMAS = [*original.SCHEMAS, *v2.SCHEMAS]
# Open without API_TOKEN and never refused as busy: what an orchestrator asks to see a worker alive.
HEALTH_PATHS = frozenset({"/health", "/v2/health/live", "/v2/health/ready"})
# The documentation holds no data, and /docs must load in a browser before its Authorize button can be used.
DOCS_PREFIXES = ("/docs", "/openapi.json")
# The routes that carry the load, tried first; no other route matches their paths.
BUSIEST_PATHS = ("/predict", "/v2/models/{name}/infer")
# Each front-end's error shapes, by path: V2's at /v2 and below, the original API's everywhere else.
DIALECTS = Dialects(
    Dialect("/v2", v2.error_response, v2.invalid_response),
    Dialect("", original.error_response, original.invalid_response),
)
EXCEPTION_HANDLERS = DIALECTS.handlers()


class State(TypedDict):
    settings: Settings
    data_plane: DataPlane
    metrics: metrics.Metrics | None  # None: METRICS=0
    access_log: bool
    served_by: bytes | None  # X-Served-By's value; None: SERVED_BY off


def is_public(path: str) -> bool:
    return path in HEALTH_PATHS or path.startswith(DOCS_PREFIXES)


@functools.lru_cache(maxsize=4)
def documents(max_records: int, secured: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI document a server with these settings serves, in 3.1 and in 3.0 (for /docs).

    It states MAX_RECORDS, in each dialect's schemas; a server with API_TOKEN declares the token, and /docs then has
    an Authorize button. Made at the first request for it, once per setting.
    """
    document = openapi_document(ENDPOINTS, SCHEMAS)
    for state_max_records in (original.state_max_records, v2.state_max_records):
        state_max_records(document["components"]["schemas"], max_records)
    if secured:
        document = with_bearer_scheme(document, HEALTH_PATHS)
    return document, downgrade_to_3_0(document)


def create_app(settings: Settings | None = None) -> Starlette:
    """The app; settings default to the environment, read when the app starts."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        current = settings or Settings.from_env()
        logs.configure(current.log_format)
        logs.logger.info("serving models from %s", current.models_dir)
        series = metrics.Metrics() if current.metrics else None
        observers: list[Observer] = [logs.RequestNotes(), *([series] if series else [])]
        plane = DataPlane(current, Observers(observers), shared_folder())
        if series and current.drift_monitoring:
            series.export(metrics.DriftCollector(plane.drift_reports))
        if series and plane.capture is not None:
            series.export(FeedbackCollector(plane.capture, plane.available))
        if series and plane.capture is None:
            # Without the store, each process exports the models it holds (per process; see the collector).
            series.export(metrics.ReferenceAccuracyCollector(plane.loaded))
        # What is loaded by now lives as long as the process. Frozen, the garbage collector stops
        # re-scanning it while a big answer is built.
        gc.freeze()
        try:
            yield {
                "settings": current,
                "data_plane": plane,
                "metrics": series,
                "access_log": current.access_log,
                "served_by": request_id.served_by() if current.served_by else None,
            }
        finally:
            plane.close()
            if series:
                series.process_exiting()

    async def openapi_json(request: Request) -> Response:
        return FastJSONResponse(_documents(request)[0])

    async def openapi_json_3_0(request: Request) -> Response:
        return FastJSONResponse(_documents(request)[1])

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(request.scope.get("root_path", "")))

    documentation = [
        Endpoint("GET", "/openapi.json", openapi_json),
        Endpoint("GET", "/docs", docs),
        Endpoint("GET", "/docs/openapi-3.0.json", openapi_json_3_0),
    ]
    assets = Mount("/docs/static", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    endpoints = sorted([*ENDPOINTS, *documentation, *metrics.ENDPOINTS], key=lambda e: e.path not in BUSIEST_PATHS)
    table: list[BaseRoute] = [*routes(endpoints), assets]
    return Starlette(
        routes=table,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            # Outermost: every answer carries the request's ID, even one made by a middleware below.
            Middleware(request_id.RequestIdMiddleware, routes=table),
            Middleware(metrics.MetricsMiddleware, routes=table),
            # Then: a request without the token costs no body read and no concurrency slot.
            Middleware(BearerToken, dialects=DIALECTS, public=is_public),
            # The body is read whole before the request is counted as running: a slow sender holds no slot.
            Middleware(BodyLimit, dialects=DIALECTS),
            Middleware(ConcurrencyLimit, dialects=DIALECTS, exempt=HEALTH_PATHS),
        ],
        lifespan=lifespan,
    )


def _documents(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    settings: Settings = request.state.settings
    return documents(settings.max_records, settings.api_token is not None)


app = create_app()
