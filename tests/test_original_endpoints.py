"""app/original/endpoints.py: every endpoint of the original API, and every client mistake answered with its status
and one sentence."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from penguins import MODEL_NAMES
from starlette.testclient import TestClient

from app.original.schemas import CompareResponse, ModelInfo, ModelList, PredictResponse
from app.routes import ROUTES_FILE
from tests.helpers import RECORD, older_model_file

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
GENTOO = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 218,
          "body_mass_g": 4950, "sex": "Female"}  # fmt: skip


def predict(client: TestClient, records: list[dict[str, Any]] | None = None, **body: Any) -> Any:
    return client.post("/predict", json={"records": records or [RECORD], **body})


# GET /


def test_root_welcomes_in_spanish_and_lists_endpoints(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json()["message"] == "Bienvenido a la API de inferencia de modelos ML"
    assert {"/models", "/models/{name}", "/predict", "/predict/compare", "/predict/{model_name}"} <= set(
        response.json()["endpoints"]
    )


def test_every_listed_endpoint_exists(models_dir: Path, client: TestClient) -> None:
    (models_dir / ROUTES_FILE).write_text('{"routes": {"penguins": {"variants": {"svc": 1}}}}')
    for path in client.get("/").json()["endpoints"]:
        name = "penguins" if path.startswith("/routes/") else "svc"
        concrete = path.replace("{name}", name).replace("{model_name}", "svc")
        method = "POST" if concrete.startswith(("/predict", "/feedback")) else "GET"
        body = {"request_id": "r", "label": "Adelie"} if concrete == "/feedback" else {"records": [RECORD]}
        response = client.request(method, concrete, json=body)
        assert response.status_code == 200, path


def test_predict_with_the_model_in_the_path_equals_the_query(client: TestClient) -> None:
    by_path = client.post("/predict/svc", json={"records": [RECORD]})
    assert by_path.status_code == 200
    assert by_path.json() == client.post("/predict?model=svc", json={"records": [RECORD]}).json()


# GET /health


def test_health_counts_the_models(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": 3}


def test_health_is_503_when_the_folder_is_missing(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    response = make_client(tmp_path / "missing").get("/health")
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"Models folder {tmp_path / 'missing'} is not readable")


def test_health_is_503_when_the_folder_is_a_file(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    response = make_client(tmp_path / "file").get("/health")
    assert response.status_code == 503
    assert "not a directory" in response.json()["detail"]


# GET /models


def test_models_lists_the_pkl_files_sorted(client: TestClient, models_dir: Path) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    assert response.json() == {
        "path": str(models_dir),
        "modelos_disponibles_total": 3,
        "modelos_disponibles": [f"{name}.pkl" for name in MODEL_NAMES],
    }
    ModelList.model_validate(response.json())


def test_models_skips_temporary_and_other_files(client: TestClient, models_dir: Path) -> None:
    (models_dir / ".random_forest.abc123.tmp").write_bytes(b"partial")
    (models_dir / ".hidden.pkl").write_bytes(b"")
    (models_dir / "notes.txt").write_text("")
    (models_dir / "folder.pkl").mkdir()
    assert client.get("/models").json()["modelos_disponibles_total"] == 3


def test_models_is_503_when_the_folder_is_missing(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    response = make_client(tmp_path / "missing").get("/models")
    assert response.status_code == 503
    assert "is not readable" in response.json()["detail"]


# GET /models/{name}


@pytest.mark.parametrize("name", ["random_forest", "random_forest.pkl"])
def test_model_info_describes_a_bundle(client: TestClient, name: str) -> None:
    response = client.get(f"/models/{name}")
    assert response.status_code == 200
    info = ModelInfo.model_validate(response.json())
    assert (info.name, info.format, info.estimator) == ("random_forest.pkl", "bundle", "RandomForestClassifier")
    assert info.classes == CLASSES
    assert info.probabilities and info.fast_path
    assert info.metrics is not None and set(info.metrics) == {"cv_score", "test_accuracy"}
    assert info.size_bytes > 0 and info.trained_at and info.sklearn_version
    assert info.sklearn_version_mismatch is None  # trained by this very scikit-learn


def test_model_info_says_svc_has_no_probabilities(client: TestClient) -> None:
    assert client.get("/models/svc").json()["probabilities"] is False


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_info_shows_the_reference_accuracy_and_the_calibrator(client: TestClient, name: str) -> None:
    info = ModelInfo.model_validate(client.get(f"/models/{name}").json())
    reference = info.reference_accuracy
    assert reference is not None and (reference.folds, reference.repeats, reference.level) == (5, 2, 0.95)
    assert 0.9 < reference.lower <= reference.mean <= reference.upper <= 1
    calibrator = info.calibrator
    assert calibrator.available and calibrator.method == "isotonic" and calibrator.reason is None
    assert calibrator.score == ("decision_margin" if name == "svc" else "top_probability")
    assert calibrator.rows == 2 * 266  # each training row held out once per repeat


def test_model_info_of_an_older_file_has_no_reference_accuracy_and_says_why_no_estimate(
    client: TestClient, models_dir: Path
) -> None:
    older_model_file(models_dir / "svc.pkl", models_dir / "older.pkl", "reference_accuracy")
    info = client.get("/models/older").json()
    assert info["reference_accuracy"] is None
    assert info["calibrator"] == {
        "available": False, "method": None, "score": None, "rows": None, "points": None, "reason": "no calibrator",
    }  # fmt: skip
    assert client.post("/predict/older", json={"records": [RECORD]}).status_code == 200


def test_model_info_unknown_is_404(client: TestClient) -> None:
    response = client.get("/models/nope")
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Model 'nope.pkl' not found in {client.get('/models').json()['path']}; "
        "available: logistic_regression.pkl, random_forest.pkl, svc.pkl."
    }


# POST /predict


def test_predict_uses_the_default_model(client: TestClient) -> None:
    response = predict(client, [RECORD, GENTOO])
    assert response.status_code == 200
    body = PredictResponse.model_validate(response.json())
    assert body.model == "random_forest.pkl"
    assert body.predictions == ["Adelie", "Gentoo"]
    assert body.classes == CLASSES
    assert body.probabilities is not None and len(body.probabilities) == 2
    assert all(set(row) == set(CLASSES) and sum(row.values()) == pytest.approx(1) for row in body.probabilities)


def test_predict_prediction_is_the_most_probable_class(client: TestClient) -> None:
    body = predict(client, [RECORD, GENTOO], model="logistic_regression").json()
    assert body["predictions"] == [max(row, key=row.get) for row in body["probabilities"]]


def test_predict_default_model_comes_from_settings(make_client: Callable[..., TestClient]) -> None:
    assert predict(make_client(default_model="svc")).json()["model"] == "svc.pkl"


def test_predict_query_model_wins_over_body(client: TestClient) -> None:
    response = client.post("/predict?model=svc", json={"records": [RECORD], "model": "logistic_regression"})
    assert response.json()["model"] == "svc.pkl"


def test_predict_body_model_with_suffix(client: TestClient) -> None:
    assert predict(client, model="logistic_regression.pkl").json()["model"] == "logistic_regression.pkl"


def test_predict_svc_has_null_probabilities(client: TestClient) -> None:
    body = predict(client, [RECORD, GENTOO], model="svc").json()
    assert body == {"model": "svc.pkl", "predictions": ["Adelie", "Gentoo"], "probabilities": None, "classes": CLASSES}


@pytest.mark.parametrize("sex", ["male", "MALE", "mAlE"])
def test_predict_accepts_sex_in_any_case(client: TestClient, sex: str) -> None:
    expected = predict(client).json()
    assert predict(client, [{**RECORD, "sex": sex}]).json() == expected


def test_predict_ignores_extra_fields(client: TestClient) -> None:
    response = predict(client, [{**RECORD, "species": "Gentoo", "year": 2007}])
    assert response.status_code == 200
    assert response.json()["predictions"] == ["Adelie"]


def test_predict_accepts_max_records(make_client: Callable[..., TestClient]) -> None:
    response = predict(make_client(max_records=5), [RECORD] * 5)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 5


# POST /predict: client mistakes


def assert_422(response: Any, loc: list[Any], error_type: str) -> None:
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert {"loc": loc, "type": error_type} in [{"loc": item["loc"], "type": item["type"]} for item in detail]
    assert all(set(item) == {"loc", "msg", "type"} and item["msg"] for item in detail)


def test_predict_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"records": [', headers={"content-type": "application/json"})
    assert_422(response, ["body"], "json_invalid")


def test_predict_empty_body_is_422(client: TestClient) -> None:
    assert_422(client.post("/predict"), ["body"], "json_invalid")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_predict_non_finite_number_is_422(client: TestClient, literal: str) -> None:
    body = json.dumps({"records": [RECORD]}).replace("39.1", literal)
    assert_422(client.post("/predict", content=body), ["body", "records", 0, "bill_length_mm"], "finite_number")


def test_predict_number_beyond_float32_is_422(client: TestClient) -> None:
    # Finite in JSON, infinite to a float32 tree: refused rather than answered with overflow.
    assert_422(predict(client, [{**RECORD, "body_mass_g": 1e300}]), ["body", "records", 0, "body_mass_g"], "less_than")


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_predict_huge_number_within_float32_is_answered(client: TestClient, model: str) -> None:
    response = predict(client, [{**RECORD, "body_mass_g": 3e38}], model=model)
    assert response.status_code == 200
    assert response.json()["probabilities"] is None or sum(
        response.json()["probabilities"][0].values()
    ) == pytest.approx(1)


@pytest.mark.parametrize("value", [0, -1.5])
def test_predict_non_positive_measurement_is_422(client: TestClient, value: float) -> None:
    assert_422(
        predict(client, [{**RECORD, "body_mass_g": value}]), ["body", "records", 0, "body_mass_g"], "greater_than"
    )


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        pytest.param("39.1", "float_type", id="string"),
        pytest.param(True, "float_type", id="boolean"),
        pytest.param(None, "float_type", id="null"),
        pytest.param([39.1], "float_type", id="list"),
    ],
)
def test_predict_wrong_type_is_422(client: TestClient, value: Any, error_type: str) -> None:
    assert_422(
        predict(client, [{**RECORD, "bill_length_mm": value}]), ["body", "records", 0, "bill_length_mm"], error_type
    )


def test_predict_records_not_a_list_is_422(client: TestClient) -> None:
    assert_422(client.post("/predict", json={"records": RECORD}), ["body", "records"], "list_type")


def test_predict_body_not_an_object_is_422(client: TestClient) -> None:
    assert_422(client.post("/predict", json=[RECORD]), ["body"], "model_type")


@pytest.mark.parametrize("field", ["island", "sex"])
def test_predict_unknown_category_is_422(client: TestClient, field: str) -> None:
    assert_422(predict(client, [{**RECORD, field: "Atlantis"}]), ["body", "records", 0, field], "literal_error")


def test_predict_island_is_case_sensitive(client: TestClient) -> None:
    assert_422(predict(client, [{**RECORD, "island": "torgersen"}]), ["body", "records", 0, "island"], "literal_error")


def test_predict_missing_field_is_422(client: TestClient) -> None:
    record = {key: value for key, value in RECORD.items() if key != "flipper_length_mm"}
    assert_422(predict(client, [record]), ["body", "records", 0, "flipper_length_mm"], "missing")


def test_predict_missing_records_is_422(client: TestClient) -> None:
    assert_422(client.post("/predict", json={"model": "svc"}), ["body", "records"], "missing")


def test_predict_empty_records_is_422(client: TestClient) -> None:
    assert_422(client.post("/predict", json={"records": []}), ["body", "records"], "too_short")


def test_predict_too_many_records_is_413(make_client: Callable[..., TestClient]) -> None:
    response = predict(make_client(max_records=5), [RECORD] * 6)
    assert response.status_code == 413
    assert response.json() == {"detail": "Got 6 records; at most MAX_RECORDS=5 are accepted per request."}


def test_predict_too_many_invalid_records_is_413_not_422(make_client: Callable[..., TestClient]) -> None:
    assert predict(make_client(max_records=5), [{"island": "nowhere"}] * 6).status_code == 413


def test_predict_unknown_model_is_404_listing_the_available(client: TestClient) -> None:
    response = predict(client, model="gradient_boosting")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("Model 'gradient_boosting.pkl' not found in ")
    assert response.json()["detail"].endswith("available: logistic_regression.pkl, random_forest.pkl, svc.pkl.")


def test_predict_unknown_default_model_is_404(make_client: Callable[..., TestClient]) -> None:
    response = predict(make_client(default_model="absent"))
    assert response.status_code == 404
    assert "'absent.pkl' not found" in response.json()["detail"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../random_forest", id="parent"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("sub/random_forest", id="subfolder"),
        pytest.param(".hidden", id="dot-file"),
        pytest.param("..", id="dot-dot"),
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param("x" * 129, id="too-long"),
        pytest.param("random_forest\x00", id="nul"),
    ],
)
def test_predict_model_name_not_a_plain_file_name_is_400(client: TestClient, name: str) -> None:
    response = client.post("/predict", params={"model": name}, json={"records": [RECORD]})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Model name ")
    assert "is not a plain file name" in response.json()["detail"]


def test_predict_body_model_not_a_plain_file_name_is_400(client: TestClient) -> None:
    assert predict(client, model="../../etc/passwd").status_code == 400


# POST /predict/compare


def test_compare_defaults_to_every_model(client: TestClient) -> None:
    response = client.post("/predict/compare", json={"records": [RECORD, GENTOO]})
    assert response.status_code == 200
    body = CompareResponse.model_validate(response.json())
    assert list(body.results) == [f"{name}.pkl" for name in MODEL_NAMES]
    assert all(result.predictions == ["Adelie", "Gentoo"] for result in body.results.values())
    assert body.results["svc.pkl"].probabilities is None
    assert body.skipped == {}


def test_compare_equals_predict_per_model(client: TestClient) -> None:
    results = client.post("/predict/compare", json={"records": [RECORD, GENTOO]}).json()["results"]
    for name in MODEL_NAMES:
        assert results[f"{name}.pkl"] == predict(client, [RECORD, GENTOO], model=name).json()


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("models=svc&models=random_forest", id="repeated"),
        pytest.param("models=svc,random_forest", id="comma-separated"),
        pytest.param("models=svc.pkl, random_forest", id="suffix-and-space"),
    ],
)
def test_compare_models_from_query(client: TestClient, query: str) -> None:
    response = client.post(f"/predict/compare?{query}", json={"records": [RECORD], "models": ["logistic_regression"]})
    assert response.status_code == 200
    assert list(response.json()["results"]) == ["svc.pkl", "random_forest.pkl"]


def test_compare_models_from_body(client: TestClient) -> None:
    response = client.post("/predict/compare", json={"records": [RECORD], "models": ["svc"]})
    assert list(response.json()["results"]) == ["svc.pkl"]


def test_compare_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/predict/compare?models=svc,nope", json={"records": [RECORD]})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("Model 'nope.pkl' not found in ")


def test_compare_invalid_model_name_is_400(client: TestClient) -> None:
    response = client.post("/predict/compare?models=svc,../svc", json={"records": [RECORD]})
    assert response.status_code == 400
    assert "'../svc' is not a plain file name" in response.json()["detail"]


def test_compare_empty_models_list_is_422(client: TestClient) -> None:
    assert_422(
        client.post("/predict/compare", json={"records": [RECORD], "models": []}), ["body", "models"], "too_short"
    )


def test_compare_too_many_records_is_413(make_client: Callable[..., TestClient]) -> None:
    response = make_client(max_records=1).post("/predict/compare", json={"records": [RECORD, RECORD]})
    assert response.status_code == 413
    assert "MAX_RECORDS=1" in response.json()["detail"]


def test_compare_with_an_empty_folder_is_empty(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    response = make_client(tmp_path).post("/predict/compare", json={"records": [RECORD]})
    assert response.status_code == 200
    assert response.json() == {"results": {}, "skipped": {}}


# Anything else


def test_unknown_path_is_404_in_fastapi_shape(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_wrong_method_is_405_in_fastapi_shape(client: TestClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
