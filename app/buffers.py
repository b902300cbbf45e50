"""Fixed-size byte buffers, one per key, that every worker process sees: the drift monitor's counts live in them.

One worker keeps them in memory (LocalBuffers). Several (`python -m app` with WEB_CONCURRENCY > 1) share them as
small memory-mapped files in the workers' shared folder (SharedBuffers, PROMETHEUS_MULTIPROC_DIR): each file is
created once, at its full size, by whichever worker comes first, and every change to it is made under an
exclusive lock, so any worker reads what all of them wrote. A buffer carries a header (its owner's description
of the contents), so a worker that never wrote to it can still read it.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from app.multiprocess import DRIFT_PREFIX, DRIFT_SUFFIX

# The header's length, little-endian, before the header; the data starts at the next multiple of 8.
LENGTH = struct.Struct("<Q")


class BufferMismatch(OSError):
    """A shared file exists under this key with another header: it was made for other contents."""


class Buffer:
    """Bytes and the lock that guards them: a thread lock, and with a file an exclusive flock on it too."""

    def __init__(self, data: memoryview, descriptor: int | None = None) -> None:
        self.data = data
        self._thread_lock = threading.Lock()
        self._descriptor = descriptor
        if descriptor is not None:
            # The data views keep the mapping alive; the descriptor, only needed for the lock, goes with the buffer.
            weakref.finalize(self, os.close, descriptor)

    def acquire(self) -> None:
        self._thread_lock.acquire()
        if self._descriptor is not None:
            try:
                fcntl.flock(self._descriptor, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        self._thread_lock.release()

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


class LocalBuffers:
    """One process's buffers, in memory."""

    def __init__(self) -> None:
        self._buffers: dict[str, tuple[bytes, Buffer]] = {}
        self._lock = threading.Lock()

    def open(self, key: str, header: bytes, size: int) -> Buffer:
        """The key's buffer, made of zeros when it is new."""
        with self._lock:
            found = self._buffers.get(key)
            if found is None:
                found = self._buffers[key] = (header, Buffer(memoryview(bytearray(size))))
            return _same_header(found, header)

    def attach(self, key: str) -> tuple[bytes, Buffer] | None:
        """The key's header and buffer when someone opened it, else None."""
        return self._buffers.get(key)

    def keys(self) -> list[str]:
        return list(self._buffers)

    def drop(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._buffers.pop(key, None)


class SharedBuffers:
    """Buffers shared by the worker processes: a file each in a folder they all see, mapped into memory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._attached: dict[str, tuple[bytes, Buffer]] = {}
        self._lock = threading.Lock()

    def open(self, key: str, header: bytes, size: int) -> Buffer:
        """The key's buffer; the first worker to ask creates its file, at its full size, zeros after the header."""
        with self._lock:
            found = self._attached.get(key) or self._map(key, header, size)
            if found is None:  # only a file just made by a worker that died before writing it
                raise BufferMismatch("the shared file is empty")
            self._attached[key] = found
            return _same_header(found, header)

    def attach(self, key: str) -> tuple[bytes, Buffer] | None:
        with self._lock:
            found = self._attached.get(key)
            if found is None:
                mapped = self._map(key)
                if mapped is None:
                    return None
                found = self._attached[key] = mapped
            return found

    def keys(self) -> list[str]:
        names = os.listdir(self.folder)
        return [
            name[len(DRIFT_PREFIX) : -len(DRIFT_SUFFIX)]
            for name in names
            if name.startswith(DRIFT_PREFIX) and name.endswith(DRIFT_SUFFIX)
        ]

    def drop(self, keys: Iterable[str]) -> None:
        """Removes the files; a worker still writing to one writes to memory no one reads again."""
        with self._lock:
            for key in keys:
                self._attached.pop(key, None)
                with suppress(FileNotFoundError):
                    self._path(key).unlink()

    def _path(self, key: str) -> Path:
        return self.folder / f"{DRIFT_PREFIX}{key}{DRIFT_SUFFIX}"

    def _map(self, key: str, header: bytes | None = None, size: int = 0) -> tuple[bytes, Buffer] | None:
        """Maps the key's file; with a header, creates it when missing. None: no such file (yet)."""
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if header is not None else 0)
        try:
            descriptor = os.open(self._path(key), flags, 0o600)
        except FileNotFoundError:
            return None
        try:
            # Two workers may create the same file at once: the first to hold the lock writes it whole.
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if header is not None and os.fstat(descriptor).st_size == 0:
                start = _data_start(header)
                os.pwrite(descriptor, LENGTH.pack(len(header)) + header, 0)
                os.ftruncate(descriptor, start + size)
            mapped = _read_mapping(descriptor)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        except BaseException:
            os.close(descriptor)
            raise
        if mapped is None:
            os.close(descriptor)
            return None
        found, data = mapped
        return found, Buffer(data, descriptor)


def _read_mapping(descriptor: int) -> tuple[bytes, memoryview] | None:
    """The file's header and its data, mapped; None for a file still empty (its creator holds the lock next)."""
    size = os.fstat(descriptor).st_size
    if size < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(os.pread(descriptor, LENGTH.size, 0))
    start = _data_start_of(length)
    if size <= start:
        return None
    header = os.pread(descriptor, length, LENGTH.size)
    whole = mmap.mmap(descriptor, size)
    return header, memoryview(whole)[start:]


def _data_start(header: bytes) -> int:
    return _data_start_of(len(header))


def _data_start_of(header_length: int) -> int:
    return -(-(LENGTH.size + header_length) // 8) * 8


def _same_header(found: tuple[bytes, Buffer], header: bytes) -> Buffer:
    if found[0] != header:
        raise BufferMismatch("a buffer exists under this key with other contents")
    return found[1]
