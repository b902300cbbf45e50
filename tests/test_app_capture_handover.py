"""A captured answer handed from a worker to its writer process: what arrives is what was captured."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from app import calibration
from app.capture import handover
from app.capture.records import COLUMNS, Captured, rows
from app.features import CATEGORICAL, FEW_RECORDS, NUMERIC, Batch
from app.registry import LoadedModel, Registry
from tests.helpers import RECORD

CONFIDENCES = COLUMNS.index("confidences")
BIRDS = [RECORD, {**RECORD, "island": "Biscoe", "sex": "Female", "flipper_length_mm": 215.0}]


@pytest.fixture(scope="module")
def registry(trained_models_dir: Path) -> Registry:
    return Registry(trained_models_dir)


def answered(model: LoadedModel, records: int, shadow: bool = False, client_id: str | None = "v2-id") -> Captured:
    batch = Batch.from_records([BIRDS[index % 2] for index in range(records)])
    prediction = model.predictor.predict(batch)
    loaded = None if shadow else model
    return Captured("r-1", client_id, 12.5, model.stem, model.version, batch, prediction, shadow, loaded)


def through(item: Captured, model: LoadedModel) -> Captured:
    """The item handed over, then taken back by a writer that was sent its model."""
    sent = handover.read_message(io.BytesIO(handover.model_message(model)))
    assert sent is not None and sent[0] == handover.MODEL
    back = handover.loaded_model(*sent[1:])
    return handover.taken_back(handover.hand_over(item).payload, {(back.stem, back.version): back})


@pytest.mark.parametrize("records", [1, FEW_RECORDS, FEW_RECORDS + 1, 500])
@pytest.mark.parametrize("name", ["logistic_regression", "svc"])
def test_an_answer_arrives_as_it_was_captured(registry: Registry, name: str, records: int) -> None:
    model = registry.get(name)
    item = answered(model, records)
    back = through(item, model)
    assert (back.request_id, back.client_id, back.at, back.model, back.version, back.shadow) == (
        "r-1", "v2-id", 12.5, model.stem, model.version, False
    )  # fmt: skip
    assert back.batch.categorical == item.batch.categorical and np.array_equal(back.batch.numeric, item.batch.numeric)
    assert back.prediction.classes == item.prediction.classes
    assert back.prediction.indices.tolist() == item.prediction.indices.tolist()
    if item.prediction.probabilities is None:
        assert back.prediction.probabilities is None
    else:
        assert back.prediction.probabilities is not None
        assert np.array_equal(back.prediction.probabilities, item.prediction.probabilities)
    # The row the writer stores is the one the worker would have stored, confidences included.
    assert rows([back]) == rows([item])
    assert rows([back])[0][CONFIDENCES] is not None  # the confidences: the model arrived with its calibrator


@pytest.mark.parametrize("records", [1, FEW_RECORDS + 1])
def test_a_batch_made_from_columns_arrives_as_it_was_captured(registry: Registry, records: int) -> None:
    # The V2 dialect's batches: columns, their measurements a transposed (Fortran-ordered) matrix.
    rows_sent = [BIRDS[index % 2] for index in range(records)]
    columns = {name: [row[name] for row in rows_sent] for name in RECORD}
    batch = Batch.from_columns({name: columns[name] for name in CATEGORICAL}, {name: columns[name] for name in NUMERIC})
    model = registry.get("random_forest")
    item = Captured("r", None, 1.0, model.stem, model.version, batch, model.predictor.predict(batch), loaded=model)
    back = through(item, model)
    assert back.batch.categorical == batch.categorical and back.batch.numeric.tolist() == batch.numeric.tolist()
    assert rows([back]) == rows([item])


def test_the_model_sent_keeps_its_calibrator_and_reference(registry: Registry) -> None:
    model = registry.get("svc")
    sent = handover.read_message(io.BytesIO(handover.model_message(model)))
    assert sent is not None
    back = handover.loaded_model(*sent[1:])
    assert (back.name, back.stamp, back.version) == (model.name, model.stamp, model.version)
    assert back.reference_accuracy == model.reference_accuracy
    item = answered(model, 40)
    expected = calibration.confidence(model, item.batch, item.prediction)
    found = calibration.confidence(back, item.batch, item.prediction)
    assert expected is not None and found is not None and np.array_equal(found, expected)


def test_a_shadow_answer_needs_no_model(registry: Registry) -> None:
    model = registry.get("random_forest")
    item = answered(model, 3, shadow=True, client_id=None)
    back = handover.taken_back(handover.hand_over(item).payload, {})
    assert back.shadow and back.loaded is None and back.client_id is None
    assert rows([back]) == rows([item])


def test_an_answer_whose_model_was_not_sent_is_kept_without_its_confidence(registry: Registry) -> None:
    model = registry.get("logistic_regression")
    back = handover.taken_back(handover.hand_over(answered(model, 2)).payload, {})
    assert back.loaded is None and rows([back])[0][CONFIDENCES] is None


def test_a_word_no_category_names_is_handed_over_as_sent(registry: Registry) -> None:
    model = registry.get("logistic_regression")
    item = answered(model, FEW_RECORDS + 2)
    item.batch = Batch({**item.batch.categorical, "island": ["Atlantis"] * len(item)}, item.batch.numeric)
    back = handover.taken_back(handover.hand_over(item).payload, {})
    assert back.batch.categorical["island"] == ["Atlantis"] * len(item)


def test_frames_follow_each_other_and_a_cut_one_ends_the_stream() -> None:
    frames = handover.message(handover.FLUSH, 1) + handover.message(handover.DROPPED, 7)
    stream = io.BytesIO(frames + handover.message(handover.FLUSH, 2)[:-1])
    assert handover.read_message(stream) == (handover.FLUSH, 1)
    assert handover.read_message(stream) == (handover.DROPPED, 7)
    assert handover.read_message(stream) is None
