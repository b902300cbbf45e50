"""app/main.py: the app as `uvicorn app.main:app` and `python -m app` make it: settings read when it starts,
the public paths, the route order, and the OpenAPI document of the settings it serves with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from app.config import ConfigError
from app.main import BUSIEST_PATHS, HEALTH_PATHS, create_app, documents, is_public


def test_the_app_refuses_to_start_with_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_RECORDS", "ten")
    with pytest.raises(ConfigError, match="MAX_RECORDS"), TestClient(create_app()):
        pass


def test_the_app_reads_the_environment_when_it_starts(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setenv("MODELS_DIR", str(models_dir))
    with TestClient(create_app()) as client:
        assert client.get("/models").json()["path"] == str(models_dir)


@pytest.mark.parametrize("path", [*sorted(HEALTH_PATHS), "/docs", "/docs/static/swagger-ui.css", "/openapi.json"])
def test_health_and_documentation_are_public(path: str) -> None:
    assert is_public(path)


@pytest.mark.parametrize("path", ["/predict", "/models", "/metrics", "/v2/models/svc/infer", "/monitor", "/healthz"])
def test_everything_else_is_not_public(path: str) -> None:
    assert not is_public(path)


def test_the_busiest_routes_are_tried_first() -> None:
    table = [route.path for route in create_app().routes if isinstance(route, Route)]
    assert set(table[: len(BUSIEST_PATHS)]) == set(BUSIEST_PATHS)
    assert len(table) > len(BUSIEST_PATHS)


def test_the_document_states_the_max_records_the_server_has(make_client: Callable[..., TestClient]) -> None:
    schemas = make_client(max_records=7).get("/openapi.json").json()["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["records"]["maxItems"] == 7
    assert schemas["NumericInput"]["properties"]["shape"]["prefixItems"][0]["maximum"] == 7


def test_the_document_is_made_once_per_setting() -> None:
    assert documents(10_000, False) is documents(10_000, False)
    assert documents(10_000, False) is not documents(10_000, True)
    document, document_3_0 = documents(10_000, True)
    assert (document["openapi"], document_3_0["openapi"]) == ("3.1.0", "3.0.3")
    assert "securitySchemes" in document["components"] and "securitySchemes" not in documents(10_000, False)[0]
