"""Bad V2 input, generated: whatever a client sends to infer, never a 5xx, and every 4xx in V2's error shape."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app.config import Settings
from app.features import FEATURES
from app.main import create_app

# A hundred cases a test: each test keeps finding nothing new well before that on these small bodies.
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "STRING", ""]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from([*FEATURES, "other"]) | st.text(max_size=8)},
    optional={
        "shape": st.lists(st.integers(min_value=-2, max_value=4), max_size=3) | json_values,
        "datatype": st.sampled_from(DATATYPES) | json_values,
        "data": json_values | st.lists(st.floats() | st.text(max_size=10) | st.integers(), max_size=4),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-2, 40) | json_values}),
    },
)
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=7)},
    optional={
        "id": json_values,
        "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["predict", "predict_proba", "x"])})),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": json_values}),
    },
)


@pytest.fixture(scope="module")
def client(trained_models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=trained_models_dir))) as client:
        yield client


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert list(body) == ["error"] and body["error"], body


@FUZZ
@given(body=requests, model=st.sampled_from(["logistic_regression", "svc", "random_forest"]))
def test_infer_survives_odd_requests(client: TestClient, body: dict[str, Any], model: str) -> None:
    check(client.post(f"/v2/models/{model}/infer", content=json.dumps(body, allow_nan=True)))


@FUZZ
@given(
    body=requests,
    binary=st.binary(max_size=64),
    header_length=st.integers(-5, 2000) | st.binary(max_size=5) | st.sampled_from([b"\xb2", b"1\xb9", b" 7 "]),
)
def test_infer_survives_odd_binary_requests(
    client: TestClient, body: dict[str, Any], binary: bytes, header_length: int | bytes
) -> None:
    header = json.dumps(body, allow_nan=True).encode()
    length = header_length if isinstance(header_length, bytes) else str(header_length or len(header)).encode()
    response = client.post(
        "/v2/models/svc/infer", content=header + binary, headers={b"Inference-Header-Content-Length": length}
    )
    check(response)


@FUZZ
@given(words=st.lists(st.binary(max_size=12), min_size=1, max_size=5), lengths=st.lists(st.integers(0, 2**32 - 1)))
def test_infer_survives_odd_bytes_elements(client: TestClient, words: list[bytes], lengths: list[int]) -> None:
    """BYTES elements whose length prefixes may lie about what follows."""
    prefixes = [lengths[i] if i < len(lengths) else len(word) for i, word in enumerate(words)]
    island = b"".join(struct.pack("<I", prefix) + word for prefix, word in zip(prefixes, words, strict=True))
    inputs = [{"name": "island", "shape": [len(words)], "datatype": "BYTES",
               "parameters": {"binary_data_size": len(island)}}]  # fmt: skip
    inputs += [{"name": name, "shape": [len(words)], "datatype": "FP64", "data": [40.0] * len(words)}
               for name in FEATURES[1:-1]]  # fmt: skip
    inputs.append({"name": "sex", "shape": [len(words)], "datatype": "BYTES", "data": ["Male"] * len(words)})
    header = json.dumps({"inputs": inputs}).encode()
    response = client.post(
        "/v2/models/svc/infer", content=header + island, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    check(response)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_infer_survives_any_bytes(client: TestClient, raw: bytes) -> None:
    check(client.post("/v2/models/svc/infer", content=raw))
