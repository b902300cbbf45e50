"""A worker's side of its capture writer process: the bounded queue of handed-over answers, and the thread that
sends them on.

The writing itself (a record's confidence, its packed row, the insert, the pruning) costs the CPU about 20 µs a
one-record request: a thread of the worker doing it would take that time from the serving thread, as the two
would share one interpreter lock. So each worker starts one writer process (app/capture/child.py), the first
time it has something to send, and the request path only makes a small bytes object (handover.hand_over). The
queue is bounded by records: when the writer falls behind, answers are dropped and counted, never waited for.
A flush (before labels are stored) sends what is queued and waits for the writer to have written it. A writer
process that dies is started again at the next hand-over (what it had not written is lost with it; what could
not be sent to it is dropped and counted); one whose worker dies writes what it was sent, and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO

from app.capture import handover
from app.capture.child import WriterSettings
from app.capture.handover import Handed
from app.capture.writer import STOP_SECONDS, capture_queue
from app.errors import StoreUnavailable
from app.queues import RecordQueue

# How often queued answers are sent on: the writer process keeps its own rounds (writer.FLUSH_SECONDS).
HAND_OVER_SECONDS = 0.25
# How long a flush waits for the writer process, its start included, before saying the store cannot be written.
FLUSH_TIMEOUT_SECONDS = 60.0
STOPPED = "the capture writer process stopped"
# A pipe's size: a quarter of a second of one-record answers at 10,000 requests/s (Linux's default maximum).
PIPE_BYTES = 1 << 20
logger = logging.getLogger("app")


class Flush:
    """A flush sent to the writer process, until it says how it went."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None

    def end(self, error: str | None) -> None:
        self.error = error
        self.done.set()


class Child:
    """One writer process, and the thread that reads its answers."""

    def __init__(self, settings: WriterSettings, dropped: Callable[[int], None]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.capture"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a terminal's interrupt is for the worker, which then stops its writer
        )
        self._widen(PIPE_BYTES)
        self.send(settings.message())
        self.models: set[tuple[str, str]] = set()  # the models it has been sent
        self.flushes: dict[int, Flush] = {}
        self.ended = threading.Event()  # its answers have ended: it has exited, or is about to
        self._dropped = dropped
        self._reader = threading.Thread(target=self._read, name="capture-answers", daemon=True)
        self._reader.start()

    def _widen(self, size: int) -> None:
        """A pipe that holds a round: the hand-over thread then writes it in one call, and never waits on it with
        the serving thread (Linux; elsewhere, or past the system's maximum, the pipe keeps its size)."""
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(self.stdin.fileno(), fcntl.F_SETPIPE_SZ, size)

    @property
    def stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, frame: bytes) -> None:
        self.stdin.write(frame)

    def _read(self) -> None:
        assert self.process.stdout is not None
        while (found := handover.read_message(self.process.stdout)) is not None:
            kind, *fields = found
            if kind == handover.DROPPED:
                self._dropped(fields[0])
            elif kind == handover.FLUSHED and (flush := self.flushes.pop(fields[0], None)) is not None:
                flush.end(fields[1])
        # Ended before the flushes are: a flush registered from now on sees it (WriterProcess.flush).
        self.ended.set()
        for flush in list(self.flushes.values()):
            flush.end(STOPPED)

    def close(self, timeout: float) -> None:
        """Ends its input, so that it writes what it holds and exits; killed when it takes longer than timeout."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("capture writer process took longer than %.0f s to stop: killed", timeout)
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout)
        if self.process.stdout is not None and not self._reader.is_alive():  # never closed under its reader
            self.process.stdout.close()


class WriterProcess:
    """The queue the request path fills, and the thread that hands it over to the writer process."""

    def __init__(self, settings: WriterSettings, dropped: Callable[[int], None]) -> None:
        self.settings = settings
        self._wake = threading.Event()
        self.queue: RecordQueue[Handed] = capture_queue(settings.queue_length, self._wake)
        self._dropped = dropped
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._numbers = itertools.count()
        self._child: Child | None = None
        self._thread = threading.Thread(target=self._run, name="capture-handover", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Sends what is queued, then lets the writer process write it and exit (a graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._send_lock:
            if self._child is not None:
                self._child.close(timeout)

    def flush(self) -> None:
        """Everything queued so far written to the store (blocking); StoreUnavailable when it cannot be."""
        with self._send_lock:
            if self._child is None and not self.queue.records:  # nothing was ever captured here
                return
            child = self._hand_over()
            if child is None:
                raise StoreUnavailable("the capture writer process cannot be started")
            number = next(self._numbers)
            flush = child.flushes[number] = Flush()
            try:
                child.send(handover.message(handover.FLUSH, number))
                child.stdin.flush()
            except OSError:
                child.flushes.pop(number, None)
                raise StoreUnavailable(STOPPED) from None
            if child.ended.is_set():
                flush.end(STOPPED)
        if not flush.done.wait(FLUSH_TIMEOUT_SECONDS):
            raise StoreUnavailable(f"the capture writer process did not answer in {FLUSH_TIMEOUT_SECONDS:.0f} s")
        if flush.error is not None:
            raise StoreUnavailable(flush.error)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(HAND_OVER_SECONDS)
            self._wake.clear()
            with self._send_lock:
                self._hand_over()
        with self._send_lock:
            self._hand_over()

    def _hand_over(self) -> Child | None:
        """Sends what is queued to the writer process, started first when it is not running; the process, None
        when nothing was ever queued. Answers it cannot take (it died meanwhile) are dropped and counted."""
        items = self.queue.take(self.queue.capacity)
        if not items and self._child is None:
            return None
        try:
            child = self._running_child()
            if not items:
                return child
            for model in {id(item.loaded): item.loaded for item in items if item.loaded is not None}.values():
                if (model.stem, model.version) not in child.models:
                    child.send(handover.model_message(model))
                    child.models.add((model.stem, model.version))
            child.send(handover.answers_message(items))
            child.stdin.flush()
        except OSError as error:
            self._dropped(sum(item.records for item in items))
            logger.warning("capture writer process cannot be reached, %d answers dropped: %s", len(items), error)
        return self._child

    def _running_child(self) -> Child:
        if self._child is not None and self._child.alive():
            return self._child
        if self._child is not None:
            logger.warning("capture writer process exited with code %s: started again", self._child.process.returncode)
            self._child.close(STOP_SECONDS)  # it has exited: its answers end at once
        self._child = Child(self.settings, self._dropped)
        return self._child
