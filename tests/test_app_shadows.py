"""Shadows: a route's shadows predict what its variant answered, off the request path, compared exactly."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from app.capture.schema import batches
from app.capture.store import Store
from app.config import Settings
from app.dataplane import DataPlane
from app.errors import ModelNotFound
from app.features import Batch
from app.logs import RequestContext, current_request
from app.observer import Comparison, Observer
from app.predictors import Prediction
from app.registry import LoadedModel
from app.routes import ROUTES_FILE, Route
from app.shadows import Shadows, compare
from tests.helpers import odd_records, wait_for

ROUTE = {"variants": {"logistic_regression": 1}, "shadows": ["random_forest", "svc"]}


class Recording(Observer):
    """What the core reported about routes and shadows, summed."""

    def __init__(self) -> None:
        self.answered: Counter[tuple[str, str]] = Counter()
        self.records: Counter[tuple[str, str, str]] = Counter()
        self.disagreements: Counter[tuple[str, str, str]] = Counter()
        self.differences: dict[tuple[str, str, str], float | None] = {}
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.reports: Counter[tuple[str, str, str]] = Counter()  # shadowed() calls: one per prediction

    def route_answered(self, route: str, variant: str, records: int) -> None:
        self.answered[route, variant] += records

    def shadowed(self, route: str, variant: str, shadow: str, comparison: Comparison) -> None:
        key = (route, variant, shadow)
        self.reports[key] += 1
        self.records[key] += comparison.records
        self.disagreements[key] += comparison.disagreements
        self.differences[key] = comparison.probability_difference

    def shadows_dropped(self, route: str, reason: str, records: int) -> None:
        self.dropped[route, reason] += records


def plane_with_route(models_dir: Path, **options: Any) -> DataPlane:
    (models_dir / ROUTES_FILE).write_text(json.dumps({"routes": {"penguins": ROUTE}}))
    return DataPlane(Settings(models_dir=models_dir, capture=False, **options), Recording())


def route_of(plane: DataPlane) -> Route:
    route = plane.route("penguins")
    assert route is not None
    return route


def recording(plane: DataPlane) -> Recording:
    assert isinstance(plane.observer, Recording)
    return plane.observer


def prediction(classes: tuple[str, ...], indices: list[int], probabilities: list[list[float]] | None) -> Prediction:
    return Prediction(classes, np.array(indices), None if probabilities is None else np.array(probabilities))


def test_classes_are_compared_by_name_whatever_their_order() -> None:
    answer = prediction(("Adelie", "Gentoo"), [0, 1, 1], None)
    shadow = prediction(("Gentoo", "Adelie"), [1, 0, 1], None)
    assert compare(answer, shadow) == Comparison(3, 1, None)


def test_the_difference_is_of_each_models_probability_of_its_own_class() -> None:
    answer = prediction(("Adelie", "Gentoo"), [0, 1], [[0.9, 0.1], [0.4, 0.6]])
    shadow = prediction(("Adelie", "Gentoo"), [0, 0], [[0.7, 0.3], [0.8, 0.2]])
    comparison = compare(answer, shadow)
    assert (comparison.records, comparison.disagreements) == (2, 1)
    assert comparison.probability_difference == pytest.approx(0.2 + 0.2)


def test_disagreement_is_exact_on_records_two_models_are_known_to_part_on(models_dir: Path) -> None:
    plane = plane_with_route(models_dir)
    batch = Batch.from_records(odd_records(300))
    answering, shadow = plane.load("logistic_regression"), plane.load("random_forest")
    expected_answer, expected_shadow = answering.predictor.predict(batch), shadow.predictor.predict(batch)
    differ = int(np.count_nonzero(np.array(expected_answer.labels()) != np.array(expected_shadow.labels())))
    assert 0 < differ < 300  # the records do tell the two apart
    plane.predict(answering, batch, route=route_of(plane))
    plane.close()
    seen = recording(plane)
    key = ("penguins", "logistic_regression", "random_forest")
    assert seen.answered == {("penguins", "logistic_regression"): 300}
    assert seen.records[key] == 300
    assert seen.disagreements[key] == differ
    assert seen.differences[key] == pytest.approx(
        float(compare(expected_answer, expected_shadow).probability_difference or 0)
    )
    assert seen.differences["penguins", "logistic_regression", "svc"] is None  # svc gives no probabilities
    assert not seen.dropped


def test_a_model_asked_by_name_is_not_shadowed(models_dir: Path) -> None:
    plane = plane_with_route(models_dir)
    plane.predict(plane.load("logistic_regression"), Batch.from_records(odd_records(5)))
    plane.close()
    assert not recording(plane).records and not recording(plane).answered


def test_a_batch_larger_than_the_queue_is_dropped_and_counted_once_per_shadow(models_dir: Path) -> None:
    plane = plane_with_route(models_dir, shadow_queue=4)
    model = plane.load("logistic_regression")
    answer = plane.predict(model, Batch.from_records(odd_records(5)), route=route_of(plane))
    plane.close()
    assert len(answer.indices) == 5  # answered all the same
    assert recording(plane).dropped == {("penguins", "queue_full"): 10}
    assert not recording(plane).records


def test_a_full_queue_drops_what_does_not_fit_and_what_fits_is_predicted(models_dir: Path) -> None:
    plane = plane_with_route(models_dir)
    seen = Recording()
    shadows = Shadows(4, plane.load, seen)  # not started: nothing empties the queue until run_queued
    batch = Batch.from_records(odd_records(2))
    answer = plane.load("logistic_regression").predictor.predict(batch)
    for _ in range(5):
        shadows.submit("penguins", ["random_forest"], "logistic_regression", batch, answer, "r", None)
    assert seen.dropped == {("penguins", "queue_full"): 6}
    shadows.run_queued()
    assert seen.records == {("penguins", "logistic_regression", "random_forest"): 4}


def test_batches_queued_together_are_predicted_at_once_and_counted_as_each_alone(models_dir: Path) -> None:
    plane = plane_with_route(models_dir)
    seen = Recording()
    shadows = Shadows(1_000, plane.load, seen)  # not started: run_queued takes all six at once
    answering, shadow = plane.load("logistic_regression"), plane.load("random_forest")
    batches = [Batch.from_records(odd_records(1 + index % 3, seed=index)) for index in range(6)]
    expected = 0
    for batch in batches:
        answer = answering.predictor.predict(batch)
        expected += compare(answer, shadow.predictor.predict(batch)).disagreements
        shadows.submit("penguins", ["random_forest"], "logistic_regression", batch, answer, "r", None)
    shadows.run_queued()
    key = ("penguins", "logistic_regression", "random_forest")
    assert seen.reports[key] == 1  # one prediction for the six batches
    assert seen.records[key] == sum(len(batch) for batch in batches)
    assert seen.disagreements[key] == expected


def test_a_slow_shadow_never_holds_an_answer(models_dir: Path) -> None:
    plane = plane_with_route(models_dir)
    seen = Recording()
    release = threading.Event()

    def slow_load(name: str) -> LoadedModel:
        release.wait(30)
        return plane.load(name)

    shadows = Shadows(2, slow_load, seen)
    shadows.start()
    batch = Batch.from_records(odd_records(2))
    answer = plane.load("logistic_regression").predictor.predict(batch)
    for _ in range(10):  # the first is taken and waits on the shadow; one more fits; the rest are dropped
        shadows.submit("penguins", ["random_forest"], "logistic_regression", batch, answer, "r", None)
    release.set()
    shadows.stop(30)
    shadowed = seen.records["penguins", "logistic_regression", "random_forest"]
    assert shadowed + seen.dropped["penguins", "queue_full"] == 20
    assert seen.dropped["penguins", "queue_full"] >= 14


def test_a_missing_shadow_is_dropped_and_counted_never_raised(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane = plane_with_route(models_dir)
    seen = Recording()

    def missing(name: str) -> LoadedModel:
        raise ModelNotFound(f"Model {name}.pkl is gone.")

    shadows = Shadows(100, missing, seen)
    batch = Batch.from_records(odd_records(3))
    answer = plane.load("logistic_regression").predictor.predict(batch)
    for _ in range(2):
        shadows.submit("penguins", ["svc"], "logistic_regression", batch, answer, "r", None)
    shadows.run_queued()
    assert seen.dropped == {("penguins", "unavailable"): 6}
    assert [record.message for record in caplog.records if "shadow svc" in record.message] == [
        "shadow svc of route penguins is skipped (unavailable): Model svc.pkl is gone."
    ]


def test_what_is_queued_at_a_stop_is_dropped_as_stopping_past_the_bound(models_dir: Path) -> None:
    plane = plane_with_route(models_dir)
    seen = Recording()
    shadows = Shadows(100, plane.load, seen)  # never started: nothing is predicted before the stop
    batch = Batch.from_records(odd_records(3))
    shadows.submit(
        "penguins", ["svc"], "logistic_regression", batch, plane.load("svc").predictor.predict(batch), "r", None
    )
    shadows.stop(0.1)
    assert seen.dropped == {("penguins", "stopping"): 3}


def test_shadow_answers_are_captured_under_the_requests_id(models_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'capture.db'}"
    (models_dir / ROUTES_FILE).write_text(json.dumps({"routes": {"penguins": ROUTE}}))
    plane = DataPlane(Settings(models_dir=models_dir, capture_url=url))
    token = current_request.set(RequestContext("the-request"))  # as the middleware sets it for a request
    try:
        plane.predict(plane.load("logistic_regression"), Batch.from_records(odd_records(4)), route=route_of(plane))
    finally:
        current_request.reset(token)
    wait_for(lambda: plane.shadows.queue.records == 0, 30, "the shadows to take the queued batch")
    plane.close()
    store = Store(url)
    query = sa.select(batches.c.request_id, batches.c.model, batches.c.shadow, batches.c.records)
    rows = store.read(lambda connection: connection.execute(query).all())
    store.close()
    assert sorted((model, shadow, records) for _, model, shadow, records in rows) == [
        ("logistic_regression", False, 4),
        ("random_forest", True, 4),
        ("svc", True, 4),
    ]
    assert {request_id for request_id, *_ in rows} == {"the-request"}
