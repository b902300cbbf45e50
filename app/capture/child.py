"""The capture writer process: what a worker hands over (app/capture/handover.py), written to the store.

Started by its worker (app/capture/process.py) as `python -m app.capture`, it reads frames on its standard
input (its settings first) and answers on its standard output; its logs go to standard error, as the worker's
do. It runs the writer (app/capture/writer.py): its bounded queue, its rounds, its pruning. When its input ends
(the worker stops, or dies), it writes what it holds and exits. It runs in a session of its own, so a
terminal's interrupt reaches its worker, which then stops it; and at a lower priority than its worker.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO

from app import logs
from app.capture import handover
from app.capture.records import Captured
from app.capture.store import Store
from app.capture.writer import STOP_SECONDS, Writer
from app.errors import StoreUnavailable
from app.registry import LoadedModel
from app.rules import LogFormat

# Below the workers' priority: when the CPUs are busy, serving goes first, and the writer takes what is left (its
# queue bounds what waits meanwhile; a starved writer drops and counts, as one behind the traffic does).
NICENESS = 10
logger = logging.getLogger("app")


@dataclass(frozen=True)
class WriterSettings:
    """What the worker tells its writer process first, as JSON."""

    url: str
    queue_length: int
    retention_days: int
    max_rows: int
    log_format: LogFormat = "text"

    def message(self) -> bytes:
        return handover.message(handover.SETTINGS, json.dumps(self.__dict__))


class Answers:
    """The writer's answers to its worker, one frame at a time whichever thread sends them."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, frame: bytes) -> None:
        with self._lock:
            try:
                self._stream.write(frame)
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the worker is gone: nobody is left to tell
                pass

    def dropped(self, records: int) -> None:
        self.send(handover.message(handover.DROPPED, records))


def serve(settings: WriterSettings, source: IO[bytes], answers: Answers) -> None:
    """Reads the worker's frames until its input ends, then writes what is queued and returns."""
    store = Store(settings.url)

    def prune() -> None:
        store.prune(time.time(), settings.retention_days, settings.max_rows)

    writer = Writer(store, settings.queue_length, prune, answers.dropped)
    writer.start()
    models: dict[tuple[str, str], LoadedModel] = {}
    try:
        while (found := handover.read_message(source)) is not None:
            kind, *fields = found
            if kind == handover.ANSWERS:
                queue(writer, [handover.taken_back(payload, models) for payload in fields[0]], answers)
            elif kind == handover.MODEL:
                model = handover.loaded_model(*fields)
                models[(model.stem, model.version)] = model
            elif kind == handover.FLUSH:
                answers.send(handover.message(handover.FLUSHED, fields[0], flushed(writer)))
    finally:
        writer.stop(STOP_SECONDS)
        store.close()


def queue(writer: Writer, items: list[Captured], answers: Answers) -> None:
    dropped = sum(len(item) for item in items if not writer.queue.put(item))
    if dropped:
        answers.dropped(dropped)


def flushed(writer: Writer) -> str | None:
    """Writes what is queued; None when written, else why the store could not be written."""
    try:
        writer.flush()
    except StoreUnavailable as error:
        return error.reason
    return None


def main() -> None:
    """The writer process: its settings are the first frame (not its command line, which others may read)."""
    first = handover.read_message(sys.stdin.buffer)
    if first is None or first[0] != handover.SETTINGS:
        raise SystemExit("the capture writer process expects its settings first, from the worker that starts it")
    settings = WriterSettings(**json.loads(first[1]))
    os.nice(NICENESS)
    logs.configure(settings.log_format)
    # Frames go on the standard output alone: anything printed goes to the standard error instead.
    with os.fdopen(os.dup(1), "wb") as channel:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        serve(settings, sys.stdin.buffer, Answers(channel))
