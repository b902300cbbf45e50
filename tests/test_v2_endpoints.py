"""app/v2/endpoints.py: the Open Inference Protocol's REST API, requests written as the specification and MLServer
write them."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from penguins import MODEL_NAMES
from starlette.testclient import TestClient

from app.features import FEATURES
from tests.helpers import RECORD, older_model_file

NUMERIC = [name for name in FEATURES if name not in ("island", "sex")]
RECORDS = [
    RECORD,
    {**RECORD, "island": "Biscoe", "bill_length_mm": 50.0, "bill_depth_mm": 15.2, "flipper_length_mm": 218,
     "body_mass_g": 5700, "sex": "Female"},
    {**RECORD, "island": "Dream", "bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192,
     "body_mass_g": 3500, "sex": "FEMALE"},
]  # fmt: skip


def tensor(name: str, values: list[Any], nested: bool = False, datatype: str | None = None) -> dict[str, Any]:
    """One input as the specification writes it: [N] flat, or [N, 1] nested."""
    kind = datatype or ("BYTES" if name in ("island", "sex") else "FP64")
    shape = [len(values), 1] if nested else [len(values)]
    return {"name": name, "shape": shape, "datatype": kind, "data": [[v] for v in values] if nested else values}


def v2_request(records: list[dict[str, Any]] = RECORDS, nested: bool = False, **extra: Any) -> dict[str, Any]:
    return {"inputs": [tensor(name, [r[name] for r in records], nested) for name in FEATURES], **extra}


def infer(client: TestClient, body: dict[str, Any], model: str = "logistic_regression") -> Any:
    return client.post(f"/v2/models/{model}/infer", json=body)


def outputs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["name"]: output for output in answer["outputs"]}


def assert_error(response: Any, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"].endswith("."), body
    for word in words:
        assert word in body["error"], body


# --- server -----------------------------------------------------------------------------------------


def test_server_metadata_names_the_extensions(client: TestClient) -> None:
    body = client.get("/v2").json()
    assert body["name"] and body["version"]
    assert {"binary_tensor_data", "model_repository"} <= set(body["extensions"])


def test_live_and_ready_once_a_model_loads(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    response = client.get("/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})


def test_not_ready_without_a_loadable_model(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    (tmp_path / "broken.pkl").write_bytes(b"not a pickle")
    response = make_client(tmp_path).get("/v2/health/ready")
    assert (response.status_code, response.json()) == (400, {"ready": False})


def test_not_ready_when_the_folder_is_missing(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    response = make_client(tmp_path / "missing").get("/v2/health/ready")
    assert (response.status_code, response.json()) == (400, {"ready": False})


# --- model metadata -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_metadata_describes_inputs_outputs_and_classes(client: TestClient, name: str) -> None:
    body = client.get(f"/v2/models/{name}").json()
    assert body["name"] == name
    assert re.fullmatch(r"[0-9a-f]{12}", body["versions"][0])
    assert [(t["name"], t["datatype"], t["shape"]) for t in body["inputs"]] == [
        (feature, "BYTES" if feature in ("island", "sex") else "FP64", [-1]) for feature in FEATURES
    ]
    assert body["parameters"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    expected = [("predict", "BYTES", [-1])]
    if name != "svc":
        expected.append(("predict_proba", "FP64", [-1, 3]))
    assert [(t["name"], t["datatype"], t["shape"]) for t in body["outputs"]] == expected


def test_model_metadata_gives_the_reference_accuracy_and_an_older_file_none(
    client: TestClient, models_dir: Path
) -> None:
    parameters = client.get("/v2/models/random_forest").json()["parameters"]
    low, mean, high = (parameters[f"reference_accuracy{end}"] for end in ("_lower", "", "_upper"))
    assert 0.9 < low <= mean <= high <= 1
    older_model_file(models_dir / "random_forest.pkl", models_dir / "older.pkl", "reference_accuracy")
    assert client.get("/v2/models/older").json()["parameters"] == {"classes": ["Adelie", "Chinstrap", "Gentoo"]}


def test_model_metadata_at_its_version(client: TestClient) -> None:
    version = client.get("/v2/models/svc").json()["versions"][0]
    assert client.get(f"/v2/models/svc/versions/{version}").json()["versions"] == [version]
    assert client.get(f"/v2/models/svc.pkl/versions/{version}/ready").json() == {"name": "svc", "ready": True}


def test_the_version_changes_when_the_file_is_replaced(client: TestClient, models_dir: Path) -> None:
    before = client.get("/v2/models/svc").json()["versions"][0]
    (models_dir / "svc.pkl").write_bytes((models_dir / "logistic_regression.pkl").read_bytes())
    after = client.get("/v2/models/svc").json()["versions"][0]
    assert after != before
    assert_error(client.get(f"/v2/models/svc/versions/{before}"), 404, before)


@pytest.mark.parametrize(
    "path",
    ["/v2/models/svc/versions/1", "/v2/models/svc/versions/1/ready", "/v2/models/nope", "/v2/models/nope/ready"],
)
def test_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 404)


def test_unknown_version_infer_is_404(client: TestClient) -> None:
    assert_error(client.post("/v2/models/svc/versions/1/infer", json=v2_request()), 404, "version")


@pytest.mark.parametrize("name", ["-dash", ".hidden", "a%20b", "a" * 129])
def test_model_name_not_a_plain_file_name_is_400(client: TestClient, name: str) -> None:
    assert_error(client.get(f"/v2/models/{name}"), 400, "plain file name")


def test_broken_model_is_not_ready(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    response = client.get("/v2/models/broken/ready")
    assert (response.status_code, response.json()) == (400, {"name": "broken", "ready": False})
    assert_error(client.get("/v2/models/broken"), 500, "broken.pkl")


def test_folder_unreadable_is_503(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    folder = tmp_path / "file"
    folder.write_text("a file, not a folder")
    client = make_client(folder)
    assert_error(client.get("/v2/models/svc"), 503, "not readable")
    assert_error(client.post("/v2/repository/index"), 503, "not readable")


# --- inference: the specification's JSON ----------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_infer_answers_as_predict_does_for_the_same_records(client: TestClient, name: str) -> None:
    answer = infer(client, v2_request(), name).json()
    expected = client.post(f"/predict?model={name}", json={"records": RECORDS}).json()
    got = outputs(answer)
    assert got["predict"] == {"name": "predict", "shape": [3], "datatype": "BYTES", "data": expected["predictions"]}
    if expected["probabilities"] is None:
        assert set(got) == {"predict"}
        return
    proba = got["predict_proba"]
    assert (proba["shape"], proba["datatype"], proba["parameters"]["classes"]) == ([3, 3], "FP64", expected["classes"])
    rows = [[row[label] for label in expected["classes"]] for row in expected["probabilities"]]
    assert proba["data"] == [p for row in rows for p in row]


def test_infer_answer_names_the_model_and_version(client: TestClient) -> None:
    answer = infer(client, v2_request(id="request-7"), "svc.pkl").json()
    version = client.get("/v2/models/svc").json()["versions"][0]
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("svc", version, "request-7")


def test_infer_generates_an_id_when_absent(client: TestClient) -> None:
    first, second = (infer(client, v2_request()).json()["id"] for _ in range(2))
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_infer_takes_the_request_id_of_the_request(client: TestClient) -> None:
    headers = {"X-Request-ID": "from-the-client"}
    response = client.post("/v2/models/svc/infer", json=v2_request(), headers=headers)
    assert response.json()["id"] == response.headers["x-request-id"] == "from-the-client"
    assert client.post("/v2/models/svc/infer", json=v2_request(id="own"), headers=headers).json()["id"] == "own"


def test_nested_n_by_1_equals_flat(client: TestClient) -> None:
    flat = infer(client, v2_request()).json()["outputs"]
    assert infer(client, v2_request(nested=True)).json()["outputs"] == flat


def test_flat_data_with_an_n_by_1_shape(client: TestClient) -> None:
    body = v2_request()
    for item in body["inputs"]:
        item["shape"] = [3, 1]
    assert infer(client, body).json()["outputs"] == infer(client, v2_request()).json()["outputs"]


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP32", [181.0, 218.0, 192.0]),
        ("INT64", [181, 218, 192]),
        ("UINT16", [181, 218, 192]),
        ("FP16", [181, 218, 192]),
    ],
)
def test_every_numeric_datatype_gives_the_same_predictions(
    client: TestClient, datatype: str, values: list[Any]
) -> None:
    body = v2_request()
    body["inputs"][3] = tensor("flipper_length_mm", values, datatype=datatype)
    assert infer(client, body).json()["outputs"] == infer(client, v2_request()).json()["outputs"]


def test_inputs_in_any_order(client: TestClient) -> None:
    body = v2_request()
    body["inputs"].reverse()
    assert infer(client, body).json()["outputs"] == infer(client, v2_request()).json()["outputs"]


@pytest.mark.parametrize(
    ("wanted", "names"),
    [(["predict"], ["predict"]), (["predict_proba"], ["predict_proba"]), (["predict_proba", "predict"], None)],
)
def test_outputs_select_what_is_answered(client: TestClient, wanted: list[str], names: list[str] | None) -> None:
    answer = infer(client, v2_request(outputs=[{"name": name} for name in wanted])).json()
    assert [output["name"] for output in answer["outputs"]] == (names or wanted)


def test_predict_proba_of_a_model_without_probabilities_is_400(client: TestClient) -> None:
    assert_error(infer(client, v2_request(outputs=[{"name": "predict_proba"}]), "svc"), 400, "predict")


# --- inference: MLServer's pandas codec -----------------------------------------------------------------


@pytest.mark.parametrize("content_types", [True, False], ids=["with content types", "without"])
def test_mlserver_pandas_codec_request(client: TestClient, content_types: bool) -> None:
    """The request MLServer's PandasCodec.encode_request builds: [N, 1] columns, strings as BYTES."""
    inputs = []
    for name in FEATURES:
        values = [record[name] for record in RECORDS]
        column: dict[str, Any] = {"name": name, "shape": [len(values), 1], "data": values}
        if name in ("island", "sex"):
            column["datatype"] = "BYTES"
            if content_types:
                column["parameters"] = {"content_type": "str"}
        else:
            column["datatype"] = "INT64" if all(isinstance(v, int) for v in values) else "FP64"
        inputs.append(column)
    body: dict[str, Any] = {"inputs": inputs}
    if content_types:
        body["parameters"] = {"content_type": "pd"}
    assert infer(client, body).json()["outputs"] == infer(client, v2_request()).json()["outputs"]


