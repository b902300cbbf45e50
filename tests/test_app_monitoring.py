"""app/monitoring/: the reference profile read at load, every prediction counted, the figures read back exactly."""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import tritonclient.http as triton
from starlette.testclient import TestClient

from app.buffers import LocalBuffers, SharedBuffers
from app.config import Settings
from app.dataplane import DataPlane
from app.features import CATEGORICAL, FEATURES, ISLANDS, NUMERIC, SEXES, Batch
from app.monitoring.figures import build_report, level, psi
from app.monitoring.profile import NO_PROFILE, NoProfile, Profile, parse_profile, read_profile
from app.monitoring.tally import CONFIDENCE_BUCKETS, Tally, tally_size
from app.predictors import Prediction
from tests.helpers import RECORD

CLASSES = ("Adelie", "Chinstrap", "Gentoo")
DRIFT_SERIES = r"penguins_(feature_drift|prediction_drift|drift_window|predictions|prediction_confidence|feature_out)"
EDGES = [1.0, 2.0, 3.0]


def reference() -> dict[str, Any]:
    """A small profile: each measurement in bins (-inf, 1], (1, 2], (2, 3], (3, +inf), trained between 0.5 and 3.5."""
    numeric = {name: {"edges": EDGES, "shares": [0.25] * 4, "min": 0.5, "max": 3.5} for name in NUMERIC}
    categorical = {"island": {"Biscoe": 0.5, "Dream": 0.25, "Torgersen": 0.25}, "sex": {"Male": 0.5, "Female": 0.5}}
    predicted = {"Adelie": 0.5, "Chinstrap": 0.2, "Gentoo": 0.3}
    return {"rows": 200, "numeric": numeric, "categorical": categorical, "predicted_classes": predicted}


def profile() -> Profile:
    return parse_profile(reference(), CLASSES, probabilities=True)


# --- the PSI and its reading ------------------------------------------------------------------------------


def test_psi_matches_a_hand_computed_example() -> None:
    # (0.4 - 0.5) ln(0.4 / 0.5) + (0.4 - 0.3) ln(0.4 / 0.3) + (0.2 - 0.2) ln 1
    # = 0.1 x 0.223144 + 0.1 x 0.287682 + 0 = 0.0510826
    assert psi(np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])) == pytest.approx(0.0510826, abs=1e-7)


