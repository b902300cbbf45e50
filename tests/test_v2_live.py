"""The V2 front-end through a real client: tritonclient over real HTTP to a live server, JSON and binary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from penguins import MODEL_NAMES
from tritonclient.utils import InferenceServerException

from app.features import CATEGORICAL, FEATURES
from tests.helpers import ROOT

SIZES = [1, 10_000]


@pytest.fixture(scope="module")
def server(live_url: str) -> str:
    return live_url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.removeprefix("http://"), connection_timeout=60, network_timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    """10,000 records drawn from the real data set (complete rows), in a fixed order."""
    data = pd.read_csv(ROOT / "data" / "penguins.csv").dropna()
    return data.sample(n=10_000, replace=True, random_state=0)[list(FEATURES)].reset_index(drop=True)


def triton_inputs(frame: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name in FEATURES:
        values = frame[name].to_numpy(dtype=object if name in CATEGORICAL else np.float64)
        tensor = triton.InferInput(name, [len(values)], "BYTES" if name in CATEGORICAL else "FP64")
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def as_text(values: np.ndarray) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else value for value in values.tolist()]


def predict_answer(server: str, model: str, frame: pd.DataFrame) -> dict[str, Any]:
    records = frame.to_dict(orient="records")
    response = httpx.post(f"{server}/predict/{model}", json={"records": records}, timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_tritonclient_predictions_equal_predict(
    server: str, client: triton.InferenceServerClient, penguins: pd.DataFrame, model: str, binary: bool, size: int
) -> None:
    frame = penguins.head(size)
    expected = predict_answer(server, model, frame)
    wanted = ["predict"] if expected["probabilities"] is None else ["predict", "predict_proba"]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in wanted]
    result = client.infer(model, triton_inputs(frame, binary), outputs=outputs, request_id="r-1")
    answer = result.get_response()
    assert (answer["model_name"], answer["id"]) == (model, "r-1")
    assert as_text(result.as_numpy("predict")) == expected["predictions"]
    if expected["probabilities"] is not None:
        probabilities = result.as_numpy("predict_proba")
        assert probabilities.shape == (size, 3)
        rows = [[row[label] for label in expected["classes"]] for row in expected["probabilities"]]
        assert probabilities.tolist() == rows


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_tritonclient_default_outputs_come_back_binary(
    server: str, client: triton.InferenceServerClient, penguins: pd.DataFrame, model: str
) -> None:
    """Without outputs, tritonclient asks for every output as binary (binary_data_output)."""
    frame = penguins.head(50)
    expected = predict_answer(server, model, frame)
    result = client.infer(model, triton_inputs(frame, binary=True))
    assert all("data" not in output for output in result.get_response()["outputs"])
    assert as_text(result.as_numpy("predict")) == expected["predictions"]
    assert (result.as_numpy("predict_proba") is None) == (expected["probabilities"] is None)


def test_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("random_forest")
    assert [tensor["name"] for tensor in metadata["inputs"]] == list(FEATURES)
    version = metadata["versions"][0]
    assert client.is_model_ready("random_forest", model_version=version)
    assert not client.is_model_ready("random_forest", model_version="0")


def test_tritonclient_loads_and_unloads_through_the_repository(client: triton.InferenceServerClient) -> None:
    client.load_model("svc")
    assert {entry["name"]: entry["state"] for entry in client.get_model_repository_index()}["svc"] == "READY"
    client.unload_model("svc")
    assert {entry["name"]: entry["state"] for entry in client.get_model_repository_index()}["svc"] == "UNAVAILABLE"
    assert client.is_model_ready("svc")  # the next request loads it again


def test_tritonclient_sees_errors_with_their_status(
    client: triton.InferenceServerClient, penguins: pd.DataFrame
) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", triton_inputs(penguins.head(1), binary=True))
    assert unknown.value.status() == "404" and "nope.pkl" in unknown.value.message()
    bad = penguins.head(2).assign(island=["Atlantis", "Dream"])
    with pytest.raises(InferenceServerException) as invalid:
        client.infer("svc", triton_inputs(bad, binary=True))
    assert invalid.value.status() == "400" and "Atlantis" in invalid.value.message()
