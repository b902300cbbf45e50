"""A model's reference profile: read from its file's metadata, checked, and written back as plain data."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.features import CATEGORICAL, CATEGORIES, NUMERIC

# Classes are stored in one byte per record.
MAX_CLASSES = 255
# A profile's shares must sum to 1 within this.
SHARE_TOLERANCE = 1e-6


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
