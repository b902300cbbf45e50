"""POST /feedback and GET /models/{name}/performance through the app, with the default SQLite store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from penguins import MODEL_NAMES, load_penguins, split
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app.capture import Label
from app.original.feedback import LABELS, parse_labels
from tests.helpers import RECORD, ROOT, older_model_file

TOKEN = "a-token-of-at-least-16-chars"
GENTOO = {**RECORD, "island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 218,
          "body_mass_g": 4950, "sex": "Female"}  # fmt: skip


# How close the estimate before labels must come to the accuracy the labels then show, on rows no model has seen.
TOLERANCE = 0.03


def predict(client: TestClient, request_id: str, records: list[dict[str, Any]], path: str = "/predict") -> Any:
    answer = client.post(path, json={"records": records}, headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_labels_join_the_predictions_of_their_request(client: TestClient) -> None:
    predict(client, "req-a", [RECORD, GENTOO], "/predict/logistic_regression")
    answer = client.post("/feedback", json=[{"request_id": "req-a", "label": "Adelie"},
                                            {"request_id": "req-a", "row": 1, "label": "Adelie"}])  # fmt: skip
    assert answer.status_code == 200
    assert answer.json() == {"received": 2, "matched": 2, "unknown": 0, "unchanged": 0, "conflicting": 0,
                             "conflicts": []}  # fmt: skip
    body = client.get("/models/logistic_regression/performance").json()
    (version,) = body["versions"]
    assert (version["window_labels"], version["correct"], version["accuracy"]) == (2, 1, 0.5)
    assert version["confusion"]["Adelie"] == {"Adelie": 1, "Chinstrap": 0, "Gentoo": 1}
    assert version["current"] and version["version"] == body["version"]
    assert version["coverage"] == 1.0
    assert 0 < version["accuracy_lower"] < 0.5 < version["accuracy_upper"] < 1


def test_the_answer_keeps_exactly_its_fields(client: TestClient) -> None:
    assert set(predict(client, "r", [RECORD])) == {"model", "predictions", "probabilities", "classes"}


def test_a_label_is_idempotent_and_a_different_one_conflicts(client: TestClient) -> None:
    predict(client, "req-b", [RECORD])
    label = {"request_id": "req-b", "label": "Adelie"}
    assert client.post("/feedback", json=label).json()["matched"] == 1
    assert client.post("/feedback", json=label).json()["unchanged"] == 1
    conflicting = client.post("/feedback", json={**label, "label": "Gentoo"}).json()
    assert conflicting["conflicting"] == 1
    assert conflicting["conflicts"] == [{"request_id": "req-b", "row": 0, "label": "Gentoo", "kept": "Adelie"}]


def test_a_label_for_a_comparison_scores_every_model(client: TestClient) -> None:
    predict(client, "req-c", [RECORD], "/predict/compare")
    assert client.post("/feedback", json={"request_id": "req-c", "label": "Adelie"}).json()["matched"] == 1
    for model in ("logistic_regression", "random_forest", "svc"):
        (version,) = client.get(f"/models/{model}/performance").json()["versions"]
        assert version["window_labels"] == 1 and version["accuracy"] == 1.0


def test_an_unknown_request_id_is_counted_unknown(client: TestClient) -> None:
    answer = client.post("/feedback", json={"request_id": "never-seen", "label": "Gentoo"}).json()
    assert (answer["matched"], answer["unknown"]) == (0, 1)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        pytest.param({"request_id": "r", "label": "Emperor"}, 400, "'Emperor' is not a species", id="unknown-species"),
        pytest.param(
            [{"request_id": "r", "label": "Adelie"}, {"request_id": "r", "label": "adelie"}],
            400,
            "(label 1)",
            id="species-in-a-list",
        ),
        pytest.param({"label": "Adelie"}, 422, "Field required", id="no-request-id"),
        pytest.param({"request_id": "r", "label": "Adelie", "row": -1}, 422, "greater than or equal", id="bad-row"),
        pytest.param({"request_id": "r", "label": "Adelie", "row": "1"}, 422, "valid integer", id="row-as-text"),
        pytest.param([], 422, "at least 1", id="empty-list"),
        # Lists that the quick reading of plain labels passes on to pydantic.
        pytest.param([{"request_id": "r", "label": "Adelie", "row": True}], 422, "valid integer", id="row-as-bool"),
        pytest.param([{"request_id": "r" * 129, "label": "Adelie"}], 422, "at most 128", id="long-request-id"),
        pytest.param([{"request_id": "", "label": "Adelie"}], 422, "at least 1", id="empty-request-id"),
        pytest.param([{"request_id": "r", "label": ["Adelie"]}], 422, "valid string", id="label-as-list"),
        pytest.param([{"request_id": "r", "label": "Adelie"}, "Gentoo"], 422, "valid dictionary", id="not-an-object"),
        pytest.param("Adelie", 422, "label object", id="a-string"),
    ],
)
def test_bad_labels_are_refused_in_one_sentence(client: TestClient, body: Any, status: int, words: str) -> None:
    answer = client.post("/feedback", json=body)
    assert answer.status_code == status
    assert words in str(answer.json()["detail"])


def test_plain_labels_read_quickly_are_those_pydantic_reads() -> None:
    plain = [{"request_id": "r", "label": "Adelie"}, {"request_id": "s", "row": 3, "label": "Gentoo", "extra": 1}]
    expected = [Label("r", 0, "Adelie"), Label("s", 3, "Gentoo")]
    assert parse_labels(json.dumps(plain).encode(), 10) == expected
    assert [Label(item.request_id, item.row, item.label) for item in LABELS.validate_python(plain)] == expected


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    answer = client.post("/feedback", content=b"{not json")
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "json_invalid"


def test_more_labels_than_max_records_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_records=2)
    answer = client.post("/feedback", json=[{"request_id": "r", "label": "Adelie"}] * 3)
    assert answer.status_code == 413 and answer.json() == {
        "detail": "Got 3 labels; at most MAX_RECORDS=2 are accepted per request."
    }


def test_feedback_needs_the_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_token=TOKEN)
    label = {"request_id": "r", "label": "Adelie"}
    assert client.post("/feedback", json=label).status_code == 401
    assert client.get("/models/svc/performance").status_code == 401
    assert client.post("/feedback", json=label, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_with_capture_off_both_answer_404(make_client: Callable[..., TestClient]) -> None:
    client = make_client(capture=False)
    predict(client, "r", [RECORD])
    for answer in (client.post("/feedback", json={"request_id": "r", "label": "Adelie"}),
                   client.get("/models/svc/performance")):  # fmt: skip
        assert answer.status_code == 404 and "CAPTURE=0" in answer.json()["detail"]


def test_an_unknown_model_has_no_performance(client: TestClient) -> None:
    assert client.get("/models/nope/performance").status_code == 404


def test_listed_on_the_welcome_and_in_the_document(client: TestClient) -> None:
    assert {"/feedback", "/models/{name}/performance"} <= set(client.get("/").json()["endpoints"])
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/feedback"] and "get" in paths["/models/{name}/performance"]


def test_an_unreachable_store_answers_503_and_predictions_go_on(
    make_client: Callable[..., TestClient], capfd: pytest.CaptureFixture[str]
) -> None:
    client = make_client(capture_url="postgresql://nobody@127.0.0.1:9/none")
    predict(client, "r", [RECORD])
    answer = client.post("/feedback", json={"request_id": "r", "label": "Adelie"})
    assert answer.status_code == 503
    assert answer.json() == {"detail": "The capture store cannot be reached now; the cause is in the server log."}
    assert "capture store postgresql cannot be written" in capfd.readouterr().err  # the writer process's log
    metrics = client.get("/metrics").text
    assert "penguins_capture_dropped_total 1.0" in metrics


def samples(client: TestClient, name: str) -> dict[str, float]:
    """One gauge's samples in a scrape, by model."""
    families = text_string_to_metric_families(client.get("/metrics").text)
    return {sample.labels["model"]: sample.value for family in families for sample in family.samples
            if sample.name == name}  # fmt: skip


