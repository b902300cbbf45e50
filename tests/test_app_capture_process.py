"""A worker's writer process, started for real: it writes what it is handed, comes back when killed, keeps its
settings off its command line, and exits when its worker stops."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from app.capture.child import NICENESS, WriterSettings
from app.capture.handover import hand_over
from app.capture.process import WriterProcess
from app.capture.records import Captured
from app.capture.store import Store
from app.errors import StoreUnavailable
from app.features import Batch
from app.predictors import Prediction
from tests.helpers import RECORD, wait_for

CLASSES = ("Adelie", "Chinstrap", "Gentoo")


def captured(count: int, request_id: str) -> Captured:
    prediction = Prediction(CLASSES, np.zeros(count, dtype=np.int64), np.tile([0.7, 0.2, 0.1], (count, 1)))
    return Captured(request_id, None, 5.0, "m", "v1", Batch.from_records([RECORD] * count), prediction)


def stored(database: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(database) as connection:
        return list(connection.execute("SELECT request_id, records FROM batches ORDER BY id"))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "c.db"
    Store(f"sqlite:///{path}").ensure_ready()
    return path


@contextmanager
def started(writer: WriterProcess) -> Iterator[WriterProcess]:
    """The writer started, and stopped (its process with it) when the block ends."""
    writer.start()
    try:
        yield writer
    finally:
        writer.stop(10)


def writer_process(database: Path, dropped: list[int], queue_length: int = 1000) -> WriterProcess:
    return WriterProcess(WriterSettings(f"sqlite:///{database}", queue_length, 30, 1000), dropped.append)


def test_what_is_handed_over_is_written_by_another_process(database: Path) -> None:
    dropped: list[int] = []
    with started(writer_process(database, dropped)) as writer:
        for index in range(5):
            assert writer.queue.put(hand_over(captured(index + 1, f"r{index}")))
        writer.flush()
        assert stored(database) == [(f"r{index}", index + 1) for index in range(5)]
        assert writer._child is not None and writer._child.process.pid != os.getpid()
    assert dropped == []


def test_a_worker_that_captured_nothing_starts_no_process(database: Path) -> None:
    writer = writer_process(database, [])
    writer.start()
    writer.flush()
    writer.stop(10)
    assert writer._child is None


def test_a_stop_writes_what_is_queued_and_the_process_exits(database: Path) -> None:
    writer = writer_process(database, [])
    writer.start()
    writer.queue.put(hand_over(captured(2, "first")))
    writer.flush()
    writer.queue.put(hand_over(captured(3, "queued")))
    child = writer._child
    writer.stop(10)
    assert child is not None and child.process.returncode == 0
    assert stored(database) == [("first", 2), ("queued", 3)]


def test_a_killed_writer_process_is_started_again(database: Path, caplog: pytest.LogCaptureFixture) -> None:
    with started(writer_process(database, [])) as writer:
        writer.queue.put(hand_over(captured(1, "before")))
        writer.flush()
        child = writer._child
        assert child is not None
        os.kill(child.process.pid, signal.SIGKILL)
        wait_for(lambda: not child.alive(), 10, "the writer process to die")
        writer.queue.put(hand_over(captured(2, "after")))
        with caplog.at_level(logging.WARNING, "app"):
            writer.flush()
        assert stored(database) == [("before", 1), ("after", 2)]
        assert writer._child is not child and "capture writer process exited with code -9" in caplog.text


def test_the_writer_process_yields_the_cpu_to_its_worker(database: Path) -> None:
    with started(writer_process(database, [])) as writer:
        writer.queue.put(hand_over(captured(1, "r")))
        writer.flush()  # answered: the process has set its priority
        assert writer._child is not None
        niceness = os.getpriority(os.PRIO_PROCESS, writer._child.process.pid)
        assert niceness == min(os.getpriority(os.PRIO_PROCESS, 0) + NICENESS, 19)


def test_the_store_url_never_shows_on_the_command_line(database: Path) -> None:
    with started(writer_process(database, [])) as writer:
        writer.queue.put(hand_over(captured(1, "r")))
        writer.flush()
        assert writer._child is not None
        command = Path(f"/proc/{writer._child.process.pid}/cmdline").read_bytes().split(b"\0")
        assert not any(str(database).encode() in part for part in command)


def test_a_store_that_cannot_be_written_fails_the_flush_and_counts_the_records(tmp_path: Path) -> None:
    dropped: list[int] = []
    with started(
        WriterProcess(WriterSettings("postgresql://nobody@127.0.0.1:9/none", 100, 30, 1000), dropped.append)
    ) as writer:
        writer.queue.put(hand_over(captured(3, "lost")))
        with pytest.raises(StoreUnavailable, match="connect"):  # the driver's words, for the log
            writer.flush()
        wait_for(lambda: sum(dropped) == 3, 10, "the writer process to count the 3 records dropped")