def test_psi_counts_an_empty_bin_as_a_share_of_one_in_ten_thousand() -> None:
    # (1 - 0.5) ln(1 / 0.5) + (0.0001 - 0.5) ln(0.0001 / 0.5) = 0.346574 + 0.4999 x 8.517193 = 4.604318
    assert psi(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(4.604318, abs=1e-6)


def test_psi_of_identical_shares_is_zero() -> None:
    assert psi(np.array([0.1, 0.0, 0.9]), np.array([0.1, 0.0, 0.9])) == 0.0


@pytest.mark.parametrize(
    ("value", "records", "expected"),
    [
        pytest.param(None, 0, "no records", id="empty"),
        pytest.param(3.0, 99, "too few records", id="few"),
        pytest.param(0.0999, 100, "stable", id="stable"),
        pytest.param(0.1, 100, "moderate", id="moderate-from-0.1"),
        pytest.param(0.25, 1000, "moderate", id="moderate-up-to-0.25"),
        pytest.param(0.2501, 1000, "significant", id="significant"),
    ],
)
def test_the_psi_is_read_by_the_usual_thresholds(value: float | None, records: int, expected: str) -> None:
    assert level(value, records) == expected


# --- the profile ------------------------------------------------------------------------------------------


def test_a_file_without_a_profile_has_none() -> None:
    assert read_profile({"name": "svc"}, CLASSES, True) is NO_PROFILE
    assert read_profile(None, CLASSES, True) is NO_PROFILE


def test_a_profile_survives_its_trip_through_a_shared_buffers_header() -> None:
    read = profile()
    again = parse_profile(read.plain(), CLASSES, True)
    assert again.plain() == read.plain() == reference()


def malformed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    entry = reference()
    change(entry)
    return entry


MALFORMED = [
    pytest.param("a string", "it is a str, not a dict", id="not-a-dict"),
    pytest.param(malformed(lambda e: e.pop("rows")), "'rows' is not a whole number above 0", id="no-rows"),
    pytest.param(
        malformed(lambda e: e["numeric"].pop("body_mass_g")), "'numeric' does not describe", id="feature-gone"
    ),
    pytest.param(
        malformed(lambda e: e["numeric"]["bill_length_mm"].update(edges=[2.0, 1.0, 3.0])),
        "bill_length_mm's edges are not increasing",
        id="edges-unsorted",
    ),
    pytest.param(
        malformed(lambda e: e["numeric"]["bill_depth_mm"].update(shares=[0.5, 0.5])),
        "bill_depth_mm has 2 shares for 4 bins",
        id="shares-miscounted",
    ),
    pytest.param(
        malformed(lambda e: e["numeric"]["body_mass_g"].update(shares=[0.5, 0.5, 0.5, 0.5])),
        "body_mass_g's shares are not shares summing to 1",
        id="shares-sum-to-2",
    ),
    pytest.param(
        malformed(lambda e: e["numeric"]["body_mass_g"].update(min="light")),
        "body_mass_g's min and max are not a list of numbers",
        id="min-a-word",
    ),
    pytest.param(
        malformed(lambda e: e["numeric"]["flipper_length_mm"].update(edges=[1.0, float("nan"), 3.0])),
        "flipper_length_mm's edges are not all finite",
        id="edge-nan",
    ),
    pytest.param(
        malformed(lambda e: e["categorical"]["island"].update(Atlantis=0.0)),
        "'island' is not a dict of shares of Biscoe, Dream, Torgersen",
        id="unknown-island",
    ),
    pytest.param(
        malformed(lambda e: e["predicted_classes"].update(Emperor=0.0)),
        "'predicted_classes' is not a dict of shares of Adelie, Chinstrap, Gentoo",
        id="unknown-class",
    ),
]


@pytest.mark.parametrize(("entry", "reason"), MALFORMED)
def test_a_malformed_profile_is_no_profile_with_its_reason(entry: Any, reason: str) -> None:
    read = read_profile({"reference": entry}, CLASSES, True)
    assert isinstance(read, NoProfile) and read.malformed
    assert read.reason.startswith(f"malformed reference profile: {reason}")


def test_a_category_or_class_the_profile_leaves_out_has_a_share_of_zero() -> None:
    entry = malformed(lambda e: e["predicted_classes"].update(Adelie=0.7, Gentoo=0.0))
    entry["predicted_classes"].pop("Chinstrap")
    entry["predicted_classes"]["Adelie"] = 1.0
    read = parse_profile(entry, CLASSES, True)
    assert read.class_shares.tolist() == [1.0, 0.0, 0.0]


# --- the tally against a brute-force count ----------------------------------------------------------------


def random_batch(rng: np.random.Generator, records: int) -> tuple[Batch, Prediction]:
    """Measurements from 0 to 4 (some outside the profile's 0.5 to 3.5), random categories and probabilities."""
    categorical = {"island": rng.choice(ISLANDS, records).tolist(), "sex": rng.choice(SEXES, records).tolist()}
    probabilities = rng.dirichlet(np.ones(len(CLASSES)) / 2, records)
    batch = Batch(categorical, rng.uniform(0, 4, (records, len(NUMERIC))))
    return batch, Prediction(CLASSES, probabilities.argmax(axis=1), probabilities)


def brute_force(history: list[tuple[Batch, Prediction]], window: int) -> dict[str, Any]:
    """What the figures must be, recounted from every record ever added."""
    numeric = np.concatenate([batch.numeric for batch, _ in history])
    categories = {name: [value for batch, _ in history for value in batch.categorical[name]] for name in CATEGORICAL}
    probabilities = np.concatenate([prediction.probabilities for _, prediction in history])
    classes, top = probabilities.argmax(axis=1), probabilities.max(axis=1)
    recent = numeric[-window:]
    return {
        "numeric": [np.bincount(np.searchsorted(EDGES, recent[:, i]), minlength=4) / len(recent) for i in range(4)],
        "island": [categories["island"][-window:].count(name) / len(recent) for name in ISLANDS],
        "classes": np.bincount(classes[-window:], minlength=3) / len(recent),
        "predicted": np.bincount(classes, minlength=3).tolist(),
        "out_of_range": ((numeric < 0.5) | (numeric > 3.5)).sum(axis=0).tolist(),
        "confidence": np.bincount(np.searchsorted(CONFIDENCE_BUCKETS, top), minlength=9).tolist(),
        "confidence_sum": top.sum(),
        "window_mean": top[-window:].mean(),
    }


@pytest.mark.parametrize("shared", [False, True], ids=["in-memory", "shared-file"])
def test_the_figures_equal_a_recount_of_every_record(shared: bool, tmp_path: Path) -> None:
    window, read = 100, profile()
    buffers = SharedBuffers(tmp_path) if shared else LocalBuffers()
    tally = Tally(read, window, buffers.open("key", read.header(window), tally_size(read, window)))
    rng, history = np.random.default_rng(7), []
    # Batches that fill, wrap and overflow the ring of 100, and records folded into the totals on the way.
    for records in [1, 5, 93, 1, 100, 3, 250, 7, 60, 40, 1, 99, 101]:
        history.append(random_batch(rng, records))
        tally.add(*history[-1])
        report, expected = build_report("m", read, window, tally.read()), brute_force(history, window)

        assert report.window_records == min(sum(len(batch) for batch, _ in history), window)
        numeric = zip(report.features, expected["numeric"], expected["out_of_range"], strict=False)
        for feature, shares, outside in numeric:
            assert feature.window == pytest.approx(shares.tolist())
            assert feature.out_of_range == outside
        assert report.features[4].window == pytest.approx(expected["island"])
        assert report.predictions is not None and report.predictions.window == pytest.approx(expected["classes"])
        assert [count for _, count in report.predicted] == expected["predicted"]
        assert report.confidence is not None and list(report.confidence.counts) == expected["confidence"]
        assert report.confidence.total == pytest.approx(expected["confidence_sum"])
        assert report.confidence.window_mean == pytest.approx(expected["window_mean"])


def test_two_workers_mapping_one_file_see_the_same_counts(tmp_path: Path) -> None:
    window, read = 100, profile()
    one, two = SharedBuffers(tmp_path), SharedBuffers(tmp_path)  # as two processes would: two mappings
    writer = Tally(read, window, one.open("key", read.header(window), tally_size(read, window)))
    found = two.attach("key")
    assert found is not None and found[0] == read.header(window)
    reader = Tally(read, window, found[1])
    rng = np.random.default_rng(3)
    for records in [40, 80, 1]:
        writer.add(*random_batch(rng, records))
        assert build_report("m", read, window, reader.read()) == build_report("m", read, window, writer.read())
    assert build_report("m", read, window, reader.read()).records == 121


def test_a_tally_takes_the_same_bytes_whatever_the_traffic(tmp_path: Path) -> None:
    window, read = 100, profile()
    buffers = SharedBuffers(tmp_path)
    tally = Tally(read, window, buffers.open("key", read.header(window), tally_size(read, window)))
    (file,) = tmp_path.iterdir()
    size = file.stat().st_size
    rng = np.random.default_rng(5)
    for _ in range(20):
        tally.add(*random_batch(rng, 500))
    assert file.stat().st_size == size < 64_000


# --- the monitor, through the API -------------------------------------------------------------------------


def drift(client: TestClient, model: str) -> dict[str, Any]:
    response = client.get(f"/models/{model}/drift")
    assert response.status_code == 200, response.text
    figures: dict[str, Any] = response.json()
    return figures


def v2_body(records: list[dict[str, Any]], binary: bool) -> tuple[bytes, dict[str, str]]:
    """An infer request as tritonclient writes it, JSON or binary tensors."""
    inputs = []
    for name in FEATURES:
        values = np.array([record[name] for record in records], dtype=object if name in CATEGORICAL else np.float64)
        tensor = triton.InferInput(name, [len(records)], "BYTES" if name in CATEGORICAL else "FP64")
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs)
    return body, {"Inference-Header-Content-Length": str(json_size)} if json_size is not None else {}


