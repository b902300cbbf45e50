"""Shadows: after a route's variant has answered, each of the route's shadows predicts the same records, off the
request path, and how the two answers compare is counted.

The request path pays a reference on a queue (submit). The queue is bounded by records, per worker: a batch that
does not fit is dropped whole and counted, never waited for. One thread per worker lets the batches gather for
GATHER_SECONDS, then takes them all and, for the batches one variant answered for one route, gets each shadow
through the registry once, predicts them as one batch (a few hundred one-record answers cost one prediction, not
one each, on the cores the answers need), compares the classes by name (two models may order them differently) and,
when both give probabilities, each model's probability of the class it predicted. With capture on, the shadow's
answer is captured beside the variant's, under the same request ID, marked as a shadow's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from app.errors import ServingError
from app.features import Batch
from app.observer import Comparison, Observer
from app.predictors import Prediction
from app.queues import RecordQueue
from app.registry import LoadedModel

# Seconds a stopping worker gives its shadows to predict what is queued; what is left is dropped and counted.
STOP_SECONDS = 2.0
# How long the thread lets answers gather once one is queued: shadow figures lag the answers by about this much.
GATHER_SECONDS = 0.1
logger = logging.getLogger("app")
# A shadow's answer to capture: the shadow, the batch, its prediction, the request's ID and its client's own id.
RecordShadow = Callable[[LoadedModel, Batch, Prediction, str, "str | None"], None]


# Not frozen: built on the request path, where a frozen dataclass's __init__ costs several times more.
@dataclass(slots=True)
class Work:
    """One answered batch that a route's shadows are to predict: references only."""

    route: str
    variant: str
    shadows: Sequence[str]
    batch: Batch
    prediction: Prediction
    request_id: str
    client_id: str | None

    def __len__(self) -> int:
        return len(self.batch)


def compare(answer: Prediction, shadow: Prediction) -> Comparison:
    """How a shadow's answer differs from the variant's, record by record (classes compared by name)."""
    answered = np.asarray(answer.classes)[answer.indices]
    shadowed = np.asarray(shadow.classes)[shadow.indices]
    disagreements = int(np.count_nonzero(answered != shadowed))
    difference = None
    if answer.probabilities is not None and shadow.probabilities is not None:
        rows = np.arange(len(answer.indices))
        own = answer.probabilities[rows, answer.indices] - shadow.probabilities[rows, shadow.indices]
        difference = float(np.abs(own).sum())
    return Comparison(len(answer.indices), disagreements, difference)


class Shadows:
    """load: a model file by name (the registry's get); record: captures a shadow's answer, None without capture."""

    def __init__(
        self,
        capacity: int,
        load: Callable[[str], LoadedModel],
        observer: Observer | None = None,
        record: RecordShadow | None = None,
    ) -> None:
        self.ready = threading.Event()
        self.queue: RecordQueue[Work] = RecordQueue(capacity, self.ready)
        self.load = load
        self.observer = observer or Observer()
        self.record = record
        self._stop = threading.Event()
        self._logged: set[tuple[str, str]] = set()  # (shadow, reason) already logged: one line each
        self._thread = threading.Thread(target=self._run, name="shadows", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Predicts what is queued for up to `timeout` seconds, then drops and counts the rest."""
        self._stop.set()
        self.ready.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._stop_waiting()

    def submit(
        self,
        route: str,
        shadows: Sequence[str],
        variant: str,
        batch: Batch,
        prediction: Prediction,
        request_id: str,
        client_id: str | None,
    ) -> None:
        """On the request path: a reference on the queue, or a count when the queue is full."""
        work = Work(route, variant, shadows, batch, prediction, request_id, client_id)
        if self._stop.is_set() or not self.queue.put(work):
            self.observer.shadows_dropped(route, "queue_full", len(batch) * len(shadows))

    def run_queued(self) -> None:
        """Predicts everything queued now, on the caller's thread (the thread's loop, and tests): the batches one
        variant answered for one route at once, for each of its shadows."""
        while taken := self._take_all():
            groups: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], list[Work]] = {}
            for work in taken:
                key = (work.route, work.variant, tuple(work.shadows), work.prediction.classes)
                groups.setdefault(key, []).append(work)
            for works in groups.values():
                self._shadow(works)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.ready.wait()
            self._stop.wait(GATHER_SECONDS)
            self.run_queued()

    def _take_all(self) -> list[Work]:
        # Cleared first: a batch put meanwhile sets it again, and is taken on the next round.
        self.ready.clear()
        return self.queue.take(self.queue.capacity)

    def _stop_waiting(self) -> None:
        for work in self._take_all():
            self.observer.shadows_dropped(work.route, "stopping", len(work.batch) * len(work.shadows))

    def _shadow(self, works: Sequence[Work]) -> None:
        first = works[0]
        batch = Batch.joined([work.batch for work in works])
        answer = Prediction.joined([work.prediction for work in works])
        for name in first.shadows:
            try:
                self._one(works, name, batch, answer)
            except Exception as error:  # the thread outlives any shadow's failure
                self._dropped(first.route, name, len(batch), "failed", f"{type(error).__name__}: {error}")

    def _one(self, works: Sequence[Work], name: str, batch: Batch, answer: Prediction) -> None:
        first = works[0]
        try:
            model = self.load(name)
        except ServingError as error:
            self._dropped(first.route, name, len(batch), "unavailable", error.detail)
            return
        prediction = model.predictor.predict(batch)
        self.observer.shadowed(first.route, first.variant, name, compare(answer, prediction))
        if self.record is not None:
            start = 0
            for work in works:
                stop = start + len(work.batch)
                self.record(model, work.batch, prediction.part(start, stop), work.request_id, work.client_id)
                start = stop

    def _dropped(self, route: str, shadow: str, records: int, reason: str, detail: str) -> None:
        self.observer.shadows_dropped(route, reason, records)
        if (shadow, reason) not in self._logged:
            self._logged.add((shadow, reason))
            logger.warning("shadow %s of route %s is skipped (%s): %s", shadow, route, reason, detail)
