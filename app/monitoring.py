"""Drift monitoring: each model's recent traffic against the reference profile its training wrote. No HTTP.

A model file's metadata["reference"] (scripts/train.py) describes the training rows: each numeric feature's
decile bins (open at both ends), min and max; each categorical feature's category shares; the predicted-class
shares. For every batch predicted, the Monitor copies the records' measurements, categories, classes and
probabilities into a ring holding the model's last DRIFT_WINDOW records (app/buffers.py: in memory, or shared
by the workers); records leaving the ring are first folded into running totals. Bins, shares and PSI are
computed when someone reads the figures (a scrape, the /monitor page), so a prediction pays only for a few
array copies. A file without a profile, or with a malformed one, is served as before, without figures.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from app.buffers import Buffer, LocalBuffers, SharedBuffers
from app.errors import ServingError
from app.features import CATEGORICAL, CATEGORIES, FEW_RECORDS, NUMERIC, Batch
from app.predictors import Prediction

if TYPE_CHECKING:
    from app.registry import LoadedModel, Stamp

logger = logging.getLogger("app")

# An empty bin counts as this share (0.01 %) in a PSI, whose logarithm has no value at 0.
PSI_FLOOR = 1e-4
# The usual reading of a PSI: below 0.1 stable, from 0.1 to 0.25 moderate, above 0.25 significant.
MODERATE_FROM = 0.1
SIGNIFICANT_ABOVE = 0.25
# Below this many records in the window a PSI is mostly sampling noise: shown, not judged.
MIN_RECORDS = 100
# Upper bounds of the confidence histogram's buckets (the top class probability); +Inf follows.
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
BUCKET_BOUNDS = np.array(CONFIDENCE_BUCKETS)
# Classes are stored in one byte per record.
MAX_CLASSES = 255
# A profile's shares must sum to 1 within this.
SHARE_TOLERANCE = 1e-6
CATEGORY_SHAPE = tuple(len(CATEGORIES[name]) for name in CATEGORICAL)
# Every combination of categories as one code: a batch's categories are looked up in one pass.
JOINT_CODES = {
    combination: code for code, combination in enumerate(itertools.product(*(CATEGORIES[n] for n in CATEGORICAL)))
}
Level = Literal["no records", "too few records", "stable", "moderate", "significant"]


class MalformedProfile(ValueError):
    """A model file's reference entry cannot be read as a profile."""


@dataclass(frozen=True)
class NoProfile:
    """Why a model has no drift figures."""

    reason: str
    malformed: bool = False


NO_PROFILE = NoProfile("no reference profile")


@dataclass(frozen=True)
class Profile:
    """A model's reference profile, checked and ready to compare a window with."""

    rows: int
    edges: tuple[np.ndarray, ...]  # per numeric feature, inner bin edges: bin i holds (edges[i-1], edges[i]]
    numeric_shares: tuple[np.ndarray, ...]
    low: np.ndarray  # (4,) the training minimum of each numeric feature
    high: np.ndarray
    category_shares: tuple[np.ndarray, ...]  # per categorical feature, in the app's category order
    classes: tuple[str, ...]  # the model's, in its order
    class_shares: np.ndarray
    probabilities: bool

    def plain(self) -> dict[str, Any]:
        """The profile as a model file writes it, from the checked values only."""
        numeric = {
            name: {"edges": edges.tolist(), "shares": shares.tolist(), "min": float(low), "max": float(high)}
            for name, edges, shares, low, high in zip(
                NUMERIC, self.edges, self.numeric_shares, self.low, self.high, strict=True
            )
        }
        categorical = {
            name: dict(zip(CATEGORIES[name], shares.tolist(), strict=True))
            for name, shares in zip(CATEGORICAL, self.category_shares, strict=True)
        }
        predicted = dict(zip(self.classes, self.class_shares.tolist(), strict=True))
        return {"rows": self.rows, "numeric": numeric, "categorical": categorical, "predicted_classes": predicted}

    def header(self, window: int) -> bytes:
        """What a shared buffer says of its contents, so that a worker that never loaded the model can read it."""
        description = {"reference": self.plain(), "classes": self.classes, "probabilities": self.probabilities}
        return json.dumps({**description, "window": window}, sort_keys=True).encode()


