"""The capture's parts apart: a batch's row, the bounded queue, the writer, the Wilson interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from app import calibration
from app.capture.accuracy import performance, wilson
from app.capture.records import (
    COLUMNS,
    FLOAT,
    INDEX,
    PROBABILITY,
    SPECIES,
    Captured,
    Reference,
    measurements,
    rows,
    unpack,
    words,
)
from app.capture.store import Joined, Recent, Store, VersionRow
from app.capture.writer import Writer, capture_queue
from app.errors import StoreUnavailable
from app.features import CATEGORY_INDEX, FEW_RECORDS, UNKNOWN, Batch
from app.predictors import Prediction
from app.queues import RecordQueue
from app.registry import LoadedModel, Registry
from tests.helpers import RECORD, ROOT, wait_for

PACKED_COLUMNS = ("predicted", "probabilities", "confidences", "measurements", "island", "sex")

CLASSES = ("Adelie", "Chinstrap", "Gentoo")


def captured(count: int, request_id: str = "r") -> Captured:
    probabilities = np.tile([0.7, 0.2, 0.1], (count, 1))
    prediction = Prediction(CLASSES, np.zeros(count, dtype=int), probabilities)
    return Captured(request_id, "v2-id", 5.0, "m", "v1", Batch.from_records([RECORD] * count), prediction)


def test_species_are_the_data_sets() -> None:
    assert tuple(sorted(pd.read_csv(ROOT / "data" / "penguins.csv")["species"].dropna().unique())) == SPECIES


def test_a_batch_is_one_row_carrying_the_request_the_answers_and_the_features() -> None:
    (row,) = rows([captured(2)])
    stored = dict(zip(COLUMNS, row, strict=True))
    assert row[:7] == ("r", "v2-id", 5.0, "m", "v1", False, 2)
    assert unpack(stored["predicted"], INDEX).tolist() == [0, 0]  # Adelie, by its index in the classes
    assert unpack(stored["probabilities"], PROBABILITY, 3).tolist() == [pytest.approx([0.7, 0.2, 0.1])] * 2
    assert stored["confidences"] is None  # no model, no confidence
    assert measurements(stored["measurements"]).tolist() == [[39.1, 18.7, 181.0, 3750.0]] * 2
    codes = CATEGORY_INDEX["island"]["Torgersen"], CATEGORY_INDEX["sex"]["Male"]
    assert (stored["island"], stored["sex"], stored["words"]) == (bytes([codes[0]] * 2), bytes([codes[1]] * 2), None)
    assert words([stored["island"], stored["sex"]], None) == {"island": ["Torgersen"] * 2, "sex": ["Male"] * 2}


@pytest.mark.parametrize("count", [1, FEW_RECORDS + 1])
def test_packed_columns_are_bytearrays_which_the_sqlite_driver_binds_without_adapting(count: int) -> None:
    for row in rows([captured(count, "a"), captured(count, "b")]):
        stored = dict(zip(COLUMNS, row, strict=True))
        assert stored["confidences"] is None  # no model, no confidence
        assert [type(stored[name]) for name in PACKED_COLUMNS if name != "confidences"] == [bytearray] * 5


def test_a_word_that_is_no_known_category_is_kept_as_sent() -> None:
    item = captured(2)
    item.batch = Batch({"island": ["Torgersen", "Atlantis"], "sex": ["Male", "Female"]}, item.batch.numeric)
    (row,) = rows([item])
    stored = dict(zip(COLUMNS, row, strict=True))
    assert stored["island"] == bytes([CATEGORY_INDEX["island"]["Torgersen"], UNKNOWN])
    assert words([stored["island"], stored["sex"]], stored["words"]) == item.batch.categorical


def test_packed_values_read_the_same_on_any_machine() -> None:
    (row,) = rows([captured(1)])
    stored = dict(zip(COLUMNS, row, strict=True))
    assert stored["predicted"] == b"\x00\x00"  # little-endian whatever the machine's order
    assert stored["measurements"][:8] == np.array([39.1], dtype=">f8").tobytes()[::-1]


def test_the_writers_queue_wakes_it_once_half_full() -> None:
    wake = threading.Event()
    queue: RecordQueue[Captured] = capture_queue(10, wake)
    assert queue.put(captured(4)) and not wake.is_set()
    assert queue.put(captured(1)) and wake.is_set()


def test_the_writer_writes_in_the_background_and_everything_on_stop(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    dropped: list[int] = []
    writer = Writer(store, 1000, lambda: None, dropped.append)
    writer.start()
    writer.queue.put(captured(3, "a"))
    wait_for(lambda: store.coverage("m", "v1", 10)[1] >= 3, 10, "the writer's first three records")
    writer.queue.put(captured(2, "b"))
    writer.stop(10)
    assert store.coverage("m", "v1", 10) == (0, 5) and dropped == []


class ArrivingStore(Store):
    """A real store during whose first write a request is answered: its batch is queued meanwhile."""

    arriving: Callable[[], object] = staticmethod(lambda: None)

    def insert(self, *args: Any, **kwargs: Any) -> None:
        super().insert(*args, **kwargs)
        arriving, self.arriving = self.arriving, lambda: None
        arriving()


def test_a_round_writes_what_was_queued_when_it_began_and_a_flush_everything(tmp_path: Path) -> None:
    store = ArrivingStore(f"sqlite:///{tmp_path / 'c.db'}")
    dropped: list[int] = []
    writer = Writer(store, 1000, lambda: None, dropped.append)
    store.arriving = lambda: writer.queue.put(captured(2, "late"))
    writer.queue.put(captured(3, "early"))
    writer._write_queued(raise_on_failure=False, drain=False)  # a round of the writer's thread
    assert store.coverage("m", "v1", 10) == (0, 3) and writer.queue.records == 2
    writer._write_queued(raise_on_failure=False, drain=False)  # the next round: nothing arrives meanwhile
    assert store.coverage("m", "v1", 10) == (0, 5) and writer.queue.records == 0
    store.arriving = lambda: writer.queue.put(captured(4, "later"))
    writer.queue.put(captured(1, "first"))
    writer.flush()  # for a label or a stop: what arrives while it writes is written too
    assert store.coverage("m", "v1", 10) == (0, 10) and writer.queue.records == 0 and dropped == []


def test_an_unwritable_store_drops_counts_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "app")
    blocker = tmp_path / "folder"
    blocker.write_text("a file where the store's folder should be")
    store = Store(f"sqlite:///{blocker / 'c.db'}")
    dropped: list[int] = []
    writer = Writer(store, 1000, lambda: None, dropped.append)
    writer.queue.put(captured(3))
    with pytest.raises(StoreUnavailable, match="File exists"):
        writer.flush()
    assert dropped == [3] and writer.queue.records == 0
    assert any("cannot be written" in record.getMessage() for record in caplog.records)
    blocker.unlink()
    writer.queue.put(captured(2))
    writer.flush()
    assert store.coverage("m", "v1", 10) == (0, 2)
    assert any("reachable again" in record.getMessage() for record in caplog.records)


class FaultyStore(Store):
    """A real store whose next insert fails with an error of the writer's own, not the store's."""

    fail_next = False

    def insert(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug while writing")
        super().insert(*args, **kwargs)


def test_a_fault_of_the_writers_own_drops_its_batches_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "app")
    store = FaultyStore(f"sqlite:///{tmp_path / 'c.db'}")
    dropped: list[int] = []
    writer = Writer(store, 1000, lambda: None, dropped.append)
    store.fail_next = True
    writer.queue.put(captured(3, "lost"))
    writer.start()
    wait_for(lambda: dropped == [3], 10, "the failed round's records counted as dropped")
    writer.queue.put(captured(2, "kept"))
    wait_for(lambda: store.coverage("m", "v1", 10)[1] == 2, 10, "the next round written by the same thread")
    writer.stop(10)
    assert dropped == [3] and writer.queue.records == 0
    assert any("capture writer failed on 1 batches (3 records)" in record.getMessage() for record in caplog.records)


def test_rows_carry_each_records_own_probabilities() -> None:
    item = captured(3)
    assert item.prediction.probabilities is not None
    item.prediction.probabilities[:] = [[0.5, 0.25, 0.25], [1e-7, 0.9999999, 0.0], [0.1, 0.2, 0.7]]
    (row,) = rows([item])
    stored = unpack(row[COLUMNS.index("probabilities")], PROBABILITY, 3)
    # Kept as float32: seven significant digits of what was answered.
    assert np.allclose(stored, item.prediction.probabilities, rtol=1e-6, atol=1e-9)


def test_many_batches_packed_together_are_each_their_own_row() -> None:
    """Batches of two widths of probabilities, one without them, a small and a big one, and an unknown word."""
    two = Prediction(("Adelie", "Gentoo"), np.array([1, 0, 1]), np.array([[0.4, 0.6], [0.9, 0.1], [0.3, 0.7]]))
    batches = [captured(1, "a"), captured(2, "b"), captured(3, "c"), captured(1, "d"), captured(1, "e")]
    batches[2].prediction = two
    batches[3].prediction = Prediction(CLASSES, np.array([2]), None)
    batches[4].batch = Batch({"island": ["Atlantis"], "sex": ["Female"]}, batches[4].batch.numeric)
    wide = captured(FEW_RECORDS + 1, "f")
    for group in (batches, [*batches, wide]):
        assert rows(group) == [row for item in group for row in rows([item])]
        assert len({repr(row) for row in rows(group)}) == len(group)  # no two alike (bytearrays do not hash)
    (row,) = rows([batches[2]])
    assert unpack(row[COLUMNS.index("probabilities")], PROBABILITY, 2).tolist() == pytest.approx(two.probabilities)


@pytest.fixture(scope="module")
def registry(trained_models_dir: Path) -> Registry:
    return Registry(trained_models_dir)


@pytest.fixture(scope="module")
def svc(registry: Registry) -> LoadedModel:
    return registry.get("svc")


BIRDS = [RECORD, {**RECORD, "island": "Biscoe", "flipper_length_mm": 215.0}, {**RECORD, "bill_length_mm": 48.0}]


def answered(model: LoadedModel, records: list[dict[str, object]], request_id: str) -> Captured:
    batch = Batch.from_records(records)
    return Captured(
        request_id, None, 5.0, model.stem, model.version, batch, model.predictor.predict(batch), loaded=model
    )


@pytest.mark.parametrize(
    "names", [pytest.param(["svc"], id="one-model"), pytest.param(["svc", "logistic_regression"], id="two-models")]
)
def test_confidences_are_estimated_once_per_model_and_equal_each_batchs_own(
    registry: Registry, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Six batches of one to three records, the models taking turns.
    models = [registry.get(names[i % len(names)]) for i in range(6)]
    items = [answered(model, BIRDS[: 1 + i % 3], f"r{i}") for i, model in enumerate(models)]
    calls: list[int] = []
    real = calibration.confidence

    def counted(model: calibration.Calibrated, batch: Batch, prediction: Prediction) -> np.ndarray | None:
        calls.append(len(batch))
        return real(model, batch, prediction)

    expected = []
    for model, item in zip(models, items, strict=True):  # each batch on its own: what the writer once did
        estimate = real(model, item.batch, item.prediction)
        assert estimate is not None
        expected += estimate.tolist()
    monkeypatch.setattr(calibration, "confidence", counted)
    stored = [unpack(row[COLUMNS.index("confidences")], FLOAT).tolist() for row in rows(items)]
    assert list(chain.from_iterable(stored)) == pytest.approx(expected)
    assert len(calls) == len(names) and sum(calls) == len(expected)


def test_rows_carry_the_answering_models_calibrated_confidence(svc: LoadedModel) -> None:
    batch = Batch.from_records([RECORD, {**RECORD, "island": "Biscoe", "flipper_length_mm": 215.0}])
    prediction = svc.predictor.predict(batch)
    item = Captured("r", None, 5.0, "svc", svc.version, batch, prediction, loaded=svc)
    expected = calibration.confidence(svc, batch, prediction)
    assert expected is not None and ((expected > 0) & (expected <= 1)).all()
    (row,) = rows([item])
    assert unpack(row[COLUMNS.index("confidences")], FLOAT).tolist() == pytest.approx(expected.tolist())


def test_a_shadow_answer_has_no_confidence(svc: LoadedModel) -> None:
    batch = Batch.from_records([RECORD])
    item = Captured("r", None, 5.0, "svc", svc.version, batch, svc.predictor.predict(batch), True, loaded=svc)
    assert rows([item])[0][COLUMNS.index("confidences")] is None


def test_the_calibrator_runs_in_the_writer_process_never_on_a_request(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = calibration.confidence

    def counted(model: calibration.Calibrated, batch: Batch, prediction: Prediction) -> np.ndarray | None:
        calls.append(len(batch))
        return real(model, batch, prediction)

    monkeypatch.setattr(calibration, "confidence", counted)
    client = make_client()
    for name in ("svc", "logistic_regression"):
        assert client.post(f"/predict/{name}", json={"records": [RECORD] * 3}).status_code == 200
    assert client.post("/predict/compare", json={"records": [RECORD]}).status_code == 200
    # A post of labels writes what the worker captured first: each model's answers, with their estimates.
    assert client.post("/feedback", json={"request_id": "none", "label": "Adelie"}).status_code == 200
    for name, records in (("svc", 4), ("logistic_regression", 4), ("random_forest", 1)):
        (version, *_) = client.get(f"/models/{name}/performance").json()["versions"]
        assert version["estimated_records"] == records and 0 < version["estimated_accuracy"] <= 1, name
    assert calls == []  # none in the serving process


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [
        # Reference values: the roots of (p - share)² = z² p (1 - p) / n, solved apart.
        pytest.param(8, 10, 0.4901624, 0.9433178, id="8-of-10"),
        pytest.param(0, 10, 0.0, 0.2775328, id="none-right"),
        pytest.param(10, 10, 0.7224672, 1.0, id="all-right"),
        pytest.param(950, 1000, 0.9346862, 0.9618697, id="950-of-1000"),
    ],
)
def test_the_wilson_interval(correct: int, total: int, low: float, high: float) -> None:
    assert wilson(correct, total) == pytest.approx((low, high), abs=1e-6)


def test_performance_of_a_window() -> None:
    version = VersionRow("m", "v1", CLASSES, 0.0, 10.0, Reference(0.97, 0.95, 0.99))
    window = [Joined("Adelie", "Adelie", 0.0, 10.0), Joined("Adelie", "Gentoo", 0.0, 20.0),
              Joined("Gentoo", "Gentoo", 5.0, 4.0)]  # fmt: skip
    figures = performance(version, window, Recent(3, 6, 0.9, 5))
    assert (figures.correct, figures.window_labels, figures.coverage) == (2, 3, 0.5)
    assert figures.confusion == {("Adelie", "Adelie"): 1, ("Gentoo", "Adelie"): 1, ("Gentoo", "Gentoo"): 1}
    assert figures.delays == {0.5: 10.0, 0.9: pytest.approx(18.0)}  # a label before its prediction took 0 s
    assert (figures.estimated_accuracy, figures.estimated_records, figures.reference) == (0.9, 5, version.reference)
    empty = performance(version, [], Recent(0, 0, None, 0))
    assert (empty.accuracy, empty.coverage, empty.delays, empty.estimated_accuracy) == (None, None, {}, None)
