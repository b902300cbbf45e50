"""app/v2/types.py: the V2 bodies' types and their document, which says all the codec requires that JSON Schema
can say: every feature once, a shape of [N] or [N, 1] with N within MAX_RECORDS, data or binary data.

What it cannot say (lengths that agree with the shapes, binary sizes against the bytes that follow) the codec
checks alone: tests/test_v2_codec.py and tests/test_v2_endpoints.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter
from starlette.testclient import TestClient

from app.features import FEATURES
from app.v2.types import EXAMPLE_REQUEST, InferenceRequest
from tests.helpers import RECORD


def column(name: str, values: list[Any], **changed: Any) -> dict[str, Any]:
    datatype = "BYTES" if name in ("island", "sex") else "FP64"
    return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values, **changed}


def request(records: int, **changed: Any) -> dict[str, Any]:
    """`records` copies of the example record, the island column changed as given."""
    inputs = [column(name, [RECORD[name]] * records) for name in FEATURES]
    inputs[0] |= changed
    return {"inputs": inputs}


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(max_records=3)


@pytest.fixture
def validator(client: TestClient) -> Draft202012Validator:
    """The served document's schema of an inference request."""
    document = client.get("/openapi.json").json()
    return Draft202012Validator({**document, "$ref": "#/components/schemas/InferenceRequest"})


def infer(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/v2/models/logistic_regression/infer", json=body)


def test_the_example_is_valid_for_pydantic_the_document_and_the_server(
    client: TestClient, validator: Draft202012Validator
) -> None:
    TypeAdapter(InferenceRequest).validate_python(EXAMPLE_REQUEST)
    assert validator.is_valid(EXAMPLE_REQUEST)
    assert infer(client, EXAMPLE_REQUEST).status_code == 200


def test_a_column_sent_nested_as_n_by_one_is_valid(client: TestClient, validator: Draft202012Validator) -> None:
    body = request(2, shape=[2, 1], data=[[RECORD["island"]], [RECORD["island"]]])
    assert validator.is_valid(body)
    assert infer(client, body).status_code == 200


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"shape": [4]}, id="shape-over-max-records"),
        pytest.param({"shape": [4], "data": [RECORD["island"]] * 4}, id="data-over-max-records"),
    ],
)
def test_more_records_than_max_records_are_refused_by_the_document_and_the_server(
    client: TestClient, validator: Draft202012Validator, changed: dict[str, Any]
) -> None:
    body = request(3, **changed)
    assert not validator.is_valid(body)
    assert infer(client, body).status_code == 413
    assert validator.is_valid(request(3)) and infer(client, request(3)).status_code == 200


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param({"binary_data_size": None}, id="null-size"),
        pytest.param({"binary_data_size": 8}, id="a-size-beside-data"),
        pytest.param({"binary_data_size": -1}, id="negative-size"),
    ],
)
def test_a_binary_size_beside_data_or_not_a_size_is_refused_by_the_document_and_the_server(
    client: TestClient, validator: Draft202012Validator, parameters: dict[str, Any]
) -> None:
    body = request(1, parameters=parameters)
    assert not validator.is_valid(body)
    response = infer(client, body)
    assert response.status_code == 400
    assert "'island'" in response.json()["error"]


def test_other_parameters_are_free(client: TestClient, validator: Draft202012Validator) -> None:
    body = request(1, parameters={"content_type": "str", "custom": [1, 2]})
    assert validator.is_valid(body)
    assert infer(client, body).status_code == 200
