"""The accuracy a model is expected to have, from its training: a mean and an interval. No HTTP.

scripts/train.py writes metadata["reference_accuracy"]: the mean accuracy of repeated stratified
cross-validation on the training split and its 95 % interval (a t-interval with the Nadeau-Bengio corrected
variance). The live accuracy measured on labelled traffic and the estimate before labels are compared with it.
Files without it (older ones, other shapes) are served as before; a malformed entry is ignored with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger("app")

KEY = "reference_accuracy"


class MalformedReferenceAccuracy(ValueError):
    """A model file's reference_accuracy entry cannot be read."""


@dataclass(frozen=True)
class ReferenceAccuracy:
    mean: float
    lower: float  # the interval's bounds, at `level`
    upper: float
    level: float
    folds: int
    repeats: int
    method: str

    def plain(self) -> dict[str, Any]:
        return asdict(self)


def read_reference_accuracy(metadata: Mapping[str, Any] | None, file_name: str) -> ReferenceAccuracy | None:
    """The model's reference accuracy; None when its file has none, or a malformed one (then logged)."""
    entry = (metadata or {}).get(KEY)
    if entry is None:
        return None
    try:
        return parse_reference_accuracy(entry)
    except MalformedReferenceAccuracy as error:
        logger.warning("%s is served without its reference accuracy: %s", file_name, error)
        return None


def parse_reference_accuracy(entry: Any) -> ReferenceAccuracy:
    if not isinstance(entry, dict):
        raise MalformedReferenceAccuracy(f"it is a {type(entry).__name__}, not a dict")
    mean, lower, upper, level = (_share(entry, key) for key in ("mean", "lower", "upper", "level"))
    if not lower <= mean <= upper:
        raise MalformedReferenceAccuracy(f"its interval [{lower}, {upper}] does not hold its mean {mean}")
    folds, repeats = _count(entry, "folds"), _count(entry, "repeats")
    method = entry.get("method")
    if not isinstance(method, str):
        raise MalformedReferenceAccuracy("its method is not a string")
    return ReferenceAccuracy(mean, lower, upper, level, folds, repeats, method)


def _share(entry: dict[str, Any], key: str) -> float:
    value = entry.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (math.isfinite(value) and 0 <= value <= 1):
        raise MalformedReferenceAccuracy(f"its {key} is {value!r}, not a number from 0 to 1")
    return float(value)


def _count(entry: dict[str, Any], key: str) -> int:
    value = entry.get(key)
    if type(value) is not int or value < 1:
        raise MalformedReferenceAccuracy(f"its {key} is {value!r}, not a positive whole number")
    return value
