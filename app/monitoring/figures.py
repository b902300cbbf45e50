"""The drift figures a person or Prometheus reads: each feature's bins beside the reference's, their PSI, its level.

Computed from a tally's counts when someone asks (a scrape, the /monitor page), never per prediction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.features import CATEGORICAL, CATEGORIES, NUMERIC
from app.monitoring.profile import Profile
from app.monitoring.tally import CATEGORY_SHAPE, CONFIDENCE_BUCKETS, Counts, top_probabilities
from app.rules import MIN_RECORDS

# An empty bin counts as this share (0.01 %) in a PSI, whose logarithm has no value at 0.
PSI_FLOOR = 1e-4
# The usual reading of a PSI: below 0.1 stable, from 0.1 to 0.25 moderate, above 0.25 significant.
MODERATE_FROM = 0.1
SIGNIFICANT_ABOVE = 0.25
Level = Literal["no records", "too few records", "stable", "moderate", "significant"]


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum((a - e) * ln(a / e)) over the bins, each share at least PSI_FLOOR."""
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float | None, records: int) -> Level:
    """How a PSI reads; below MIN_RECORDS records it is shown, not judged."""
    if value is None:
        return "no records"
    if records < MIN_RECORDS:
        return "too few records"
    if value > SIGNIFICANT_ABOVE:
        return "significant"
    return "moderate" if value >= MODERATE_FROM else "stable"


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
    features = [
        _distribution(name, _numeric_labels(edges), shares, np.searchsorted(edges, counts.numeric[:, i]), filled, out)
        for i, (name, edges, shares, out) in enumerate(
            zip(NUMERIC, profile.edges, profile.numeric_shares, counts.out_of_range.tolist(), strict=True)
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
        predicted=tuple(zip(profile.classes, counts.predicted.tolist(), strict=True)),
        confidence=_confidence(counts),
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


def _confidence(counts: Counts) -> Confidence | None:
    if counts.probabilities is None:
        return None
    mean = float(top_probabilities(counts.probabilities, counts.classes).mean()) if len(counts.classes) else None
    return Confidence(CONFIDENCE_BUCKETS, tuple(counts.confidence_counts.tolist()), counts.confidence_sum, mean)


def _numeric_labels(edges: np.ndarray) -> tuple[str, ...]:
    if not len(edges):
        return ("all",)
    inner = [f"{low:.4g} to {high:.4g}" for low, high in itertools.pairwise(edges)]
    return (f"≤ {edges[0]:.4g}", *inner, f"> {edges[-1]:.4g}")
