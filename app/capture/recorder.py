"""The capture as the core uses it: record a prediction, take labels, read the live figures.

record() is all the request path pays: a small bytes object on a queue, written by a process of its own
(app/capture/process.py). Labels are written on the caller's thread in one
transaction (the caller chooses the thread). The figures every scrape reads are cached for FIGURES_SECONDS, so any
worker or replica serves the store's numbers without asking it at every scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.capture.accuracy import Performance, performance
from app.capture.child import WriterSettings
from app.capture.handover import hand_over
from app.capture.process import WriterProcess
from app.capture.records import Captured, Label, Reference
from app.capture.store import LabelOutcome, Store, VersionRow
from app.capture.writer import STOP_SECONDS
from app.errors import StoreUnavailable
from app.features import Batch
from app.observer import Observer
from app.predictors import Prediction
from app.registry import LoadedModel
from app.rules import LogFormat

FIGURES_SECONDS = 2.0
# Versions of one model file shown, newest first: a file replaced many times adds no series beyond these.
VERSIONS_SHOWN = 3
# What the store keeps of a V2 request's own id (its column's width).
CLIENT_ID_LENGTH = 256
logger = logging.getLogger("app")


@dataclass(frozen=True)
class Figures:
    """What /metrics shows: labels received by outcome, and each shown version's live figures."""

    outcomes: dict[str, int]
    versions: list[Performance]


class Recorder:
    def __init__(
        self,
        url: str,
        queue_length: int,
        retention_days: int,
        max_rows: int,
        window: int,
        observer: Observer | None = None,
        log_format: LogFormat = "text",
    ) -> None:
        self.store = Store(url)
        self.window = window
        self.observer = observer or Observer()
        settings = WriterSettings(url, queue_length, retention_days, max_rows, log_format)
        self.writer = WriterProcess(settings, self.observer.captures_dropped)
        self._figures: tuple[float, tuple[str, ...], Figures] | None = None
        self._figures_lock = threading.Lock()
        # (model, version, shadow): when read (monotonic), and the figures, None before any answer is captured.
        self._routed: dict[tuple[str, str, bool], tuple[float, Performance | None]] = {}

    def start(self) -> None:
        """Makes the store ready, then starts the writer: at start, on the thread that builds the app.

        The schema is then created or upgraded before the first request, and what that loads (the driver, the
        dialect, their caches) is loaded before the app freezes what lives as long as the process (app/main.py).
        Loaded later by the writer, it left the serving thread a few hundredths slower for good (make bench). A
        store that cannot be reached now is the writer's to retry, as at any time.
        """
        try:
            self.store.ensure_ready()
            self.store.compile_label_inserts()  # the writer process compiles the batches' own
        except StoreUnavailable as error:
            logger.warning("capture store %s cannot be reached at start: %s", self.store.backend, error.reason)
        self.writer.start()

    def close(self) -> None:
        self.writer.stop(STOP_SECONDS)
        self.store.close()

    def record(
        self, model: LoadedModel, batch: Batch, prediction: Prediction, request_id: str, client_id: str | None
    ) -> None:
        """On the request path: a reference on the queue, or a count when the queue is full."""
        self._queue(model, batch, prediction, request_id, client_id, shadow=False)

    def record_shadow(
        self, model: LoadedModel, batch: Batch, prediction: Prediction, request_id: str, client_id: str | None
    ) -> None:
        """A route's shadow's answer to a request's records (app/shadows.py), under the request's ID."""
        self._queue(model, batch, prediction, request_id, client_id, shadow=True)

    def _queue(
        self,
        model: LoadedModel,
        batch: Batch,
        prediction: Prediction,
        request_id: str,
        client_id: str | None,
        shadow: bool,
    ) -> None:
        client_id = client_id[:CLIENT_ID_LENGTH] if client_id is not None else None
        # A shadow's answer has no confidence estimate, so the writer needs no model for it.
        loaded = None if shadow else model
        item = Captured(
            request_id, client_id, time.time(), model.stem, model.version, batch, prediction, shadow, loaded
        )
        if not self.writer.queue.put(hand_over(item)):
            self.observer.captures_dropped(len(batch))

    def flush(self) -> None:
        """Writes what this worker has queued (blocking); StoreUnavailable when it cannot."""
        self.writer.flush()

    def add_labels(self, labels: Sequence[Label]) -> LabelOutcome:
        """Stores the labels, committed when this returns (blocking); StoreUnavailable when it cannot.

        This worker's queue is written first, so a label for a prediction it just answered finds it.
        """
        self.flush()
        outcome = self.store.add_labels(labels, time.time())
        self._figures = None
        self._routed = {}
        return outcome

    def performance(self, model: str) -> list[Performance]:
        """The model's versions' live figures, newest first, read now (blocking)."""
        return [self._performance_of(version) for version in self.store.versions_of([model], VERSIONS_SHOWN)]

    def figures(self, models: Sequence[str]) -> Figures:
        """The figures of these model files, at most FIGURES_SECONDS old (blocking when they are older)."""
        key = tuple(sorted(models))
        with self._figures_lock:
            cached = self._figures
            if cached is not None and cached[1] == key and time.monotonic() - cached[0] < FIGURES_SECONDS:
                return cached[2]
            versions = self.store.versions_of(key, VERSIONS_SHOWN) if key else []
            figures = Figures(self.store.outcome_counts(), [self._performance_of(version) for version in versions])
            self._figures = (time.monotonic(), key, figures)
            return figures

    def route_performance(
        self, answers: Sequence[tuple[LoadedModel, bool]]
    ) -> dict[tuple[str, bool], Performance | None]:
        """Each model's live figures, its version's own answers (False) or its answers as a route's shadow (True),
        keyed by (stem, shadow); None before any is captured. Each at most FIGURES_SECONDS old (blocking when older).

        The model as loaded names the version and its classes: a version that only shadowed has no row in versions.
        """
        return {(model.stem, shadow): self._routed_performance(model, shadow) for model, shadow in answers}

    def _routed_performance(self, model: LoadedModel, shadow: bool) -> Performance | None:
        key = (model.stem, model.version, shadow)
        with self._figures_lock:
            cached = self._routed.get(key)
            if cached is not None and time.monotonic() - cached[0] < FIGURES_SECONDS:
                return cached[1]
            span = self.store.span(model.stem, model.version, shadow)
            figures = None if span is None else self._answers_of(model, shadow, span)
            self._routed[key] = (time.monotonic(), figures)
            return figures

    def _answers_of(self, model: LoadedModel, shadow: bool, span: tuple[float, float]) -> Performance:
        accuracy = model.reference_accuracy
        reference = None if accuracy is None else Reference(accuracy.mean, accuracy.lower, accuracy.upper)
        classes = model.predictor.classes
        version = VersionRow(model.stem, model.version, classes, span[0], span[1], reference)
        window = self.store.window(model.stem, model.version, self.window, shadow, classes)
        return performance(version, window, self.store.recent(model.stem, model.version, self.window, shadow))

    def _performance_of(self, version: VersionRow) -> Performance:
        window = self.store.window(version.model, version.version, self.window)
        recent = self.store.recent(version.model, version.version, self.window)
        return performance(version, window, recent)
