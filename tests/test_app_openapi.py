"""app/openapi.py: the OpenAPI 3.1 document from the pydantic models, and Swagger UI served offline."""

from __future__ import annotations

import json
import re

from starlette.routing import Route
from starlette.testclient import TestClient

from app.original.schemas import PredictRequest
from tests.helpers import RECORD


def test_openapi_is_3_1_with_every_endpoint(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert {
        "/",
        "/health",
        "/models",
        "/models/{name}",
        "/predict",
        "/predict/compare",
        "/predict/{model_name}",
    } <= set(document["paths"])


def test_openapi_schemas_come_from_the_pydantic_models(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"PenguinRecord", "PredictRequest", "PredictResponse", "CompareResponse", "ModelInfo", "ModelList"} <= set(
        schemas
    )
    assert schemas["PenguinRecord"]["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]


def test_openapi_predict_carries_the_seed_example_and_errors(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    assert example == {"records": [RECORD]}
    PredictRequest.model_validate(example)
    assert {"200", "400", "404", "413", "422", "500"} <= set(operation["responses"])


def test_the_documented_example_is_accepted(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/predict/compare"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    assert client.post("/predict/compare", json=example).status_code == 200


def test_docs_page_loads_swagger_ui_from_the_app_only(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//cdn", response.text)  # nothing from the internet
    for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert asset.startswith("/docs/static/")
        assert client.get(asset).status_code == 200, asset


def test_docs_feeds_swagger_ui_a_3_0_document_it_can_render(client: TestClient) -> None:
    # The bundled Swagger UI (4.15) renders "openapi: 3.0.n" only.
    url = re.search(r'url: "([^"]+)"', client.get("/docs").text)
    assert url is not None
    document = client.get(url.group(1)).json()
    assert document["openapi"].startswith("3.0.")
    text = json.dumps(document)
    assert '"type": "null"' not in text and '"const"' not in text
    length = document["components"]["schemas"]["PenguinRecord"]["properties"]["bill_length_mm"]
    assert (length["minimum"], length["exclusiveMinimum"], length["exclusiveMaximum"]) == (0, True, True)
    assert document["paths"].keys() == client.get("/openapi.json").json()["paths"].keys()


def test_swagger_ui_script_is_served(client: TestClient) -> None:
    response = client.get("/docs/static/swagger-ui-bundle.js")
    assert response.status_code == 200
    assert "SwaggerUIBundle" in response.text[:100_000]


def test_the_document_lists_exactly_the_served_api_routes(client: TestClient) -> None:
    served = {
        (method.lower(), route.path_format)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    # The documentation's own routes and the metrics are served but are not the API.
    undocumented = {("get", "/openapi.json"), ("get", "/docs"), ("get", "/docs/openapi-3.0.json"), ("get", "/metrics")}
    paths = client.get("/openapi.json").json()["paths"]
    documented = {(method, path) for path, operations in paths.items() for method in operations}
    assert documented == served - undocumented
