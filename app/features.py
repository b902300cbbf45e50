"""The serving side of the training/serving contract: the six features, their values, and a batch of them.

scripts/penguins.py states the same contract for training; tests/test_contract.py checks the two agree.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from app.errors import InvalidInput

Island = Literal["Biscoe", "Dream", "Torgersen"]
Sex = Literal["Male", "Female"]
ISLANDS: tuple[str, ...] = get_args(Island)
SEXES: tuple[str, ...] = get_args(Sex)
CATEGORIES: dict[str, tuple[str, ...]] = {"island": ISLANDS, "sex": SEXES}
CATEGORY_SETS = {name: frozenset(values) for name, values in CATEGORIES.items()}
# A categorical value's code: its position in CATEGORIES[name]; UNKNOWN for any other word.
CATEGORY_INDEX = {name: {value: code for code, value in enumerate(values)} for name, values in CATEGORIES.items()}
UNKNOWN = 255
CATEGORICAL = ("island", "sex")
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
FEATURES = ("island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex")
FEATURE_SET = frozenset(FEATURES)
# The original service's request example: the first penguin of the data set.
EXAMPLE_RECORD: dict[str, Any] = {
    "island": "Torgersen",
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "sex": "Male",
}
# Up to this many records a plain loop beats numpy's fixed cost per call.
FEW_RECORDS = 16
# The largest float32: tree models compute in float32, where anything larger is infinite.
FLOAT32_MAX = 3.4028234663852886e38


def canonical_sex(value: Any) -> Any:
    # The raw data writes MALE, seaborn writes Male: accept any case, answer in one.
    return value.capitalize() if isinstance(value, str) and value.lower() in ("male", "female") else value


@dataclass(frozen=True)
class Batch:
    """Valid records as columns: the categorical values, and the measurements as one float matrix."""

    categorical: dict[str, list[str]]
    numeric: np.ndarray  # (n, 4) float64, columns in NUMERIC order
    # The categorical columns as codes, when whoever made the batch found them already (see `codes`).
    known_codes: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def codes(self) -> dict[str, np.ndarray]:
        """Each categorical column as uint8 codes (category_codes), found once for the encoder and the monitor."""
        if self.known_codes is not None:
            return self.known_codes
        return {name: category_codes(name, values) for name, values in self.categorical.items()}

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Batch:
        """Records already validated (the original API's schema did it)."""
        numeric = np.array(
            [(r["bill_length_mm"], r["bill_depth_mm"], r["flipper_length_mm"], r["body_mass_g"]) for r in records],
            dtype=np.float64,
        )
        return cls({"island": [r["island"] for r in records], "sex": [r["sex"] for r in records]}, numeric)

    @classmethod
    def from_columns(
        cls,
        categorical: Mapping[str, Sequence[str]],
        numeric: Mapping[str, np.ndarray | Sequence[float]],
        known: Mapping[str, np.ndarray] | None = None,
    ) -> Batch:
        """Columns from any protocol, checked here: one value per record, known categories, sane measurements.

        known: word columns whose codes the caller found, every value a category: taken as they are.
        """
        columns = {**categorical, **numeric}
        if columns.keys() != FEATURE_SET:
            missing = sorted(FEATURE_SET - columns.keys())
            raise InvalidInput(f"Every feature is needed as a column; missing: {', '.join(missing)}.")
        count = len(columns["island"])
        if any(len(values) != count for values in columns.values()):
            lengths = {name: len(values) for name, values in columns.items()}
            raise InvalidInput(f"Every column must have one value per record; got lengths {lengths}.")
        if not count:
            raise InvalidInput("The columns hold no record; send at least one.")
        known = known or {}
        checked = {
            name: (_listed(categorical[name]), known[name])
            if name in known
            else _checked_category(name, categorical[name])
            for name in CATEGORICAL
        }
        try:
            # One conversion for the four columns; transposed, each stays contiguous.
            measurements = np.array([numeric[name] for name in NUMERIC], dtype=np.float64).T
        except (TypeError, ValueError):
            raise InvalidInput("Every measurement column must be one number per record.") from None
        words = {name: words for name, (words, _) in checked.items()}
        codes = {name: codes for name, (_, codes) in checked.items() if codes is not None}
        return cls(words, _checked_measurements(measurements), codes if len(codes) == len(checked) else None)

    def __len__(self) -> int:
        return len(self.numeric)

    @classmethod
    def joined(cls, batches: Sequence[Batch]) -> Batch:
        """Several batches as one, end to end in their order (a writer or a shadow predicting them at once)."""
        if len(batches) == 1:
            return batches[0]
        categorical = {name: [value for batch in batches for value in batch.categorical[name]] for name in CATEGORICAL}
        return cls(categorical, np.concatenate([batch.numeric for batch in batches]))

    def head(self, count: int) -> Batch:
        return Batch({key: values[:count] for key, values in self.categorical.items()}, self.numeric[:count])

    def joint_codes(self, start: int = 0) -> np.ndarray:
        """One code per record from `start` on for its island and sex together: island code * len(SEXES) + sex code."""
        codes = self.codes
        joint: np.ndarray = codes["island"][start:] * np.uint8(len(SEXES)) + codes["sex"][start:]
        return joint

    def frame(self, columns: Sequence[str] = FEATURES) -> pd.DataFrame:
        values = {**self.categorical, **{name: self.numeric[:, i] for i, name in enumerate(NUMERIC)}}
        return pd.DataFrame({name: values[name] for name in columns})


def category_codes(name: str, values: Sequence[str]) -> np.ndarray:
    """Each value's position in CATEGORIES[name], UNKNOWN for another word: one pass in C (map calls dict.get)."""
    index = CATEGORY_INDEX[name]
    return np.fromiter(map(index.get, values, itertools.repeat(UNKNOWN)), dtype=np.uint8, count=len(values))


def _checked_category(name: str, values: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
    """The column, every value known (sex in any case); with its codes beyond a few records, found on the way."""
    codes = None
    if len(values) > FEW_RECORDS:
        codes = category_codes(name, values)
        known = not (codes == UNKNOWN).any()
    else:
        known = CATEGORY_SETS[name].issuperset(values)
    if not known and name == "sex":
        values = [canonical_sex(value) for value in values]
        codes = None if codes is None else category_codes(name, values)
        known = CATEGORY_SETS[name].issuperset(values)
    if not known:
        allowed = CATEGORY_SETS[name]
        shown = ", ".join(repr(value) for value in sorted(map(str, set(values).difference(allowed)))[:3])
        raise InvalidInput(f"Column {name!r} holds {shown}; expected one of {', '.join(CATEGORIES[name])}.")
    return _listed(values), codes


def _listed(values: Sequence[str]) -> list[str]:
    return values if type(values) is list else list(values)


def _checked_measurements(measurements: np.ndarray) -> np.ndarray:
    """The (n, 4) matrix, checked at once; the first bad value, column by column, is named."""
    if len(measurements) <= FEW_RECORDS:
        # Starting two numpy reductions costs more than comparing a few values one by one.
        good = all(0.0 < value < FLOAT32_MAX for value in measurements.ravel("K").tolist())
    else:
        # Two reductions, no temporaries: a NaN carries through min and max and fails both comparisons.
        good = measurements.min() > 0 and measurements.max() < FLOAT32_MAX
    if not good:
        bad = ~((measurements > 0) & (measurements < FLOAT32_MAX))
        column = int(bad.any(axis=0).argmax())
        record = int(bad[:, column].argmax())
        raise InvalidInput(
            f"Column {NUMERIC[column]!r} holds {float(measurements[record, column])!r} at record {record}; "
            f"a measurement is a finite number above 0 and below {FLOAT32_MAX:.4g}."
        )
    return measurements
