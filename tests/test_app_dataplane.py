"""app/dataplane.py: the protocol-neutral core, called as a front-end calls it: models by name, batches in,
predictions out, the size limit, the observer told, a default run that names the files it skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.dataplane import DataPlane
from app.errors import ModelLoadFailed, ModelNotFound, TooManyRecords
from app.features import Batch
from app.observer import Observer
from tests.helpers import RECORD


class Counting(Observer):
    def __init__(self) -> None:
        self.predictions: list[tuple[str, int]] = []
        self.loads: list[str] = []

    def predicted(self, model: str, records: int, seconds: float) -> None:
        self.predictions.append((model, records))

    def loaded(self, model: str, seconds: float) -> None:
        self.loads.append(model)


@pytest.fixture
def observer() -> Counting:
    return Counting()


@pytest.fixture
def plane(models_dir: Path, observer: Counting) -> DataPlane:
    return DataPlane(Settings(models_dir=models_dir, default_model="svc", max_records=5), observer)


def test_no_name_means_the_default_model_which_stays_cached(plane: DataPlane) -> None:
    assert plane.cached(None) is None  # nothing is loaded before it is asked for
    model = plane.load(None)
    assert model.name == "svc.pkl"
    assert plane.cached("svc") is model


def test_a_prediction_answers_every_record_and_is_told_to_the_observer(plane: DataPlane, observer: Counting) -> None:
    model = plane.load("logistic_regression")
    prediction = plane.predict(model, Batch.from_records([RECORD] * 3))
    assert prediction.labels() == ["Adelie"] * 3
    assert observer.predictions == [("logistic_regression", 3)]
    assert plane.drift(model).records == 3


def test_more_records_than_max_records_are_refused_before_any_prediction(plane: DataPlane, observer: Counting) -> None:
    model = plane.load(None)
    with pytest.raises(TooManyRecords, match="Got 6 records; at most MAX_RECORDS=5"):
        plane.predict(model, Batch.from_records([RECORD] * 6))
    assert observer.predictions == []


def test_a_default_run_skips_an_unloadable_file_and_says_why(plane: DataPlane, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    selection = plane.select(None)
    assert sorted(model.stem for model in selection.models) == ["logistic_regression", "random_forest", "svc"]
    assert list(selection.skipped) == ["broken.pkl"] and selection.skipped["broken.pkl"]


def test_a_named_unloadable_file_fails_the_whole_selection(plane: DataPlane, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadFailed, match=r"broken\.pkl"):
        plane.select(["svc", "broken"])


def test_every_name_is_checked_before_anything_is_loaded(plane: DataPlane, observer: Counting) -> None:
    with pytest.raises(ModelNotFound, match=r"nope\.pkl"):
        plane.select(["svc", "nope"])
    assert observer.loads == []


def test_a_name_given_twice_is_one_model(plane: DataPlane) -> None:
    assert [model.name for model in plane.select(["svc", "svc.pkl"]).models] == ["svc.pkl"]


def test_the_cached_selection_is_there_only_once_every_model_is_loaded(plane: DataPlane) -> None:
    assert plane.select_cached(["svc", "random_forest"]) is None
    plane.load("svc")
    assert plane.select_cached(["svc", "random_forest"]) is None
    loaded = plane.select(["svc", "random_forest"])
    cached = plane.select_cached(["svc", "random_forest"])
    assert cached is not None and cached.models == loaded.models


def test_ready_when_one_model_loads(plane: DataPlane, models_dir: Path) -> None:
    assert plane.ready()
    for model in models_dir.iterdir():
        model.unlink()
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    assert not plane.ready()


def test_every_file_in_the_folder_has_a_stamp(plane: DataPlane, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    assert sorted(plane.model_stamps()) == sorted(plane.available()) == [
        "broken.pkl", "logistic_regression.pkl", "random_forest.pkl", "svc.pkl",
    ]  # fmt: skip