def read_profile(
    metadata: Mapping[str, Any] | None, classes: Sequence[str], probabilities: bool
) -> Profile | NoProfile:
    """The model's profile; NoProfile when its file has none or a malformed one."""
    entry = (metadata or {}).get("reference")
    if entry is None:
        return NO_PROFILE
    try:
        return parse_profile(entry, tuple(classes), probabilities)
    except Exception as error:  # a hand-edited entry must never fail a load: whatever cannot be read is malformed
        reason = str(error) if isinstance(error, MalformedProfile) else f"{type(error).__name__}: {error}"
        return NoProfile(f"malformed reference profile: {reason}", malformed=True)


def parse_profile(entry: Any, classes: tuple[str, ...], probabilities: bool) -> Profile:
    if not isinstance(entry, dict):
        raise MalformedProfile(f"it is a {type(entry).__name__}, not a dict")
    rows = entry.get("rows")
    if type(rows) is not int or rows < 1:
        raise MalformedProfile("'rows' is not a whole number above 0")
    if len(classes) > MAX_CLASSES:
        raise MalformedProfile(f"the model has {len(classes)} classes, more than {MAX_CLASSES}")
    numeric = _features(entry, "numeric", NUMERIC)
    categorical = _features(entry, "categorical", CATEGORICAL)
    bins = [_numeric_bins(name, numeric[name]) for name in NUMERIC]
    return Profile(
        rows=rows,
        edges=tuple(edges for edges, _, _, _ in bins),
        numeric_shares=tuple(shares for _, shares, _, _ in bins),
        low=np.array([low for _, _, low, _ in bins]),
        high=np.array([high for _, _, _, high in bins]),
        category_shares=tuple(_named_shares(name, categorical[name], CATEGORIES[name]) for name in CATEGORICAL),
        classes=classes,
        class_shares=_named_shares("predicted_classes", entry.get("predicted_classes"), classes),
        probabilities=probabilities,
    )


def _features(entry: dict[str, Any], key: str, names: Sequence[str]) -> dict[str, Any]:
    value = entry.get(key)
    if not isinstance(value, dict) or set(value) != set(names):
        raise MalformedProfile(f"{key!r} does not describe exactly {', '.join(names)}")
    return value


def _numeric_bins(name: str, value: Any) -> tuple[np.ndarray, np.ndarray, float, float]:
    if not isinstance(value, dict):
        raise MalformedProfile(f"{name!r} is not a dict")
    edges = _numbers(value.get("edges"), f"{name}'s edges")
    shares = _shares(value.get("shares"), f"{name}'s shares")
    if np.any(np.diff(edges) <= 0):
        raise MalformedProfile(f"{name}'s edges are not increasing")
    if len(shares) != len(edges) + 1:
        raise MalformedProfile(f"{name} has {len(shares)} shares for {len(edges) + 1} bins")
    low, high = _numbers([value.get("min"), value.get("max")], f"{name}'s min and max")
    if low > high:
        raise MalformedProfile(f"{name}'s min is above its max")
    return edges, shares, float(low), float(high)


def _named_shares(label: str, value: Any, names: Sequence[str]) -> np.ndarray:
    """A {name: share} entry as shares in the order of names; a name it leaves out has none."""
    if not isinstance(value, dict) or not set(value) <= set(names):
        raise MalformedProfile(f"{label!r} is not a dict of shares of {', '.join(names)}")
    _shares(list(value.values()), f"{label}'s shares")
    return np.array([float(value.get(name, 0.0)) for name in names])


