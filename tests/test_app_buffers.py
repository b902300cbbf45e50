"""app/buffers.py: one buffer per key, in memory or shared by processes through a file made once and locked."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.buffers import BufferMismatch, LocalBuffers, SharedBuffers

HEADER = b'{"what": "two counters"}'


def count_up(folder: Path, start: Any, times: int) -> None:
    """A worker process: opens the shared buffer (the first one creates it), then adds to it under the lock."""
    start.wait()  # both processes open the file at the same moment
    buffer = SharedBuffers(folder).open("key", HEADER, 16)
    counters = np.frombuffer(buffer.data, np.int64, 2)
    for _ in range(times):
        with buffer.locked():
            counters[0] += 1
            # Read, then written back: without the lock, the other process's additions in between would be lost.
            value = int(counters[1])
            counters[1] = value + 1


def test_two_processes_creating_the_same_file_at_once_share_it_and_lose_no_count(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2, timeout=60)
    # Enough additions that, without the lock, some would be lost.
    workers = [context.Process(target=count_up, args=(tmp_path, start, 50_000)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0

    found = SharedBuffers(tmp_path).attach("key")
    assert found is not None
    header, buffer = found
    assert header == HEADER
    assert np.frombuffer(buffer.data, np.int64, 2).tolist() == [100_000, 100_000]
    assert [path.name for path in tmp_path.iterdir()] == ["drift-key.bin"]


def test_a_key_no_one_opened_is_not_found(tmp_path: Path) -> None:
    assert SharedBuffers(tmp_path).attach("key") is None
    assert LocalBuffers().attach("key") is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shared", [False, True], ids=["in-memory", "shared-file"])
def test_a_key_opened_again_for_other_contents_is_refused(shared: bool, tmp_path: Path) -> None:
    buffers = SharedBuffers(tmp_path) if shared else LocalBuffers()
    buffers.open("key", HEADER, 16)
    with pytest.raises(BufferMismatch):
        buffers.open("key", b'{"what": "else"}', 16)
    if shared:
        with pytest.raises(BufferMismatch):
            SharedBuffers(tmp_path).open("key", b'{"what": "else"}', 16)


@pytest.mark.parametrize("shared", [False, True], ids=["in-memory", "shared-file"])
def test_dropped_keys_are_gone_and_others_stay(shared: bool, tmp_path: Path) -> None:
    buffers = SharedBuffers(tmp_path) if shared else LocalBuffers()
    for key in ["a", "b", "c"]:
        buffers.open(key, HEADER, 16)
    buffers.drop(["a", "c", "never-opened"])
    assert buffers.keys() == ["b"]
    assert buffers.attach("a") is None


def test_a_new_file_holds_zeros_after_its_header(tmp_path: Path) -> None:
    buffer = SharedBuffers(tmp_path).open("key", b"h" * 21, 24)
    assert bytes(buffer.data) == bytes(24)
    (path,) = tmp_path.iterdir()
    # The header's length (8 bytes) and the header (21), padded to 32 so the data is 8-byte aligned; the data.
    assert path.stat().st_size == 32 + 24
