"""app/auth.py: with API_TOKEN set, every route but the health checks and the docs needs the bearer token."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from app.main import is_public
from tests.helpers import RECORD

TOKEN = "s3cret-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def guarded(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api_token=TOKEN)


def concrete(path: str) -> str:
    """A route's path with each parameter filled in: /models/{name:path} -> /models/svc."""
    return re.sub(r"\{[^}]*\}", "svc", path)


def guarded_requests(client: TestClient) -> list[tuple[str, str]]:
    """Every method on every route the app serves (whatever front-ends it has), but the public ones."""
    routes = [route for route in client.app.routes if isinstance(route, Route)]  # type: ignore[attr-defined]
    return [
        (method, concrete(route.path))
        for route in routes
        for method in sorted(route.methods or ())
        if method != "HEAD" and not is_public(route.path)
    ]


def test_every_route_but_the_public_ones_needs_the_token(guarded: TestClient) -> None:
    requests = guarded_requests(guarded)
    assert ("POST", "/predict") in requests and ("GET", "/models") in requests
    for method, path in requests:
        response = guarded.request(method, path, json={"records": [RECORD]})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        # Each dialect answers in its own error shape.
        key = "error" if path.startswith("/v2") else "detail"
        assert response.json() == {key: "This API needs a token: send the header Authorization: Bearer <API_TOKEN>."}


def test_the_right_token_opens_every_route(guarded: TestClient) -> None:
    for method, path in guarded_requests(guarded):
        response = guarded.request(method, path, json={"records": [RECORD]}, headers=BEARER)
        # Past the token check the route itself answers: V2 refuses this original-API body (400) and the
        # made-up version "svc" (404), /feedback a body that holds no label (422).
        assert response.status_code in (200, 400, 404, 422), (method, path, response.text)
        assert "needs a token" not in response.text


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(f"Bearer {TOKEN}x", id="longer"),
        pytest.param(f"Bearer {TOKEN[:-1]}", id="shorter"),
        pytest.param("Bearer ", id="empty"),
        pytest.param(f"Bearer {TOKEN.upper()}", id="other-case"),
    ],
)
def test_a_wrong_token_is_401_invalid_token(guarded: TestClient, authorization: str) -> None:
    response = guarded.post("/predict", json={"records": [RECORD]}, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"detail": "The bearer token is not this API's token."}


@pytest.mark.parametrize("authorization", [f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"])
def test_another_scheme_counts_as_no_token(guarded: TestClient, authorization: str) -> None:
    response = guarded.get("/models", headers={"Authorization": authorization})
    assert (response.status_code, response.headers["www-authenticate"]) == (401, "Bearer")


def test_the_scheme_is_case_insensitive(guarded: TestClient) -> None:
    assert guarded.get("/models", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize(
    "path", ["/health", "/docs", "/openapi.json", "/docs/openapi-3.0.json", "/docs/static/swagger-ui.css"]
)
def test_health_and_docs_need_no_token(guarded: TestClient, path: str) -> None:
    assert guarded.get(path).status_code == 200


def test_an_unknown_path_is_401_too(guarded: TestClient) -> None:
    # Without the token a client learns nothing, not even which paths exist.
    assert guarded.get("/no/such/path").status_code == 401


def test_without_a_token_setting_nothing_is_asked(client: TestClient) -> None:
    assert client.post("/predict", json={"records": [RECORD]}).status_code == 200
    document = client.get("/openapi.json").json()
    assert "securitySchemes" not in document["components"]
    assert all("security" not in operation for item in document["paths"].values() for operation in item.values())


@pytest.mark.parametrize("document_path", ["/openapi.json", "/docs/openapi-3.0.json"])
def test_the_document_declares_the_bearer_scheme(guarded: TestClient, document_path: str) -> None:
    document = guarded.get(document_path).json()
    assert document["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    for path, item in document["paths"].items():
        for operation in item.values():
            if is_public(path):
                assert "security" not in operation, path
            else:
                assert operation["security"] == [{"bearerAuth": []}], path
                assert "401" in operation["responses"], path