def _numbers(value: Any, label: str) -> np.ndarray:
    if not isinstance(value, list) or not all(type(item) in (int, float) for item in value):
        raise MalformedProfile(f"{label} are not a list of numbers")
    numbers = np.array(value, dtype=np.float64)
    if not np.all(np.isfinite(numbers)):
        raise MalformedProfile(f"{label} are not all finite")
    return numbers


def _shares(value: Any, label: str) -> np.ndarray:
    shares = _numbers(value, label)
    if len(shares) == 0 or np.any(shares < 0) or abs(shares.sum() - 1) > SHARE_TOLERANCE:
        raise MalformedProfile(f"{label} are not shares summing to 1")
    return shares


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum((a - e) * ln(a / e)) over the bins, each share at least PSI_FLOOR."""
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float | None, records: int) -> Level:
    if value is None:
        return "no records"
    if records < MIN_RECORDS:
        return "too few records"
    if value > SIGNIFICANT_ABOVE:
        return "significant"
    return "moderate" if value >= MODERATE_FROM else "stable"


# --- the counts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """What a tally holds at one moment: the window's records, and the totals of every record counted."""

    records: int  # counted since the tally began
    numeric: np.ndarray  # (w, 4) the window's measurements
    categories: np.ndarray  # (w,) JOINT_CODES
    classes: np.ndarray  # (w,) positions in the profile's classes
    probabilities: np.ndarray | None  # (w, classes)
    totals: np.ndarray  # per class, then out of range per numeric feature, then per confidence bucket
    confidence_sum: float


def _shapes(profile: Profile, window: int) -> list[tuple[Any, tuple[int, ...]]]:
    """The tally's arrays in its buffer: 8-byte ones first, so each starts aligned."""
    classes = len(profile.classes)
    totals = classes + len(NUMERIC) + (len(CONFIDENCE_BUCKETS) + 1 if profile.probabilities else 0)
    shapes: list[tuple[Any, tuple[int, ...]]] = [
        (np.int64, (2,)),  # records written, records folded into the totals
        (np.float64, (1,)),  # sum of the top probabilities folded
        (np.int64, (totals,)),
        (np.float64, (window, len(NUMERIC))),
        (np.float64, (window, classes if profile.probabilities else 0)),
        (np.uint8, (window,)),  # categories
        (np.uint8, (window,)),  # classes
    ]
    return shapes


def tally_size(profile: Profile, window: int) -> int:
    return sum(np.dtype(dtype).itemsize * math.prod(shape) for dtype, shape in _shapes(profile, window))


