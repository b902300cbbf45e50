"""app/observer.py: the core's events, each passed on to every listener of an Observers, in order."""

from __future__ import annotations

from typing import Any

from app.observer import Comparison, Observer, Observers

COMPARISON = Comparison(3, 1, 0.25)


class Recorder(Observer):
    """Notes every event, with its arguments, in a list it may share with others."""

    def __init__(self, name: str, notes: list[tuple[Any, ...]]) -> None:
        self.name, self.notes = name, notes

    def predicted(self, model: str, records: int, seconds: float) -> None:
        self.notes.append((self.name, "predicted", model, records, seconds))

    def predict_failed(self, model: str) -> None:
        self.notes.append((self.name, "predict_failed", model))

    def loaded(self, model: str, seconds: float) -> None:
        self.notes.append((self.name, "loaded", model, seconds))

    def load_failed(self, model: str, seconds: float) -> None:
        self.notes.append((self.name, "load_failed", model, seconds))

    def models_loaded(self, count: int) -> None:
        self.notes.append((self.name, "models_loaded", count))

    def model_files(self, count: int) -> None:
        self.notes.append((self.name, "model_files", count))

    def captures_dropped(self, records: int) -> None:
        self.notes.append((self.name, "captures_dropped", records))

    def route_answered(self, route: str, variant: str, records: int) -> None:
        self.notes.append((self.name, "route_answered", route, variant, records))

    def shadowed(self, route: str, variant: str, shadow: str, comparison: Comparison) -> None:
        self.notes.append((self.name, "shadowed", route, variant, shadow, comparison))

    def shadows_dropped(self, route: str, reason: str, records: int) -> None:
        self.notes.append((self.name, "shadows_dropped", route, reason, records))


def tell_everything(observer: Observer) -> None:
    observer.predicted("svc", 3, 0.5)
    observer.predict_failed("svc")
    observer.loaded("svc", 0.25)
    observer.load_failed("broken", 0.125)
    observer.models_loaded(2)
    observer.model_files(4)
    observer.captures_dropped(7)
    observer.route_answered("penguins", "svc", 3)
    observer.shadowed("penguins", "svc", "random_forest", COMPARISON)
    observer.shadows_dropped("penguins", "queue_full", 6)


def test_every_event_reaches_every_listener_in_order() -> None:
    notes: list[tuple[Any, ...]] = []
    tell_everything(Observers([Recorder("metrics", notes), Recorder("logs", notes)]))
    assert notes == [
        ("metrics", "predicted", "svc", 3, 0.5), ("logs", "predicted", "svc", 3, 0.5),
        ("metrics", "predict_failed", "svc"), ("logs", "predict_failed", "svc"),
        ("metrics", "loaded", "svc", 0.25), ("logs", "loaded", "svc", 0.25),
        ("metrics", "load_failed", "broken", 0.125), ("logs", "load_failed", "broken", 0.125),
        ("metrics", "models_loaded", 2), ("logs", "models_loaded", 2),
        ("metrics", "model_files", 4), ("logs", "model_files", 4),
        ("metrics", "captures_dropped", 7), ("logs", "captures_dropped", 7),
        ("metrics", "route_answered", "penguins", "svc", 3), ("logs", "route_answered", "penguins", "svc", 3),
        ("metrics", "shadowed", "penguins", "svc", "random_forest", COMPARISON),
        ("logs", "shadowed", "penguins", "svc", "random_forest", COMPARISON),
        ("metrics", "shadows_dropped", "penguins", "queue_full", 6),
        ("logs", "shadows_dropped", "penguins", "queue_full", 6),
    ]  # fmt: skip


def test_observers_pass_on_every_method_an_observer_has() -> None:
    # A method added to Observer but forgotten in Observers would reach no listener.
    events = {name for name in vars(Observer) if not name.startswith("_")}
    assert events == {name for name in vars(Observers) if not name.startswith("_")}
    assert events == {note[1] for note in recorded()}


def recorded() -> list[tuple[Any, ...]]:
    notes: list[tuple[Any, ...]] = []
    tell_everything(Observers([Recorder("only", notes)]))
    return notes
