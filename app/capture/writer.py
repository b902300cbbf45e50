"""The per-worker queue of captured batches and the thread that writes them to the store in batches.

The queue is bounded by records, not requests: a batch that does not fit is dropped whole and counted, so its
memory never grows with the traffic. The writer wakes every FLUSH_SECONDS (sooner when the queue is half full or
someone waits for a flush), writes what was queued when it woke in transactions of up to WRITE_RECORDS records,
one row per batch (records.rows), and prunes the store now and then. While the store cannot be written, what is
queued is dropped and counted, one log line says why, and the next round tries again: capture resumes by itself
when the store is back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from app.capture.records import Captured, Reference, SeenVersion, rows
from app.capture.store import Store
from app.errors import StoreUnavailable
from app.queues import Item, RecordQueue

# A second's predictions per round: a round's fixed cost (a transaction, a calibration per model, the upsert of
# the versions seen) shared by that many records.
FLUSH_SECONDS = 1.0
RETRY_SECONDS = 1.0
PRUNE_SECONDS = 300.0
# Records per transaction: a big batch is written in a few commits, not one huge one.
WRITE_RECORDS = 20_000
# Seconds a stopping writer is given to write what is queued (and a stopping worker gives its writer process).
STOP_SECONDS = 5.0
logger = logging.getLogger("app")


def capture_queue(capacity: int, wake: threading.Event) -> RecordQueue[Item]:
    """A capture queue (a worker's hand-over, the writer's): it wakes its thread early once half full."""
    return RecordQueue(capacity, wake, wake_at=max(1, capacity // 2))


class Writer:
    """The thread that empties the queue into the store, and prunes the store."""

    def __init__(
        self,
        store: Store,
        queue_length: int,
        prune: Callable[[], None],
        dropped: Callable[[int], None],
    ) -> None:
        self.store = store
        self._wake = threading.Event()
        self.queue: RecordQueue[Captured] = capture_queue(queue_length, self._wake)
        self._prune = prune
        self._dropped = dropped
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Writes what is queued, then stops (a graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def flush(self) -> None:
        """Writes everything queued so far, on the caller's thread; raises StoreUnavailable when it cannot."""
        self._write_queued(raise_on_failure=True)

    def _run(self) -> None:
        self.store.compile_batch_inserts()
        next_prune = 0.0
        while not self._stop.is_set():
            self._wake.wait(RETRY_SECONDS if self._failing else FLUSH_SECONDS)
            self._wake.clear()
            self._write_queued(raise_on_failure=False, drain=False)
            if not self._failing and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_SECONDS
                self._prune_quietly()
        self._write_queued(raise_on_failure=False)

    def _write_queued(self, raise_on_failure: bool, drain: bool = True) -> None:
        """Writes what is queued; a round (drain False) only what was queued when it began. A writer slowed by the
        serving thread then sleeps until its next round instead of chasing each new request with a transaction of
        its own (and taking the interpreter from the serving thread at every statement)."""
        with self._write_lock:
            left = math.inf if drain else self.queue.records
            wrote = False
            while left > 0 and (batch := self.queue.take(WRITE_RECORDS)):
                try:
                    self._write(batch)
                except StoreUnavailable as error:
                    self._drop(batch, error)
                    if raise_on_failure:
                        raise
                    return
                except Exception:
                    self._lose(batch)
                else:
                    wrote = True
                left -= sum(len(item) for item in batch)
            if self._failing and wrote:
                self._failing = False
                logger.info("capture store %s is reachable again: capture resumes", self.store.backend)

    def _write(self, batch: list[Captured]) -> None:
        stored = rows(batch)
        seen = {(item.model, item.version): item for item in batch if not item.shadow}
        self.store.insert(stored, [seen_version(item) for item in seen.values()])

    def _drop(self, batch: list[Captured], error: StoreUnavailable) -> None:
        # Everything queued goes with the batch that failed: the store is down, and waiting would only fill memory.
        rest = self.queue.take(self.queue.capacity)
        self._dropped(sum(len(item.batch) for item in [*batch, *rest]))
        if not self._failing:
            self._failing = True
            logger.warning(
                "capture store %s cannot be written, captured predictions are dropped until it can: %s",
                self.store.backend,
                error,
            )

    def _lose(self, batch: list[Captured]) -> None:
        # A fault of the writer's own (a batch it cannot turn into rows): those batches go, counted, and the
        # writer goes on with the next, where an exception let through would end its thread, and the capture.
        records = sum(len(item) for item in batch)
        logger.exception("capture writer failed on %d batches (%d records): they are dropped", len(batch), records)
        self._dropped(records)

    def _prune_quietly(self) -> None:
        try:
            self._prune()
        except StoreUnavailable as error:
            logger.warning("capture store %s could not be pruned: %s", self.store.backend, error)
        except Exception:
            logger.exception("capture store %s could not be pruned", self.store.backend)


def seen_version(item: Captured) -> SeenVersion:
    """The version that answered, with its reference accuracy when its file has one."""
    accuracy = item.loaded.reference_accuracy if item.loaded is not None else None
    reference = Reference(accuracy.mean, accuracy.lower, accuracy.upper) if accuracy is not None else None
    return SeenVersion(item.model, item.version, item.prediction.classes, item.at, reference)
