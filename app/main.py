"""The ASGI app (`uvicorn app.main:app`): routes only; the work lives in inference and registry."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.config import Settings
from app.errors import EXCEPTION_HANDLERS
from app.inference import Inference
from app.openapi import SWAGGER_UI_DIR, docs_page, downgrade_to_3_0, openapi_document
from app.responses import FastJSONResponse

WELCOME = "Bienvenido a la API de inferencia de modelos ML"
logger = logging.getLogger("app")


class State(TypedDict):
    inference: Inference


def _inference(request: Request) -> Inference:
    inference: Inference = request.state.inference
    return inference


async def welcome(request: Request) -> Response:
    return FastJSONResponse({"message": WELCOME, "endpoints": endpoints(request.app.routes)})


async def health(request: Request) -> Response:
    registry = _inference(request).registry
    return FastJSONResponse({"status": "ok", "models": len(await run_in_threadpool(registry.available))})


async def list_models(request: Request) -> Response:
    registry = _inference(request).registry
    names = await run_in_threadpool(registry.available)
    return FastJSONResponse(
        {"path": str(registry.folder), "modelos_disponibles_total": len(names), "modelos_disponibles": names}
    )


async def model_info(request: Request) -> Response:
    model = await _inference(request).model(request.path_params["name"])
    return FastJSONResponse(model.info())


async def predict(request: Request) -> Response:
    body = await request.body()
    return FastJSONResponse(await _inference(request).predict(body, request.query_params.get("model")))


async def compare(request: Request) -> Response:
    body = await request.body()
    return FastJSONResponse(await _inference(request).compare(body, request.query_params.getlist("models")))


def endpoints(routes: list[BaseRoute]) -> list[str]:
    """'GET /models/{name}'-style lines for the routes that really exist."""
    lines = []
    for route in routes:
        if isinstance(route, Route):
            path = re.sub(r":\w+}", "}", route.path)
            lines += [f"{method} {path}" for method in sorted(route.methods or ()) if method != "HEAD"]
    return lines


def create_app(settings: Settings | None = None) -> Starlette:
    """The app; settings default to the environment, read when the app starts."""
    document = openapi_document()
    document_3_0 = downgrade_to_3_0(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        _configure_logging()
        current = settings or Settings.from_env()
        logger.info("serving models from %s", current.models_dir)
        inference = Inference.create(current)
        # What is loaded by now lives as long as the process. Frozen, the garbage collector stops
        # re-scanning it while a big answer is built: a 10,000-record response costs half as much.
        gc.freeze()
        yield {"inference": inference}

    async def openapi_json(request: Request) -> Response:
        return FastJSONResponse(document)

    async def openapi_json_3_0(request: Request) -> Response:
        return FastJSONResponse(document_3_0)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(request.scope.get("root_path", "")))

    routes = [
        Route("/", welcome, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        # :path so that "../x" reaches the handler and gets its 400, instead of a bare routing 404.
        Route("/models/{name:path}", model_info, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/predict/compare", compare, methods=["POST"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/docs/openapi-3.0.json", openapi_json_3_0, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui"),
    ]
    return Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)


def _configure_logging() -> None:
    # Under uvicorn nothing handles the app's own records; under pytest the root logger does.
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


app = create_app()
