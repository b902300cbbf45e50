"""Live accuracy from a window of labelled predictions: the share right with its 95 % Wilson interval, the
confusion counts, the share of predictions labelled and how long labels took."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.capture.store import Joined, VersionRow

# The normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054
DELAY_QUANTILES = (0.5, 0.9)


@dataclass(frozen=True)
class Performance:
    """One model version's live figures."""

    model: str
    version: str
    classes: tuple[str, ...]
    first_at: float
    last_at: float
    window_labels: int  # labelled records in the window
    correct: int
    accuracy: float | None  # None without a label
    lower: float | None
    upper: float | None
    confusion: dict[tuple[str, str], int]  # (label, predicted): records
    labelled_recent: int  # of the recent predictions, those labelled
    recent: int  # the recent predictions coverage is measured on
    delays: dict[float, float]  # quantile: seconds from prediction to label
    # Confidence-based estimate over the version's recent predictions, labelled or not: None without one.
    estimated_accuracy: float | None = None
    estimated_records: int = 0  # the predictions the estimate is the mean of

    @property
    def coverage(self) -> float | None:
        return self.labelled_recent / self.recent if self.recent else None


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: sound at 0, at 1 and with few trials, unlike p ± z·se."""
    if total == 0:
        return 0.0, 1.0
    share = correct / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def performance(version: VersionRow, window: Sequence[Joined], coverage: tuple[int, int]) -> Performance:
    total = len(window)
    correct = sum(1 for joined in window if joined.predicted == joined.label)
    lower, upper = wilson(correct, total) if total else (None, None)
    confusion = Counter((joined.label, joined.predicted) for joined in window)
    # A label posted before its prediction was written (still in a worker's queue) took no time.
    delays = np.array([max(0.0, joined.labelled_at - joined.predicted_at) for joined in window])
    quantiles = np.quantile(delays, DELAY_QUANTILES).tolist() if total else []
    return Performance(
        model=version.model,
        version=version.version,
        classes=version.classes,
        first_at=version.first_at,
        last_at=version.last_at,
        window_labels=total,
        correct=correct,
        accuracy=correct / total if total else None,
        lower=lower,
        upper=upper,
        confusion=dict(confusion),
        labelled_recent=coverage[0],
        recent=coverage[1],
        delays=dict(zip(DELAY_QUANTILES, quantiles, strict=True)) if total else {},
    )
