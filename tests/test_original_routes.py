"""Routes in the original dialect: /predict through a route, /models listing it, /monitor naming a refused file."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.routes import ROUTES_FILE
from tests.helpers import RECORD

PREDICT = {"records": [RECORD]}
ROUTE = {"variants": {"logistic_regression": 1, "random_forest": 1}, "shadows": ["svc"], "sticky_header": "X-Client-ID"}


def write_routes(folder: Path, routes: dict[str, Any]) -> None:
    (folder / "routes.tmp").write_text(json.dumps({"routes": routes}))
    os.replace(folder / "routes.tmp", folder / ROUTES_FILE)


@pytest.fixture
def client(models_dir: Path, make_client: Callable[..., TestClient]) -> TestClient:
    write_routes(models_dir, {"penguins": ROUTE})
    return make_client(routes_seed=3)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/predict?model=penguins", id="query"),
        pytest.param("/predict/penguins", id="path"),
    ],
)
def test_a_route_answers_from_one_of_its_variants_and_names_it(client: TestClient, path: str) -> None:
    answers = [client.post(path, json=PREDICT) for _ in range(40)]
    for response in answers:
        assert response.status_code == 200
        variant = response.headers["x-route-variant"]
        assert response.json()["model"] == f"{variant}.pkl"
        assert response.json()["predictions"] == ["Adelie"]
    assert {response.headers["x-route-variant"] for response in answers} == {"logistic_regression", "random_forest"}


def test_the_body_may_name_a_route(client: TestClient) -> None:
    response = client.post("/predict", json={**PREDICT, "model": "penguins"})
    assert response.status_code == 200
    assert response.headers["x-route-variant"] in ROUTE["variants"]


def test_a_model_asked_by_name_carries_no_route_header(client: TestClient) -> None:
    response = client.post("/predict/svc", json=PREDICT)
    assert response.status_code == 200
    assert "x-route-variant" not in response.headers


def test_the_sticky_header_keeps_a_client_on_one_variant(client: TestClient) -> None:
    for number in range(10):
        headers = {"X-Client-ID": f"client-{number}"}
        variants = {client.post("/predict/penguins", json=PREDICT, headers=headers).headers["x-route-variant"]}
        variants |= {client.post("/predict/penguins", json=PREDICT, headers=headers).headers["x-route-variant"]}
        assert len(variants) == 1


def test_a_route_as_default_model_routes_a_request_naming_none(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"svc": 1}}})
    response = make_client(default_model="penguins").post("/predict", json=PREDICT)
    assert response.status_code == 200
    assert response.headers["x-route-variant"] == "svc"


def test_the_route_follows_a_rewritten_file(models_dir: Path, client: TestClient) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"svc": 1, "random_forest": 0}}})
    variants = Counter(client.post("/predict/penguins", json=PREDICT).headers["x-route-variant"] for _ in range(20))
    assert variants == {"svc": 20}


def test_a_variant_whose_file_is_gone_is_a_404_naming_it(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"random_forest": 1}}})
    client = make_client()
    assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    (models_dir / "random_forest.pkl").unlink()
    response = client.post("/predict/penguins", json=PREDICT)
    assert response.status_code == 404
    assert "'random_forest.pkl' not found" in response.json()["detail"]


def test_a_route_is_not_a_model_file_where_one_is_asked_for(client: TestClient) -> None:
    response = client.get("/models/penguins")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "'penguins' is a route, not a model file: name one of its variants here (logistic_regression, random_forest)."
    )


def test_compare_is_unchanged_by_a_route(client: TestClient) -> None:
    response = client.post("/predict/compare", json=PREDICT)
    assert response.status_code == 200
    assert sorted(response.json()["results"]) == ["logistic_regression.pkl", "random_forest.pkl", "svc.pkl"]


def test_models_lists_the_routes_beside_the_model_files(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["modelos_disponibles"] == ["logistic_regression.pkl", "random_forest.pkl", "svc.pkl"]
    assert body["modelos_disponibles_total"] == 3
    assert body["routes"] == [{"name": "penguins", **ROUTE}]


def test_models_without_routes_answers_as_the_original_service(make_client: Callable[..., TestClient]) -> None:
    assert "routes" not in make_client().get("/models").json()


def test_a_broken_routes_file_never_fails_a_request(models_dir: Path, client: TestClient) -> None:
    assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    (models_dir / ROUTES_FILE).write_text("{")
    response = client.post("/predict/penguins", json=PREDICT)
    assert response.status_code == 200
    assert response.headers["x-route-variant"] in ROUTE["variants"]


def test_the_monitor_page_says_a_routes_file_is_refused(models_dir: Path, client: TestClient) -> None:
    assert "refused" not in client.get("/monitor").text
    write_routes(models_dir, {"penguins": {"variants": {"svc": -1}}})
    page = client.get("/monitor").text
    assert '<p class="problem">routes.json refused: routes.penguins.variants.svc: ' in page
    assert "; the last good routes are served.</p>" in page


def test_the_document_accepts_a_routes_name_and_names_the_header(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path in ("/predict", "/predict/{model_name}", "/v2/models/{name}/infer"):
        operation = document["paths"][path]["post"]
        assert "X-Route-Variant" in operation["responses"]["200"]["headers"]
    assert "routes" in document["components"]["schemas"]["ModelList"]["properties"]
