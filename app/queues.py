"""A queue of batches bounded by the records they hold, not by their number: the capture's and the shadows'.

Its memory never grows with the traffic: a batch that does not fit is refused whole, and the caller counts it
dropped; nothing on the request path ever waits for room.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sized
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Sized)  # a batch's len() is its records


class RecordQueue(Generic[Item]):
    """Batches waiting for a thread, at most `capacity` records in all; `wake` is set once a put leaves `wake_at`
    records or more queued (the thread's signal)."""

    def __init__(self, capacity: int, wake: threading.Event, wake_at: int = 1) -> None:
        self.capacity = capacity
        self._items: deque[Item] = deque()
        self._records = 0
        self._lock = threading.Lock()
        self._wake = wake
        self._wake_at = wake_at

    def put(self, item: Item) -> bool:
        """Queued, or False when it does not fit (the caller counts it dropped)."""
        count = len(item)
        with self._lock:
            if self._records + count > self.capacity:
                return False
            self._items.append(item)
            self._records += count
            wake = self._records >= self._wake_at
        if wake:
            self._wake.set()
        return True

    def take(self, records: int) -> list[Item]:
        """The oldest batches, up to about `records` records (at least one batch when any is queued)."""
        taken: list[Item] = []
        total = 0
        with self._lock:
            if self._records <= records:
                # The usual take, everything queued: the request path's put() never waits for a loop over it.
                taken, self._items, self._records = list(self._items), deque(), 0
                return taken
            while self._items and (not taken or total + len(self._items[0]) <= records):
                item = self._items.popleft()
                taken.append(item)
                total += len(item)
            self._records -= total
        return taken

    @property
    def records(self) -> int:
        return self._records