# --- inference: errors ---------------------------------------------------------------------------------


def with_input(index: int, **changes: Any) -> dict[str, Any]:
    body = v2_request()
    body["inputs"][index] = {**body["inputs"][index], **changes}
    return body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(with_input(0, name="isle"), ["Unknown input", "isle"], id="unknown input"),
        pytest.param(with_input(0, datatype="FP64", data=[1.0, 2.0, 3.0]), ["island", "BYTES"], id="words as numbers"),
        pytest.param(with_input(1, datatype="BYTES", data=["1", "2", "3"]), ["bill_length_mm"], id="numbers as words"),
        pytest.param(with_input(1, datatype="BOOL", data=[True, True, True]), ["datatype"], id="BOOL"),
        pytest.param(with_input(1, datatype="FP128"), ["datatype"], id="unknown datatype"),
        pytest.param(with_input(1, shape=[3, 2]), ["[N] or [N, 1]"], id="shape N by 2"),
        pytest.param(with_input(1, shape=[1, 1, 3]), ["[N] or [N, 1]"], id="three dimensions"),
        pytest.param(with_input(1, shape=[4]), ["4 values", "holds 3"], id="shape and data disagree"),
        pytest.param(with_input(1, shape=[-3]), ["shape"], id="negative shape"),
        pytest.param(with_input(1, data=[39.1, True, 40.0]), ["number"], id="a boolean among numbers"),
        pytest.param(with_input(1, data=[39.1, "40", 40.0]), ["number"], id="a string among numbers"),
        pytest.param(with_input(0, data=["Dream", 5, "Dream"]), ["string"], id="a number among words"),
        pytest.param(with_input(1, data=[[39.1], [40.0, 41.0], [42.0]], shape=[3, 1]), ["ragged"], id="ragged nested"),
        pytest.param(with_input(1, data=None), ["neither"], id="no data"),
        pytest.param(with_input(1, data=[39.1], shape=[1]), ["one value per record"], id="ragged columns"),
        pytest.param({"inputs": v2_request()["inputs"][:5]}, ["missing: sex"], id="missing input"),
        pytest.param({"inputs": [*v2_request()["inputs"], tensor("sex", ["Male"] * 3)]}, ["twice"], id="input twice"),
        pytest.param({"inputs": []}, ["inputs", "at least 1"], id="no inputs"),
        pytest.param(with_input(0, data=["Atlantis"] * 3), ["'Atlantis'", "Biscoe"], id="unknown island"),
        pytest.param(with_input(0, data=["biscoe"] * 3), ["'biscoe'"], id="island is case sensitive"),
        pytest.param(with_input(1, data=[39.1, -1.0, 40.0]), ["-1.0", "record 1"], id="negative measurement"),
        pytest.param(with_input(1, data=[39.1, 1e39, 40.0]), ["bill_length_mm"], id="beyond float32"),
        pytest.param(v2_request([]), ["no record"], id="zero records"),
        pytest.param(v2_request(outputs=[{"name": "labels"}]), ["outputs"], id="unknown output"),
        pytest.param(v2_request(outputs=[{"name": "predict"}, {"name": "predict"}]), ["twice"], id="output twice"),
    ],
)
def test_bad_request_is_400(client: TestClient, body: dict[str, Any], words: list[str]) -> None:
    assert_error(infer(client, body), 400, *words)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"inputs": 5}', b"\xff\xfe"])
