"""app/error_handlers.py: every route answers its errors in its own dialect's shape, from one table.

Under /v2, `{"error": "<sentence>"}`; anywhere else the original API's `{"detail": ...}`. Every route of the
app's table is walked with failing requests, and a route added without any error code of its own answers in
its dialect's shape too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.config import Settings
from app.errors import ModelNotFound
from app.http import INTERNAL_ERROR
from app.main import create_app
from app.v2.types import EXAMPLE_REQUEST
from tests.helpers import RECORD

# A request's path for a route's template: a model that exists, a version it does not have.
PARAMETERS = {"name": "svc", "model_name": "svc", "version": "000000000000"}
BODIES: dict[str, Any] = {
    "/predict": {"records": [RECORD]},
    "/predict/compare": {"records": [RECORD]},
    "/predict/{model_name:path}": {"records": [RECORD]},
    "/v2/models/{name}/infer": EXAMPLE_REQUEST,
    "/v2/models/{name}/versions/{version}/infer": EXAMPLE_REQUEST,
    "/feedback": {"request_id": "r", "label": "Adelie"},
}
# Routes that answer whatever the models folder holds: nothing in them reads it, or (V2 readiness) the
# specification asks for a not-ready answer rather than an error.
FOLDER_BLIND = {
    "/", "/docs", "/openapi.json", "/docs/openapi-3.0.json", "/metrics", "/v2", "/v2/health/live",
    "/v2/health/ready", "/feedback",
}  # fmt: skip


def app_routes() -> list[Route]:
    return [route for route in create_app().routes if isinstance(route, Route)]


def concrete(template: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda match: PARAMETERS[match[1]], template)


def assert_dialect_shape(path: str, response: Any) -> None:
    body = response.json()
    if path == "/v2" or path.startswith("/v2/"):
        assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    else:
        assert list(body) == ["detail"], body
        detail = body["detail"]
        assert isinstance(detail, list) if response.status_code == 422 else isinstance(detail, str), body


@pytest.mark.parametrize("route", app_routes(), ids=lambda route: f"{sorted(route.methods or [])[0]} {route.path}")
def test_a_wrong_method_is_answered_in_the_routes_dialect(client: TestClient, route: Route) -> None:
    path = concrete(route.path)
    response = client.request("PATCH", path)
    assert response.status_code == 405
    assert_dialect_shape(path, response)


@pytest.mark.parametrize("route", app_routes(), ids=lambda route: f"{sorted(route.methods or [])[0]} {route.path}")
def test_a_request_for_a_folder_gone_is_answered_in_the_routes_dialect(
    make_client: Callable[..., TestClient], tmp_path: Path, route: Route
) -> None:
    client = make_client(folder=tmp_path / "gone")
    path = concrete(route.path)
    (method,) = set(route.methods or ()) - {"HEAD"}
    response = client.request(method, path, json=BODIES.get(route.path))
    if route.path in FOLDER_BLIND:
        assert response.status_code in (200, 400)
        return
    assert response.status_code == 503, response.text
    assert_dialect_shape(path, response)


@pytest.mark.parametrize("path", ["/nothing/here", "/v2/nothing/here", "/v2models"])
def test_an_unknown_path_is_answered_in_the_dialect_its_prefix_names(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert_dialect_shape(path, response)


async def raises_serving_error(request: Request) -> Response:
    raise ModelNotFound("Model 'x.pkl' not found.")


async def raises_http_exception(request: Request) -> Response:
    raise HTTPException(409, "Not now.")


async def raises_anything_else(request: Request) -> Response:
    raise KeyError("surprise")


@pytest.mark.parametrize("prefix", ["/v2/new", "/new"])
@pytest.mark.parametrize(
    ("handler", "status", "detail"),
    [
        pytest.param(raises_serving_error, 404, "Model 'x.pkl' not found.", id="serving-error"),
        pytest.param(raises_http_exception, 409, "Not now.", id="http-exception"),
        pytest.param(raises_anything_else, 500, INTERNAL_ERROR, id="unexpected"),
    ],
)
def test_a_route_added_without_error_code_answers_in_its_dialect(
    models_dir: Path, prefix: str, handler: Callable[[Request], Any], status: int, detail: str
) -> None:
    app = create_app(Settings(models_dir=models_dir))
    app.add_route(f"{prefix}/route", handler)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(f"{prefix}/route", headers={"X-Request-ID": "added-1"})
    assert response.status_code == status
    assert response.json() == ({"error": detail} if prefix.startswith("/v2") else {"detail": detail})
    assert response.headers["x-request-id"] == "added-1"
