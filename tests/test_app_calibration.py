"""app/calibration.py on the models scripts/train.py writes: the estimate before labels, and files without one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from penguins import MODEL_NAMES, NUMERIC, load_penguins, split, top_label_score

from app.calibration import (
    DECISION_MARGIN,
    TOP_PROBABILITY,
    Calibrator,
    NoCalibrator,
    confidence,
    read_calibrator,
    scores,
)
from app.features import Batch
from app.modelfile import unpack
from app.predictors import build_predictor
from app.registry import LoadedModel, Registry
from tests.helpers import RECORD, ROOT, older_model_file

# How close the mean calibrated confidence must come to the accuracy on rows no model has seen.
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def held_out() -> tuple[pd.DataFrame, np.ndarray]:
    _, X_test, _, y_test = split(load_penguins(ROOT / "data"))
    return X_test.reset_index(drop=True), y_test.to_numpy()


def batch_of(rows: pd.DataFrame) -> Batch:
    records: list[dict[str, Any]] = rows.to_dict(orient="records")
    return Batch.from_records(records)


def load(folder: Path, name: str) -> LoadedModel:
    return Registry(folder).get(name)


def mean_confidence(model: LoadedModel, rows: pd.DataFrame) -> tuple[float, np.ndarray]:
    batch = batch_of(rows)
    prediction = model.predictor.predict(batch)
    estimate = confidence(model, batch, prediction)
    assert estimate is not None
    return float(estimate.mean()), np.asarray(prediction.labels())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_mean_confidence_on_held_out_rows_is_close_to_their_accuracy(
    trained_models_dir: Path, held_out: tuple[pd.DataFrame, np.ndarray], name: str
) -> None:
    rows, species = held_out
    model = load(trained_models_dir, name)
    estimate, labels = mean_confidence(model, rows)
    accuracy = float((labels == species).mean())
    assert abs(estimate - accuracy) <= TOLERANCE, (estimate, accuracy)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_estimate_falls_as_the_records_move_away_from_the_training_rows(
    trained_models_dir: Path, held_out: tuple[pd.DataFrame, np.ndarray], name: str
) -> None:
    rows, _ = held_out
    model = load(trained_models_dir, name)
    rng = np.random.default_rng(0)
    blurred = pd.concat([rows] * 10, ignore_index=True)
    for column in NUMERIC:  # noise of a standard deviation: many records land near or over a boundary
        blurred[column] += rng.normal(0, rows[column].std(), len(blurred))
    blurred[NUMERIC] = blurred[NUMERIC].clip(lower=1.0)
    clean, _ = mean_confidence(model, rows)
    shifted, _ = mean_confidence(model, blurred)
    assert shifted < clean - 0.02, (clean, shifted)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_server_scores_each_record_as_training_did(
    trained_models_dir: Path, held_out: tuple[pd.DataFrame, np.ndarray], name: str
) -> None:
    rows, _ = held_out
    model = load(trained_models_dir, name)
    assert isinstance(model.calibrator, Calibrator)
    assert model.calibrator.score == (DECISION_MARGIN if name == "svc" else TOP_PROBABILITY)
    batch = batch_of(rows)
    served = scores(model.predictor, batch, model.predictor.predict(batch), model.calibrator.score)
    trained = top_label_score(joblib.load(trained_models_dir / f"{name}.pkl")["model"], rows)
    np.testing.assert_allclose(served, trained, rtol=1e-12, atol=1e-12)


def test_the_svc_answers_as_before_and_without_probabilities(
    trained_models_dir: Path, held_out: tuple[pd.DataFrame, np.ndarray]
) -> None:
    rows, _ = held_out
    bundle = joblib.load(trained_models_dir / "svc.pkl")
    model = load(trained_models_dir, "svc")
    batch = batch_of(rows)
    prediction = model.predictor.predict(batch)
    assert confidence(model, batch, prediction) is not None
    expected = bundle["label_encoder"].inverse_transform(bundle["model"].predict(rows)).tolist()
    assert prediction.labels() == expected
    assert prediction.probabilities is None and not model.predictor.has_probabilities
    assert model.predictor.predict(batch).labels() == expected  # the estimate changed nothing


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_an_older_file_without_a_calibrator_is_served_without_an_estimate(
    trained_models_dir: Path, tmp_path: Path, held_out: tuple[pd.DataFrame, np.ndarray], name: str
) -> None:
    older_model_file(trained_models_dir / f"{name}.pkl", tmp_path / f"{name}.pkl")
    model = load(tmp_path, name)
    batch = batch_of(held_out[0])
    prediction = model.predictor.predict(batch)
    assert model.calibrator == NoCalibrator("no calibrator")
    assert confidence(model, batch, prediction) is None
    assert len(prediction.labels()) == len(batch)


def test_a_bare_estimator_has_no_calibrator(trained_models_dir: Path, tmp_path: Path) -> None:
    joblib.dump(joblib.load(trained_models_dir / "random_forest.pkl")["model"], tmp_path / "bare.pkl")
    model = load(tmp_path, "bare")
    assert model.unpacked.format == "estimator" and model.calibrator == NoCalibrator("no calibrator")


GOOD = {"method": "isotonic", "score": TOP_PROBABILITY, "x": [0.4, 0.6, 1.0], "y": [0.2, 0.9, 1.0], "rows": 10}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        pytest.param(["isotonic"], "it is a list, not a dict", id="not-a-dict"),
        pytest.param({**GOOD, "method": "sigmoid"}, "its method is 'sigmoid', not 'isotonic'", id="method"),
        pytest.param({**GOOD, "score": "entropy"}, "its score is 'entropy'", id="score"),
        pytest.param({**GOOD, "x": [0.4, 0.3, 1.0]}, "x is not in non-decreasing order", id="x-order"),
        pytest.param({**GOOD, "y": [0.9, 0.2, 1.0]}, "y is not in non-decreasing order", id="y-order"),
        pytest.param({**GOOD, "y": [0.2, 0.9, 1.5]}, "its probabilities leave [0, 1]", id="y-range"),
        pytest.param({**GOOD, "y": [0.2, 1.0]}, "x has 3 points and y 2", id="lengths"),
        pytest.param({**GOOD, "x": [0.4, float("nan"), 1.0]}, "x holds something other than finite numbers", id="nan"),
        pytest.param({**GOOD, "x": []}, "x is not a list of 1 to", id="empty"),
        pytest.param({**GOOD, "rows": -1}, "its rows is -1, not a count", id="rows"),
    ],
)
def test_a_malformed_calibrator_is_refused_with_its_reason_and_the_model_still_served(
    trained_models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, entry: Any, reason: str
) -> None:
    older_model_file(trained_models_dir / "logistic_regression.pkl", tmp_path / "edited.pkl", calibrator=entry)
    with caplog.at_level(logging.WARNING, logger="app"):
        model = load(tmp_path, "edited")
    assert isinstance(model.calibrator, NoCalibrator) and model.calibrator.malformed
    assert model.calibrator.reason.startswith(f"malformed calibrator: {reason}")
    assert f"edited.pkl is served without an accuracy estimate: malformed calibrator: {reason}" in caplog.text
    batch = Batch.from_records([RECORD])
    prediction = model.predictor.predict(batch)
    assert len(prediction.labels()) == 1 and confidence(model, batch, prediction) is None


def test_a_calibrator_must_read_a_score_the_model_has(trained_models_dir: Path) -> None:
    svc = unpack(joblib.load(trained_models_dir / "svc.pkl"))
    wrong = unpack({"model": svc.model, "label_encoder": svc.label_encoder, "metadata": {}, "calibrator": GOOD})
    read = read_calibrator(wrong, build_predictor(wrong))
    assert read == NoCalibrator(
        "malformed calibrator: it reads the top class probability of a model that gives no probabilities", True
    )


def test_a_calibrator_maps_scores_between_its_points_and_holds_its_ends() -> None:
    calibrator = Calibrator(TOP_PROBABILITY, np.array([0.4, 0.6, 1.0]), np.array([0.2, 0.9, 1.0]), 10)
    assert calibrator.calibrate(np.array([0.1, 0.4, 0.5, 0.8, 1.0])).tolist() == pytest.approx(
        [0.2, 0.2, 0.55, 0.95, 1.0]
    )