def test_every_prediction_of_both_dialects_is_counted(client: TestClient) -> None:
    assert client.post("/predict?model=logistic_regression", json={"records": [RECORD] * 2}).status_code == 200
    assert client.post("/predict/logistic_regression", json={"records": [RECORD] * 3}).status_code == 200
    compare = "/predict/compare?models=logistic_regression&models=svc"
    assert client.post(compare, json={"records": [RECORD] * 4}).status_code == 200
    for records, binary in [(5, False), (6, True)]:
        body, headers = v2_body([RECORD] * records, binary)
        assert client.post("/v2/models/logistic_regression/infer", content=body, headers=headers).status_code == 200

    figures = drift(client, "logistic_regression")
    assert (figures["window"]["records"], figures["records"]) == (20, 20)
    assert figures["features"]["island"]["window"] == [0.0, 0.0, 1.0]  # Torgersen, every one
    assert drift(client, "svc")["window"]["records"] == 4
    assert drift(client, "random_forest")["window"]["records"] == 0


def test_records_refused_by_validation_are_not_counted(client: TestClient) -> None:
    unknown = {**RECORD, "island": "Atlantis"}
    assert client.post("/predict?model=svc", json={"records": [RECORD, unknown]}).status_code == 422
    body, headers = v2_body([RECORD, unknown], binary=True)
    assert client.post("/v2/models/svc/infer", content=body, headers=headers).status_code == 400

    assert drift(client, "svc")["records"] == 0


