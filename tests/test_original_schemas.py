"""app/original/schemas.py: what the original dialect's bodies accept, and its document agreeing with the server.

The endpoints' answers to each body are in tests/test_original_endpoints.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError
from starlette.testclient import TestClient

from app.original.schemas import PenguinRecord, PredictRequest
from tests.helpers import RECORD

RECORDS = TypeAdapter(PenguinRecord)


def test_a_record_is_taken_with_sex_in_any_case_and_unknown_fields_dropped() -> None:
    record = RECORDS.validate_python({**RECORD, "sex": "FEMALE", "colour": "black and white"})
    assert record == {**RECORD, "sex": "Female"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("bill_length_mm", "39.1", id="number-as-text"),
        pytest.param("bill_length_mm", True, id="boolean"),
        pytest.param("bill_depth_mm", 0, id="zero"),
        pytest.param("body_mass_g", 1e39, id="beyond-float32"),
        pytest.param("island", "Atlantis", id="unknown-island"),
        pytest.param("sex", "unknown", id="unknown-sex"),
    ],
)
def test_a_record_with_a_bad_value_is_refused_at_that_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        RECORDS.validate_python({**RECORD, field: value})
    assert refused.value.errors()[0]["loc"][0] == field


def test_a_request_holds_at_least_one_record() -> None:
    with pytest.raises(ValidationError):
        PredictRequest.model_validate({"records": []})


def body_schema(client: TestClient, name: str) -> Draft202012Validator:
    """The served document's schema of a body, with its references resolved in that document."""
    document = client.get("/openapi.json").json()
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{name}"})


@pytest.mark.parametrize(("path", "schema"), [("/predict", "PredictRequest"), ("/predict/compare", "CompareRequest")])
def test_the_document_and_the_server_agree_on_max_records(
    make_client: Callable[..., TestClient], path: str, schema: str
) -> None:
    client = make_client(max_records=3)
    validator = body_schema(client, schema)
    most, too_many = {"records": [RECORD] * 3}, {"records": [RECORD] * 4}
    assert validator.is_valid(most) and client.post(path, json=most).status_code == 200
    assert not validator.is_valid(too_many) and client.post(path, json=too_many).status_code == 413
