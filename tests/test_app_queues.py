"""The queue bounded by records: what does not fit is refused whole, and the consumer is woken."""

from __future__ import annotations

import threading

from app.queues import RecordQueue


def test_a_batch_that_does_not_fit_is_refused_and_the_bound_kept() -> None:
    queue: RecordQueue[list[int]] = RecordQueue(10, threading.Event())
    assert queue.put([0] * 6) and not queue.put([0] * 5) and queue.put([0] * 4)
    assert queue.records == 10
    assert [len(item) for item in queue.take(5)] == [6]  # at least one batch, whatever its size
    assert queue.records == 4
    assert queue.take(100) == [[0] * 4] and queue.records == 0
    assert queue.take(100) == []


def test_the_consumer_is_woken_once_wake_at_records_are_queued() -> None:
    wake = threading.Event()
    queue: RecordQueue[list[int]] = RecordQueue(10, wake, wake_at=3)
    assert queue.put([0, 0]) and not wake.is_set()
    assert queue.put([0]) and wake.is_set()


def test_taking_everything_keeps_the_order_and_leaves_an_empty_queue_that_fills_again() -> None:
    queue: RecordQueue[list[int]] = RecordQueue(10, threading.Event())
    for size in (1, 2, 3):
        assert queue.put([size] * size)
    assert queue.take(6) == [[1], [2, 2], [3, 3, 3]]
    assert queue.records == 0 and queue.take(6) == []
    assert queue.put([0] * 10) and queue.records == 10
    assert queue.take(10) == [[0] * 10]