def test_malformed_json_is_400(client: TestClient, content: bytes) -> None:
    assert_error(client.post("/v2/models/svc/infer", content=content), 400, "invalid")


def test_sex_in_any_case_is_accepted(client: TestClient) -> None:
    assert infer(client, with_input(5, data=["mALE", "female", "Male"])).status_code == 200


def test_too_many_records_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_records=2)
    assert_error(infer(client, v2_request()), 413, "MAX_RECORDS=2")


def test_unknown_model_is_404(client: TestClient) -> None:
    assert_error(infer(client, v2_request(), "nope"), 404, "nope.pkl")


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/v2/models/svc/explain", 404), ("GET", "/v2/models/svc/infer", 405)]
)
def test_unknown_v2_path_or_method_in_v2_shape(client: TestClient, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert (response.status_code, list(response.json())) == (status, ["error"])


# --- Triton's binary tensor data, by hand ----------------------------------------------------------------


def binary_bytes(words: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(word.encode())) + word.encode() for word in words)


def binary_request(
    records: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None, **parameters: Any
) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the raw tensors that follow it, as tritonclient lays them out."""
    inputs, chunks = [], []
    for name in FEATURES:
        values = [record[name] for record in records]
        if name in ("island", "sex"):
            chunk, datatype = binary_bytes(values), "BYTES"
        else:
            chunk, datatype = np.asarray(values, dtype="<f4").tobytes(), "FP32"
        inputs.append({"name": name, "shape": [len(values)], "datatype": datatype,
                       "parameters": {"binary_data_size": len(chunk)}})  # fmt: skip
        chunks.append(chunk)
    header: dict[str, Any] = {"inputs": inputs, "parameters": parameters}
    if outputs is not None:
        header["outputs"] = outputs
    return header, b"".join(chunks)


def post_binary(client: TestClient, header: dict[str, Any], binary: bytes, model: str = "logistic_regression") -> Any:
    head = json.dumps(header).encode()
    return client.post(
        f"/v2/models/{model}/infer",
        content=head + binary,
        headers={"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"},
    )


def split_answer(response: Any) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def test_binary_inputs_json_outputs_equal_json(client: TestClient) -> None:
    records = [{**r, **{name: float(np.float32(r[name])) for name in NUMERIC}} for r in RECORDS]
    response = post_binary(client, *binary_request(records))
    assert response.headers["content-type"] == "application/json"
    assert response.json()["outputs"] == infer(client, v2_request(records)).json()["outputs"]


def test_binary_outputs_when_asked_for_all(client: TestClient) -> None:
    response = post_binary(client, *binary_request(RECORDS, binary_data_output=True))
    assert response.headers["content-type"] == "application/octet-stream"
    header, data = split_answer(response)
    predict, proba = header["outputs"]
    assert "data" not in predict and "data" not in proba
    size = predict["parameters"]["binary_data_size"]
    assert data[:size] == binary_bytes(predict_labels(client))
    probabilities = np.frombuffer(data[size:], dtype="<f8").reshape(proba["shape"])
    assert len(data) == size + proba["parameters"]["binary_data_size"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_binary_output_asked_per_output(client: TestClient) -> None:
    outputs: list[dict[str, Any]] = [
        {"name": "predict", "parameters": {"binary_data": True}},
        {"name": "predict_proba"},
    ]
    header, data = split_answer(post_binary(client, *binary_request(RECORDS, outputs)))
    predict, proba = header["outputs"]
    assert predict["parameters"]["binary_data_size"] == len(data)
    assert data == binary_bytes(predict_labels(client)) and len(proba["data"]) == 3 * len(RECORDS)


def predict_labels(client: TestClient) -> list[str]:
    records = [{**r, **{name: float(np.float32(r[name])) for name in NUMERIC}} for r in RECORDS]
    labels: list[str] = client.post("/predict?model=logistic_regression", json={"records": records}).json()[
        "predictions"
    ]
    return labels


@pytest.mark.parametrize(
    ("header_length", "words"),
    [("abc", ["Inference-Header-Content-Length"]), ("0", ["within"]), ("999999", ["within"])],
)
def test_bad_header_length_is_400(client: TestClient, header_length: str, words: list[str]) -> None:
    response = client.post(
        "/v2/models/svc/infer", content=b"{}", headers={"Inference-Header-Content-Length": header_length}
    )
    assert_error(response, 400, *words)


def test_binary_size_beyond_the_body_is_400(client: TestClient) -> None:
    header, binary = binary_request(RECORDS)
    assert_error(post_binary(client, header, binary[:-1]), 400, "binary_data_size")


def test_binary_data_after_the_last_input_is_400(client: TestClient) -> None:
    header, binary = binary_request(RECORDS)
    assert_error(post_binary(client, header, binary + b"\0"), 400, "after the last input")


def test_binary_numbers_of_the_wrong_size_is_400(client: TestClient) -> None:
    header, binary = binary_request(RECORDS)
    header["inputs"][1]["datatype"] = "FP64"  # 12 bytes sent, 24 announced by the datatype
    assert_error(post_binary(client, header, binary), 400, "24")


def test_binary_words_that_end_inside_an_element_is_400(client: TestClient) -> None:
    header, binary = binary_request(RECORDS)
    island = binary_bytes(["Torgersen", "Biscoe"]) + struct.pack("<I", 50) + b"Dream"
    header["inputs"][0]["parameters"]["binary_data_size"] = len(island)
    rest = binary[len(binary_bytes([r["island"] for r in RECORDS])) :]
    assert_error(post_binary(client, header, island + rest), 400, "island")


def test_binary_words_not_utf8_is_400(client: TestClient) -> None:
    header, binary = binary_request(RECORDS[:1])
    island = struct.pack("<I", 2) + b"\xff\xfe"
    header["inputs"][0]["parameters"]["binary_data_size"] = len(island)
    rest = binary[len(binary_bytes([RECORDS[0]["island"]])) :]
    assert_error(post_binary(client, header, island + rest), 400, "UTF-8")


def test_binary_and_data_together_is_400(client: TestClient) -> None:
    header, binary = binary_request(RECORDS)
    header["inputs"][0]["data"] = ["Dream"] * 3
    assert_error(post_binary(client, header, binary), 400, "both")


# --- the model repository ----------------------------------------------------------------------------


def test_index_lists_every_file_with_its_state(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    infer(client, v2_request(), "svc")
    client.get("/v2/models/broken")
    index = {entry["name"]: entry for entry in client.post("/v2/repository/index").json()}
    assert set(index) == {*MODEL_NAMES, "broken"}
    assert (index["svc"]["state"], index["svc"]["reason"]) == ("READY", "")
    assert index["broken"]["state"] == "UNAVAILABLE" and "broken.pkl" in index["broken"]["reason"]
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert {entry["name"] for entry in ready} == {name for name, e in index.items() if e["state"] == "READY"}


def test_load_then_unload_then_the_next_request_loads_again(client: TestClient) -> None:
    loaded = client.post("/v2/repository/models/random_forest/load").json()
    assert (loaded["name"], loaded["state"]) == ("random_forest", "READY")
    assert client.post("/v2/repository/models/random_forest/unload").json()["state"] == "UNAVAILABLE"
    index = {entry["name"]: entry["state"] for entry in client.post("/v2/repository/index").json()}
    assert index["random_forest"] == "UNAVAILABLE"
    assert infer(client, v2_request(), "random_forest").status_code == 200
    index = {entry["name"]: entry["state"] for entry in client.post("/v2/repository/index").json()}
    assert index["random_forest"] == "READY"


@pytest.mark.parametrize("action", ["load", "unload"])
def test_load_or_unload_unknown_is_404(client: TestClient, action: str) -> None:
    assert_error(client.post(f"/v2/repository/models/nope/{action}"), 404, "nope.pkl")


def test_index_with_a_bad_body_is_400(client: TestClient) -> None:
    assert_error(client.post("/v2/repository/index", content=b'{"ready": "maybe"}'), 400)


# --- the document ------------------------------------------------------------------------------------


def test_v2_routes_are_documented_under_their_own_tag(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    v2 = {path: item for path, item in document["paths"].items() if path.startswith("/v2")}
    assert "/v2/models/{name}/versions/{version}/infer" in v2 and "/v2/repository/index" in v2
    assert {op["tags"][0] for item in v2.values() for op in item.values()} == {"Open Inference Protocol (V2)"}
    assert {"InferenceRequest", "InferenceResponse", "ModelMetadata", "V2Error"} <= set(
        document["components"]["schemas"]
    )
    example = v2["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert infer(client, example).status_code == 200
