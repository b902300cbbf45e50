"""What the core reports as it works, for metrics and logs to pick up; it knows neither HTTP nor Prometheus.

The registry and the data plane call an Observer at the moments that matter (a prediction, a load, the
folder scanned); the app plugs in what listens (app/metrics.py, app/logs.py). Model names are file stems
of files that exist, so a listener may use them as labels.
"""

from __future__ import annotations

from collections.abc import Sequence


class Observer:
    """Listens to the core; every method does nothing unless overridden."""

    def predicted(self, model: str, records: int, seconds: float) -> None:
        """The predictor answered for `records` records in `seconds` (the predictor alone)."""

    def predict_failed(self, model: str) -> None:
        """The predictor raised on a batch."""

    def loaded(self, model: str, seconds: float) -> None:
        """A model file was read, unpacked and checked."""

    def load_failed(self, model: str, seconds: float) -> None:
        """A model file exists but could not be loaded."""

    def models_loaded(self, count: int) -> None:
        """How many models this process holds now."""

    def model_files(self, count: int) -> None:
        """How many model files the folder held at its last scan."""

    def captures_dropped(self, records: int) -> None:
        """Predicted records not captured: the queue was full, or the store could not be written."""


class Observers(Observer):
    """Several observers as one."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers = tuple(observers)

    def predicted(self, model: str, records: int, seconds: float) -> None:
        for observer in self.observers:
            observer.predicted(model, records, seconds)

    def predict_failed(self, model: str) -> None:
        for observer in self.observers:
            observer.predict_failed(model)

    def loaded(self, model: str, seconds: float) -> None:
        for observer in self.observers:
            observer.loaded(model, seconds)

    def load_failed(self, model: str, seconds: float) -> None:
        for observer in self.observers:
            observer.load_failed(model, seconds)

    def models_loaded(self, count: int) -> None:
        for observer in self.observers:
            observer.models_loaded(count)

    def model_files(self, count: int) -> None:
        for observer in self.observers:
            observer.model_files(count)

    def captures_dropped(self, records: int) -> None:
        for observer in self.observers:
            observer.captures_dropped(records)