def test_values_outside_the_training_range_are_counted_in_the_end_bins(client: TestClient) -> None:
    light, heavy = {**RECORD, "body_mass_g": 1.0}, {**RECORD, "body_mass_g": 99_999.0}
    assert client.post("/predict?model=svc", json={"records": [light, heavy, heavy, RECORD]}).status_code == 200

    body_mass = drift(client, "svc")["features"]["body_mass_g"]
    assert body_mass["out_of_range"] == 3
    assert (body_mass["window"][0], body_mass["window"][-1]) == (0.25, 0.5)


def replace_atomically(source: Path, target: Path) -> None:
    """As train.py writes: a new file renamed over the old one."""
    staged = target.with_suffix(".tmp")
    shutil.copy(source, staged)
    os.replace(staged, target)


def test_a_replaced_model_file_starts_a_fresh_window(client: TestClient, models_dir: Path) -> None:
    assert client.post("/predict?model=logistic_regression", json={"records": [RECORD] * 5}).status_code == 200
    before = drift(client, "logistic_regression")
    replace_atomically(models_dir / "svc.pkl", models_dir / "logistic_regression.pkl")
    assert client.post("/predict?model=logistic_regression", json={"records": [RECORD] * 2}).status_code == 200

    after = drift(client, "logistic_regression")
    assert (before["records"], after["records"], after["window"]["records"]) == (5, 2, 2)
    assert after["version"] != before["version"]
    assert after["confidence"] is None  # the new file's model (an SVC) has no probabilities


@pytest.mark.parametrize("change", ["removed", "replaced"])
@pytest.mark.parametrize("read", ["page", "scrape"])
def test_every_read_sweeps_the_counts_of_a_removed_or_replaced_file(
    models_dir: Path, tmp_path: Path, read: str, change: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    plane = DataPlane(Settings(models_dir=models_dir), shared_folder=shared)
    # The page reads one model's figures at a time (DataPlane.drift), the scrape every model's (drift_reports).
    read_figures = {"page": lambda: plane.drift(plane.load("random_forest")), "scrape": plane.drift_reports}[read]
    plane.predict(plane.load("svc"), Batch.from_records([RECORD]))
    (counts,) = shared.iterdir()
    read_figures()
    assert counts.exists()  # the file is still there, and so are its counts

    if change == "removed":
        (models_dir / "svc.pkl").unlink()
    else:
        replace_atomically(models_dir / "logistic_regression.pkl", models_dir / "svc.pkl")
    read_figures()
    assert not counts.exists()


def test_a_model_file_without_a_profile_is_served_without_figures(client: TestClient, models_dir: Path) -> None:
    joblib.dump(joblib.load(models_dir / "svc.pkl")["model"], models_dir / "bare.pkl")
    for model in ["bare", "svc"]:
        assert client.post(f"/predict?model={model}", json={"records": [RECORD]}).status_code == 200

    figures = drift(client, "bare")
    assert (figures["monitored"], figures["reason"], figures["features"]) == (False, "no reference profile", {})
    exported = client.get("/metrics").text.splitlines()
    assert 'penguins_drift_window_records{model="svc"} 1.0' in exported
    assert not [line for line in exported if re.match(DRIFT_SERIES, line) and 'model="bare"' in line]


@pytest.mark.parametrize(("entry", "reason"), MALFORMED[2:5])
def test_a_malformed_profile_is_a_load_warning_and_predictions_go_on(
    client: TestClient, models_dir: Path, caplog: pytest.LogCaptureFixture, entry: Any, reason: str
) -> None:
    bundle = joblib.load(models_dir / "logistic_regression.pkl")
    bundle["metadata"]["reference"] = copy.deepcopy(entry)
    joblib.dump(bundle, models_dir / "edited.pkl")
    with caplog.at_level(logging.WARNING, logger="app"):
        assert client.post("/predict?model=edited", json={"records": [RECORD]}).status_code == 200

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    (warning,) = warnings
    assert warning.startswith(f"edited.pkl is served without drift figures: malformed reference profile: {reason}")
    figures = drift(client, "edited")
    assert not figures["monitored"] and figures["reason"].startswith("malformed reference profile")


def test_drift_monitoring_off_counts_nothing_and_answers_404(make_client: Callable[..., TestClient]) -> None:
    client = make_client(drift_monitoring=False)
    assert client.post("/predict?model=svc", json={"records": [RECORD]}).status_code == 200

    off = {"detail": "Drift monitoring is off (DRIFT_MONITORING=0)."}
    for path in ["/models/svc/drift", "/monitor"]:
        response = client.get(path)
        assert (response.status_code, response.json()) == (404, off)
    assert "penguins_feature_drift_psi" not in client.get("/metrics").text
