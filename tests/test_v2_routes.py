"""Routes in the V2 dialect: infer through a route (JSON and binary), its metadata, readiness, the index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers import wait_for
from tests.test_original_routes import write_routes
from tests.test_v2_endpoints import RECORDS, binary_request, post_binary, split_answer, v2_request

ROUTE = {"variants": {"logistic_regression": 3, "svc": 1}, "shadows": [], "sticky_header": "X-Client-ID"}


@pytest.fixture
def client(models_dir: Path, make_client: Callable[..., TestClient]) -> TestClient:
    write_routes(models_dir, {"penguins": ROUTE})
    return make_client(routes_seed=11)


def versions(client: TestClient) -> dict[str, str]:
    return {name: client.get(f"/v2/models/{name}").json()["versions"][0] for name in ("logistic_regression", "svc")}


def test_infer_through_a_route_names_the_variant_and_its_version(client: TestClient) -> None:
    known = versions(client)
    seen = set()
    for _ in range(40):
        response = client.post("/v2/models/penguins/infer", json=v2_request(outputs=[{"name": "predict"}]))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert response.headers["x-route-variant"] == answer["model_name"]
        assert answer["model_version"] == known[answer["model_name"]]
        assert answer["outputs"][0]["data"] == ["Adelie", "Gentoo", "Chinstrap"]
        seen.add(answer["model_name"])
    assert seen == {"logistic_regression", "svc"}


def test_binary_infer_through_a_route(client: TestClient) -> None:
    header, binary = binary_request(RECORDS, [{"name": "predict", "parameters": {"binary_data": True}}])
    response = post_binary(client, header, binary, model="penguins")
    assert response.status_code == 200, response.text
    answer, _ = split_answer(response)
    assert response.headers["x-route-variant"] == answer["model_name"]


def test_the_sticky_header_keeps_a_client_on_one_variant(client: TestClient) -> None:
    for number in range(10):
        headers = {"x-client-id": f"client-{number}"}
        names = {
            client.post("/v2/models/penguins/infer", json=v2_request(), headers=headers).json()["model_name"]
            for _ in range(3)
        }
        assert len(names) == 1


def test_a_model_asked_by_name_carries_no_route_header(client: TestClient) -> None:
    response = client.post("/v2/models/svc/infer", json=v2_request())
    assert response.status_code == 200
    assert "x-route-variant" not in response.headers


def test_a_route_has_no_versions(client: TestClient) -> None:
    version = versions(client)["svc"]
    response = client.post(f"/v2/models/penguins/versions/{version}/infer", json=v2_request())
    assert response.status_code == 404
    assert "'penguins' is a route, not a model file" in response.json()["error"]


def test_a_routes_metadata_names_its_variants_and_the_outputs_they_all_give(client: TestClient) -> None:
    response = client.get("/v2/models/penguins")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "penguins"
    assert body["versions"] == []
    assert [tensor["name"] for tensor in body["outputs"]] == ["predict"]  # the SVC has no probabilities
    assert body["inputs"] == client.get("/v2/models/svc").json()["inputs"]
    assert body["parameters"]["route"] == ROUTE
    assert body["parameters"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_a_route_is_ready_when_its_variants_load(client: TestClient, models_dir: Path) -> None:
    assert client.get("/v2/models/penguins/ready").json() == {"name": "penguins", "ready": True}
    (models_dir / "svc.pkl").write_bytes(b"not a pickle")
    response = client.get("/v2/models/penguins/ready")
    assert response.status_code == 400
    assert response.json() == {"name": "penguins", "ready": False}


def test_the_index_lists_the_route_after_the_models(client: TestClient) -> None:
    entries = client.post("/v2/repository/index").json()
    assert [entry["name"] for entry in entries] == ["logistic_regression", "random_forest", "svc", "penguins"]
    route: dict[str, Any] = entries[-1]
    assert route["route"] == ROUTE
    assert route["state"] == "UNAVAILABLE"
    assert route["reason"].startswith("variant logistic_regression: not loaded yet")
    assert all("route" not in entry for entry in entries[:-1])


def test_loading_a_route_loads_its_variants_and_makes_it_ready_in_the_index(client: TestClient) -> None:
    response = client.post("/v2/repository/models/penguins/load")
    assert response.json() == {"name": "penguins", "version": None, "state": "READY", "reason": ""}
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert [entry["name"] for entry in ready] == ["logistic_regression", "svc", "penguins"]


def test_unloading_a_route_unloads_its_variants(client: TestClient) -> None:
    client.post("/v2/repository/models/penguins/load")
    response = client.post("/v2/repository/models/penguins/unload")
    assert response.json()["state"] == "UNAVAILABLE"
    assert client.post("/v2/repository/index", json={"ready": True}).json() == []


def test_infer_through_a_route_is_shadowed_as_the_original_dialect_is(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"svc": 1}, "shadows": ["logistic_regression"]}})
    client = make_client()
    for _ in range(3):
        response = client.post("/v2/models/penguins/infer", json=v2_request(outputs=[{"name": "predict"}]))
        assert response.status_code == 200, response.text
    header, binary = binary_request(RECORDS, [{"name": "predict", "parameters": {"binary_data": True}}])
    assert post_binary(client, header, binary, model="penguins").status_code == 200
    records = 4 * len(RECORDS)

    def shadowed() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get("/routes/penguins").json()
        return body if body["shadows"][0]["records"] == records else None

    body = wait_for(shadowed, 30, f"the shadow to predict {records} records")
    assert body["variants"] == {"svc": {"share": 1.0, "records": records}}
    assert body["shadows"][0]["disagreements"] == 0  # the three example penguins: both models agree
