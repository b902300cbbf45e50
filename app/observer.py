"""What the core reports as it works, for metrics and logs to pick up; it knows neither HTTP nor Prometheus.

The registry and the data plane call an Observer at the moments that matter (a prediction, a load, the
folder scanned); the app plugs in what listens (app/metrics.py, app/logs.py). Model names are file stems
of files that exist, so a listener may use them as labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Why shadow work is dropped: the queue was full, the shadow's file is gone or does not load, its predictor raised,
# or the worker was stopping. The metrics' `reason` label takes only these.
SHADOW_DROP_REASONS = ("queue_full", "unavailable", "failed", "stopping")


@dataclass(frozen=True)
class Comparison:
    """A shadow's answer to a batch beside the answering variant's.

    probability_difference: the sum over the records of |p_answer - p_shadow|, each model's probability of the class
    it predicted itself; None unless both give probabilities.
    """

    records: int
    disagreements: int
    probability_difference: float | None


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

    def route_answered(self, route: str, variant: str, records: int) -> None:
        """A route's variant answered `records` records."""

    def shadowed(self, route: str, variant: str, shadow: str, comparison: Comparison) -> None:
        """A shadow predicted the records a route's variant answered; how the two compare."""

    def shadows_dropped(self, route: str, reason: str, records: int) -> None:
        """Records a shadow did not predict (counted once per shadow missed), for a reason of SHADOW_DROP_REASONS."""


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

    def route_answered(self, route: str, variant: str, records: int) -> None:
        for observer in self.observers:
            observer.route_answered(route, variant, records)

    def shadowed(self, route: str, variant: str, shadow: str, comparison: Comparison) -> None:
        for observer in self.observers:
            observer.shadowed(route, variant, shadow, comparison)

    def shadows_dropped(self, route: str, reason: str, records: int) -> None:
        for observer in self.observers:
            observer.shadows_dropped(route, reason, records)