def test_the_estimate_on_held_out_records_is_close_to_their_accuracy(client: TestClient) -> None:
    _, rows, _, species = split(load_penguins(ROOT / "data"))
    records = json.loads(rows.to_json(orient="records"))
    predict(client, "held-out", records, "/predict/compare")
    labels = [{"request_id": "held-out", "row": row, "label": label} for row, label in enumerate(species)]
    assert client.post("/feedback", json=labels).json()["matched"] == len(records)
    estimated = samples(client, "penguins_estimated_accuracy")
    reference = samples(client, "penguins_reference_accuracy")
    for name in MODEL_NAMES:
        (version,) = client.get(f"/models/{name}/performance").json()["versions"]
        assert version["window_labels"] == version["estimated_records"] == len(records)
        assert version["estimated_accuracy"] == pytest.approx(version["accuracy"], abs=TOLERANCE), name
        assert estimated[name] == version["estimated_accuracy"]
        trained = client.get(f"/models/{name}").json()["reference_accuracy"]
        assert version["reference"] == {key: trained[key] for key in ("mean", "lower", "upper")}
        assert reference[name] == trained["mean"]


def test_a_file_without_calibrator_or_reference_has_neither(client: TestClient, models_dir: Path) -> None:
    older_model_file(models_dir / "svc.pkl", models_dir / "older.pkl", "reference_accuracy")
    predict(client, "older", [RECORD] * 4, "/predict/older")
    assert client.post("/feedback", json={"request_id": "older", "label": "Adelie"}).json()["matched"] == 1
    (version,) = client.get("/models/older/performance").json()["versions"]
    assert (version["estimated_accuracy"], version["estimated_records"], version["reference"]) == (None, 0, None)
    assert version["recent_predictions"] == 4
    for name in ("penguins_estimated_accuracy", "penguins_reference_accuracy", "penguins_reference_accuracy_lower"):
        assert "older" not in samples(client, name)
    assert "svc" not in samples(client, "penguins_reference_accuracy")  # svc has not answered yet
