"""The Monitor: counts each predicted batch against its model's profile, and reads the figures back.

It knows a model by what the Monitored protocol names (app/registry.py's LoadedModel has it), not by the
registry, which sits above it and reads each file's profile at load.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from app.buffers import LocalBuffers, SharedBuffers
from app.errors import ServingError
from app.features import Batch
from app.modelfile import Stamp
from app.monitoring.figures import DriftReport, build_report
from app.monitoring.profile import NoProfile, Profile, parse_profile
from app.monitoring.tally import Counts, Layout, Tally
from app.predictors import Prediction
from app.rules import SUFFIX

logger = logging.getLogger("app")


class Monitored(Protocol):
    """What the monitor needs of a loaded model."""

    @property
    def name(self) -> str: ...  # the file name, "random_forest.pkl"

    @property
    def stamp(self) -> Stamp: ...

    @property
    def reference(self) -> Profile | NoProfile: ...


def key_of(name: str, stamp: Stamp) -> str:
    """A model file as it is now: a replaced file (new inode, time or size) starts afresh under a new key."""
    return f"{name.removesuffix(SUFFIX)}-{stamp.inode}-{stamp.mtime_ns}-{stamp.size}"


class Monitor:
    """Counts each predicted batch against its model's profile, and reads the figures back.

    stamps: every model file in the folder now, with its stamp (a folder scan and a stat each).
    folder: where the workers share their counts; None when one process serves alone.
    Every read (report, reports) first sweeps away the counts of model files replaced or deleted.
    """

    def __init__(
        self,
        window: int,
        stamps: Callable[[], Mapping[str, Stamp]],
        enabled: bool = True,
        folder: Path | None = None,
    ) -> None:
        self.window = window
        self.enabled = enabled
        self._buffers: LocalBuffers | SharedBuffers = SharedBuffers(folder) if folder else LocalBuffers()
        self._stamps = stamps
        # By file name: the model object this process last predicted with, and where its records go.
        self._active: dict[str, tuple[Monitored, Tally | None]] = {}
        self._tallies: dict[str, Tally] = {}
        self._lock = threading.Lock()

    def record(self, model: Monitored, batch: Batch, prediction: Prediction) -> None:
        """Counts a batch the model predicted; a model without a profile is not counted."""
        active = self._active.get(model.name)
        if active is None or active[0] is not model:
            active = self._activate(model)
        if active[1] is not None:
            active[1].add(batch, prediction)

    def report(self, model: Monitored) -> DriftReport:
        """The model's figures now; empty until it predicts (blocking: a folder scan, may open its shared counts)."""
        self._sweep()
        stem, profile = model.name.removesuffix(SUFFIX), model.reference
        if not isinstance(profile, Profile):
            return DriftReport(stem, profile.reason, self.window)
        tally = self._attached(key_of(model.name, model.stamp))
        counts = tally.read() if tally is not None else Counts.empty(Layout.of(profile, self.window))
        return build_report(stem, profile, self.window, counts)

    def reports(self) -> list[DriftReport]:
        """The figures of every model file that has counts (blocking: a folder scan and a stat per model)."""
        if not self.enabled:
            return []
        current = self._sweep()
        tallies = [(name, self._attached(key)) for key, name in sorted(current.items(), key=lambda item: item[1])]
        return [
            build_report(name.removesuffix(SUFFIX), tally.profile, self.window, tally.read())
            for name, tally in tallies
            if tally is not None
        ]

    def _activate(self, model: Monitored) -> tuple[Monitored, Tally | None]:
        profile = model.reference
        tally = None
        if self.enabled and isinstance(profile, Profile):
            try:
                tally = self._open(key_of(model.name, model.stamp), profile)
            except OSError as error:
                logger.warning("%s is served without drift figures: they cannot be kept (%s)", model.name, error)
        active = self._active[model.name] = (model, tally)
        return active

    def _open(self, key: str, profile: Profile) -> Tally:
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                layout = Layout.of(profile, self.window)
                buffer = self._buffers.open(key, profile.header(self.window), layout.size)
                tally = self._tallies[key] = Tally(profile, self.window, buffer)
        # A model file new to this process: the counts of the file it replaced, if any, can go.
        self._sweep()
        return tally

    def _attached(self, key: str) -> Tally | None:
        """The key's tally when anyone has counted under it; the counts' own header says how to read them."""
        with self._lock:
            tally = self._tallies.get(key)
            if tally is not None:
                return tally
            found = self._buffers.attach(key)
            if found is None:
                return None
            header, buffer = found
            description = json.loads(header)
            classes, probabilities = tuple(description["classes"]), description["probabilities"]
            profile = parse_profile(description["reference"], classes, probabilities)
            tally = self._tallies[key] = Tally(profile, description["window"], buffer)
            return tally

    def _sweep(self) -> dict[str, str]:
        """Drops the counts of model files that changed or went; returns {key: file name} of the current ones."""
        # Listed before the folder is scanned: counts begun meanwhile belong to a file newer than the scan's.
        keys = self._buffers.keys()
        try:
            current = {key_of(name, stamp): name for name, stamp in self._stamps().items()}
        except ServingError:
            return {}  # the folder cannot be read for now: nothing is known gone
        stale = [key for key in keys if key not in current]
        self._buffers.drop(stale)
        with self._lock:
            for key in stale:
                self._tallies.pop(key, None)
            names = set(current.values())
            for name in [name for name in self._active if name not in names]:
                del self._active[name]
        return current