class Tally:
    """One model file's counts: its last `window` records, as a ring, and the totals of every record since."""

    def __init__(self, profile: Profile, window: int, buffer: Buffer) -> None:
        self.profile = profile
        self.window = window
        self.buffer = buffer
        arrays, offset = [], 0
        for dtype, shape in _shapes(profile, window):
            array = np.frombuffer(buffer.data, dtype, math.prod(shape), offset).reshape(shape)
            arrays.append(array)
            offset += array.nbytes
        self.head, self.confidence_sum, self.totals, self.numeric, self.probabilities, self.categories, self.classes = (
            arrays
        )

    def add(self, batch: Batch, prediction: Prediction) -> None:
        """Counts a predicted batch: a few array copies; the ring's oldest records are folded into the totals."""
        numeric, classes = batch.numeric, prediction.indices
        probabilities = prediction.probabilities if self.profile.probabilities else None
        n, window = len(numeric), self.window
        # Beyond a window's worth, a batch's first records go straight to the totals: the ring takes the last ones.
        skipped = max(n - window, 0)
        categories = _category_codes(batch, skipped)
        self.buffer.acquire()
        try:
            written, folded = self.head.tolist()
            if written + n - folded > window:
                self._fold_ring(written, folded)
                if skipped:
                    self._fold(numeric[:skipped], classes[:skipped], _rows(probabilities, slice(0, skipped)))
                    numeric, classes, probabilities = (
                        numeric[skipped:],
                        classes[skipped:],
                        _rows(probabilities, slice(skipped, None)),
                    )
                self.head[1] = written + skipped
            start = (written + skipped) % window
            end = start + len(numeric)
            if end <= window:
                self.numeric[start:end] = numeric
                self.categories[start:end] = categories
                self.classes[start:end] = classes
                if probabilities is not None:
                    self.probabilities[start:end] = probabilities
            else:
                self._put_wrapping(start, numeric, categories, classes, probabilities)
            self.head[0] = written + n
        finally:
            self.buffer.release()

    def _put_wrapping(
        self,
        start: int,
        numeric: np.ndarray,
        categories: list[int] | np.ndarray,
        classes: np.ndarray,
        probabilities: np.ndarray | None,
    ) -> None:
        split = self.window - start
        rings = [self.numeric, self.categories, self.classes, self.probabilities]
        for ring, values in zip(rings, [numeric, categories, classes, probabilities], strict=True):
            if values is not None:
                ring[start:] = values[:split]
                ring[: len(values) - split] = values[split:]

    def read(self) -> Counts:
        with self.buffer.locked():
            written, folded = int(self.head[0]), int(self.head[1])
            filled = min(written, self.window)
            numeric, categories = self.numeric[:filled].copy(), self.categories[:filled].copy()
            classes, probabilities = self.classes[:filled].copy(), self.probabilities[:filled].copy()
            totals, confidence_sum = self.totals.copy(), float(self.confidence_sum[0])
        kept = probabilities if self.profile.probabilities else None
        pending = _ring_positions(folded, written - folded, self.window)
        more, more_sum = contributions(self.profile, numeric[pending], classes[pending], _rows(kept, pending))
        return Counts(written, numeric, categories, classes, kept, totals + more, confidence_sum + more_sum)

    def _fold_ring(self, written: int, folded: int) -> None:
        pending = _ring_positions(folded, written - folded, self.window)
        probabilities = self.probabilities[pending] if self.profile.probabilities else None
        self._fold(self.numeric[pending], self.classes[pending], probabilities)

    def _fold(self, numeric: np.ndarray, classes: np.ndarray, probabilities: np.ndarray | None) -> None:
        totals, confidence_sum = contributions(self.profile, numeric, classes, probabilities)
        self.totals += totals
        self.confidence_sum[0] += confidence_sum


def contributions(
    profile: Profile, numeric: np.ndarray, classes: np.ndarray, probabilities: np.ndarray | None
) -> tuple[np.ndarray, float]:
    """What records add to the totals: per class, out of range per feature, per confidence bucket; and the top sum."""
    parts = [np.bincount(classes, minlength=len(profile.classes)), _outside(profile, numeric)]
    if probabilities is None:
        return np.concatenate(parts), 0.0
    top = _top(probabilities, classes)
    buckets = np.searchsorted(BUCKET_BOUNDS, top, side="left")
    parts.append(np.bincount(buckets, minlength=len(CONFIDENCE_BUCKETS) + 1))
    return np.concatenate(parts), float(top.sum())


def _outside(profile: Profile, numeric: np.ndarray) -> np.ndarray:
    """Per numeric feature, the records outside its training range."""
    outside = np.zeros(len(NUMERIC), dtype=np.int64)
    if not len(numeric):
        return outside
    # Traffic is mostly in range: each feature's minimum and maximum clear it at once, and only the others are
    # counted value by value. Reduced along contiguous rows of the transposed copy: numpy's reductions down the
    # columns of an (n, 4) block, or its comparisons with 4 bounds at once, are several times slower.
    columns = numeric.T.copy()
    suspects = (columns.min(axis=1) < profile.low) | (columns.max(axis=1) > profile.high)
    for i in np.flatnonzero(suspects).tolist():
        column = columns[i]
        outside[i] = np.count_nonzero((column < profile.low[i]) | (column > profile.high[i]))
    return outside


