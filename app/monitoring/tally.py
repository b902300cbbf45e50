"""One model file's counts: the ring of its last records and the running totals of every record, in one buffer.

A batch predicted is copied into the ring; records about to be overwritten are first folded into the totals.
Layout says, once, where everything sits: the arrays in the buffer and each count within the totals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.buffers import Buffer
from app.features import CATEGORICAL, CATEGORIES, FEW_RECORDS, NUMERIC, Batch
from app.monitoring.profile import Profile
from app.predictors import Prediction

# Upper bounds of the confidence histogram's buckets (the top class probability); +Inf follows.
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
BUCKET_BOUNDS = np.array(CONFIDENCE_BUCKETS)
CATEGORY_SHAPE = tuple(len(CATEGORIES[name]) for name in CATEGORICAL)
# Every combination of categories as one code: a batch's categories are looked up in one pass.
JOINT_CODES = {
    combination: code for code, combination in enumerate(itertools.product(*(CATEGORIES[n] for n in CATEGORICAL)))
}


@dataclass(frozen=True)
class Layout:
    """Where a tally keeps its counts: its arrays in the buffer, and each count within its totals.

    The totals hold the records predicted per class, then the values outside the training range per numeric
    feature, then (with probabilities) the records per confidence bucket.
    """

    window: int
    class_count: int
    probabilities: bool

    @classmethod
    def of(cls, profile: Profile, window: int) -> Layout:
        return cls(window, len(profile.classes), profile.probabilities)

    @property
    def buckets(self) -> int:
        """Confidence buckets: none without probabilities."""
        return len(CONFIDENCE_BUCKETS) + 1 if self.probabilities else 0

    @property
    def totals(self) -> int:
        return self.class_count + len(NUMERIC) + self.buckets

    @property
    def classes(self) -> slice:
        return slice(0, self.class_count)

    @property
    def out_of_range(self) -> slice:
        return slice(self.class_count, self.class_count + len(NUMERIC))

    @property
    def confidence(self) -> slice:
        return slice(self.class_count + len(NUMERIC), self.totals)

    def arrays(self) -> dict[str, tuple[Any, tuple[int, ...]]]:
        """The tally's arrays in its buffer, in order: 8-byte ones first, so each starts aligned."""
        return {
            "head": (np.int64, (2,)),  # records written, records folded into the totals
            "confidence_sum": (np.float64, (1,)),  # sum of the top probabilities folded
            "totals": (np.int64, (self.totals,)),
            "numeric": (np.float64, (self.window, len(NUMERIC))),
            "probabilities": (np.float64, (self.window, self.class_count if self.probabilities else 0)),
            "categories": (np.uint8, (self.window,)),  # JOINT_CODES
            "classes": (np.uint8, (self.window,)),  # positions in the profile's classes
        }

    @property
    def size(self) -> int:
        return sum(np.dtype(dtype).itemsize * math.prod(shape) for dtype, shape in self.arrays().values())

    def views(self, data: memoryview) -> dict[str, np.ndarray]:
        """Each array, by name, as a view of the buffer's bytes."""
        views, offset = {}, 0
        for name, (dtype, shape) in self.arrays().items():
            views[name] = np.frombuffer(data, dtype, math.prod(shape), offset).reshape(shape)
            offset += views[name].nbytes
        return views


@dataclass(frozen=True)
class Counts:
    """What a tally holds at one moment: the window's records, and the totals of every record counted."""

    layout: Layout
    records: int  # counted since the tally began
    numeric: np.ndarray  # (w, 4) the window's measurements
    categories: np.ndarray  # (w,) JOINT_CODES
    classes: np.ndarray  # (w,) positions in the profile's classes
    probabilities: np.ndarray | None  # (w, classes)
    totals: np.ndarray  # laid out by layout
    confidence_sum: float

    @classmethod
    def empty(cls, layout: Layout) -> Counts:
        probabilities = np.empty((0, layout.class_count)) if layout.probabilities else None
        numeric, codes = np.empty((0, len(NUMERIC))), np.empty(0, np.uint8)
        return cls(layout, 0, numeric, codes, codes, probabilities, np.zeros(layout.totals, np.int64), 0.0)

    @property
    def predicted(self) -> np.ndarray:
        """Records predicted per class, in total."""
        return self.totals[self.layout.classes]

    @property
    def out_of_range(self) -> np.ndarray:
        """Values outside the training min and max per numeric feature, in total."""
        return self.totals[self.layout.out_of_range]

    @property
    def confidence_counts(self) -> np.ndarray:
        """Records per confidence bucket, in total; empty without probabilities."""
        return self.totals[self.layout.confidence]


def tally_size(profile: Profile, window: int) -> int:
    return Layout.of(profile, window).size


class Tally:
    """One model file's counts: its last `window` records, as a ring, and the totals of every record since."""

    def __init__(self, profile: Profile, window: int, buffer: Buffer) -> None:
        self.profile = profile
        self.window = window
        self.buffer = buffer
        self.layout = Layout.of(profile, window)
        views = self.layout.views(buffer.data)
        self.head, self.confidence_sum, self.totals = views["head"], views["confidence_sum"], views["totals"]
        self.numeric, self.probabilities = views["numeric"], views["probabilities"]
        self.categories, self.classes = views["categories"], views["classes"]

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
        more, more_sum = self.contributions(numeric[pending], classes[pending], _rows(kept, pending))
        return Counts(
            self.layout, written, numeric, categories, classes, kept, totals + more, confidence_sum + more_sum
        )

    def _fold_ring(self, written: int, folded: int) -> None:
        pending = _ring_positions(folded, written - folded, self.window)
        probabilities = self.probabilities[pending] if self.profile.probabilities else None
        self._fold(self.numeric[pending], self.classes[pending], probabilities)

    def _fold(self, numeric: np.ndarray, classes: np.ndarray, probabilities: np.ndarray | None) -> None:
        totals, confidence_sum = self.contributions(numeric, classes, probabilities)
        self.totals += totals
        self.confidence_sum[0] += confidence_sum

    def contributions(
        self, numeric: np.ndarray, classes: np.ndarray, probabilities: np.ndarray | None
    ) -> tuple[np.ndarray, float]:
        """What records add to the totals (as the layout places them), and to the sum of their top probabilities."""
        layout, profile = self.layout, self.profile
        totals = np.zeros(layout.totals, np.int64)
        totals[layout.classes] = np.bincount(classes, minlength=layout.class_count)
        totals[layout.out_of_range] = _outside(profile, numeric)
        if probabilities is None:
            return totals, 0.0
        top = top_probabilities(probabilities, classes)
        buckets = np.searchsorted(BUCKET_BOUNDS, top, side="left")
        totals[layout.confidence] = np.bincount(buckets, minlength=layout.buckets)
        return totals, float(top.sum())


def top_probabilities(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each record's top probability: its predicted class's (the predictor's argmax); a gather, cheaper than max."""
    top: np.ndarray = np.take_along_axis(probabilities, classes[:, np.newaxis].astype(np.intp), axis=1)[:, 0]
    return top


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