def _top(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each record's top probability: its predicted class's (the predictor's argmax); a gather, cheaper than max."""
    top: np.ndarray = np.take_along_axis(probabilities, classes[:, np.newaxis].astype(np.intp), axis=1)[:, 0]
    return top


def _category_codes(batch: Batch, skipped: int) -> list[int] | np.ndarray:
    """The joint category code of each record from skipped on, which numpy copies into the ring in one go."""
    if len(batch) - skipped > FEW_RECORDS:
        # The batch's own codes, found once when it was checked: two array operations, nothing per record.
        return batch.joint_codes(skipped)
    columns: Iterable[list[str]] = map(batch.categorical.__getitem__, CATEGORICAL)
    if skipped:
        columns = (column[skipped:] for column in columns)
    # A few records: a lookup each costs less than starting numpy.
    return list(map(JOINT_CODES.__getitem__, zip(*columns, strict=True)))


def _rows(array: np.ndarray | None, rows: slice | np.ndarray) -> np.ndarray | None:
    return None if array is None else array[rows]


def _ring_positions(first: int, count: int, window: int) -> np.ndarray | slice:
    """Where records first .. first + count - 1 sit in a ring of window records."""
    start = first % window
    if start + count <= window:
        return slice(start, start + count)
    wrapped: np.ndarray = np.r_[start:window, 0 : start + count - window]
    return wrapped


# --- the figures ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """One feature's bins (or the predicted classes): the reference's shares beside the window's, and their PSI."""

    name: str
    bins: tuple[str, ...]
    reference: tuple[float, ...]
    window: tuple[float, ...]  # all zero while the window is empty
    psi: float | None  # None while the window is empty
    level: Level
    out_of_range: int | None = None  # numeric features: values outside the training min and max, in total


@dataclass(frozen=True)
class Confidence:
    """The top class probability of each record: a histogram of every record counted, the window's mean."""

    buckets: tuple[float, ...]  # upper bounds; one more bucket above the last
    counts: tuple[int, ...]  # records per bucket, not cumulative
    total: float  # their sum
    window_mean: float | None


@dataclass(frozen=True)
class DriftReport:
    """One model file's figures; without a usable profile, only the reason."""

    model: str  # the file stem
    reason: str | None  # why there are no figures
    window_size: int
    window_records: int = 0
    records: int = 0  # counted since this file was first predicted with
    reference_rows: int = 0
    features: tuple[Distribution, ...] = ()
    predictions: Distribution | None = None
    predicted: tuple[tuple[str, int], ...] = ()  # records predicted per class, in total
    confidence: Confidence | None = None


def build_report(model: str, profile: Profile, window_size: int, counts: Counts) -> DriftReport:
    filled = len(counts.numeric)
    classes = len(profile.classes)
    out_of_range = counts.totals[classes : classes + len(NUMERIC)].tolist()
    features = [
        _distribution(name, _numeric_labels(edges), shares, np.searchsorted(edges, counts.numeric[:, i]), filled, out)
        for i, (name, edges, shares, out) in enumerate(
            zip(NUMERIC, profile.edges, profile.numeric_shares, out_of_range, strict=True)
        )
    ]
    categories = np.unravel_index(counts.categories, CATEGORY_SHAPE)
    for name, shares, codes in zip(CATEGORICAL, profile.category_shares, categories, strict=True):
        features.append(_distribution(name, CATEGORIES[name], shares, codes, filled))
    return DriftReport(
        model=model,
        reason=None,
        window_size=window_size,
        window_records=filled,
        records=counts.records,
        reference_rows=profile.rows,
        features=tuple(features),
        predictions=_distribution("class", profile.classes, profile.class_shares, counts.classes, filled),
        predicted=tuple(zip(profile.classes, counts.totals[:classes].tolist(), strict=True)),
        confidence=_confidence(counts, classes + len(NUMERIC)),
    )


def _distribution(
    name: str,
    bins: Sequence[str],
    reference: np.ndarray,
    codes: np.ndarray,
    filled: int,
    out_of_range: int | None = None,
) -> Distribution:
    counts = np.bincount(codes, minlength=len(bins))
    shares = counts / filled if filled else counts.astype(np.float64)
    value = psi(reference, shares) if filled else None
    return Distribution(
        name, tuple(bins), tuple(reference.tolist()), tuple(shares.tolist()), value, level(value, filled), out_of_range
    )


def _confidence(counts: Counts, start: int) -> Confidence | None:
    if counts.probabilities is None:
        return None
    mean = float(_top(counts.probabilities, counts.classes).mean()) if len(counts.classes) else None
    return Confidence(CONFIDENCE_BUCKETS, tuple(counts.totals[start:].tolist()), counts.confidence_sum, mean)


def _numeric_labels(edges: np.ndarray) -> tuple[str, ...]:
    if not len(edges):
        return ("all",)
    inner = [f"{low:.4g} to {high:.4g}" for low, high in itertools.pairwise(edges)]
    return (f"≤ {edges[0]:.4g}", *inner, f"> {edges[-1]:.4g}")


# --- the monitor ------------------------------------------------------------------------------------------


def key_of(name: str, stamp: Stamp) -> str:
    """A model file as it is now: a replaced file (new inode, time or size) starts afresh under a new key."""
    return f"{name.removesuffix('.pkl')}-{stamp.inode}-{stamp.mtime_ns}-{stamp.size}"


class Monitor:
    """Counts each predicted batch against its model's profile, and reads the figures back.

    stamps: every model file in the folder now, with its stamp (a folder scan and a stat each).
    folder: where the workers share their counts; None when one process serves alone.
    """

    def __init__(
        self,
        window: int,
        enabled: bool = True,
        folder: Path | None = None,
        stamps: Callable[[], Mapping[str, Stamp]] = dict,
    ) -> None:
        self.window = window
        self.enabled = enabled
        self._buffers: LocalBuffers | SharedBuffers = SharedBuffers(folder) if folder else LocalBuffers()
        self._stamps = stamps
        # By file name: the model object this process last predicted with, and where its records go.
        self._active: dict[str, tuple[LoadedModel, Tally | None]] = {}
        self._tallies: dict[str, Tally] = {}
        self._lock = threading.Lock()

    def record(self, model: LoadedModel, batch: Batch, prediction: Prediction) -> None:
        """Counts a batch the model predicted; a model without a profile is not counted."""
        active = self._active.get(model.name)
        if active is None or active[0] is not model:
            active = self._activate(model)
        if active[1] is not None:
            active[1].add(batch, prediction)

    def report(self, model: LoadedModel) -> DriftReport:
        """The model's figures now; empty until it predicts (blocking: may open its shared counts)."""
        profile = model.reference
        if not isinstance(profile, Profile):
            return DriftReport(model.stem, profile.reason, self.window)
        tally = self._attached(key_of(model.name, model.stamp))
        window = tally.read() if tally is not None else _empty(profile)
        return build_report(model.stem, profile, self.window, window)

    def reports(self) -> list[DriftReport]:
        """The figures of every model file that has counts (blocking: a folder scan and a stat per model)."""
        if not self.enabled:
            return []
        current = self._sweep()
        tallies = [(name, self._attached(key)) for key, name in sorted(current.items(), key=lambda item: item[1])]
        return [
            build_report(name.removesuffix(".pkl"), tally.profile, self.window, tally.read())
            for name, tally in tallies
            if tally is not None
        ]

    def _activate(self, model: LoadedModel) -> tuple[LoadedModel, Tally | None]:
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
                buffer = self._buffers.open(key, profile.header(self.window), tally_size(profile, self.window))
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


def _empty(profile: Profile) -> Counts:
    classes = len(profile.classes)
    totals = classes + len(NUMERIC) + (len(CONFIDENCE_BUCKETS) + 1 if profile.probabilities else 0)
    return Counts(
        0,
        np.empty((0, len(NUMERIC))),
        np.empty(0, np.uint8),
        np.empty(0, np.uint8),
        np.empty((0, classes)) if profile.probabilities else None,
        np.zeros(totals, np.int64),
        0.0,
    )
