"""Input encoders: records to the matrix a fitted model takes, in numpy, without pandas.

Where a model's preprocessing can be compiled exactly (train.py's ColumnTransformer, or the original
service's pd.get_dummies columns), requests skip pandas and the ColumnTransformer, which cost ten times
the model. The predictor checks each compiled encoder against the real preprocessing on probe_batch().
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from app.features import CATEGORICAL, CATEGORIES, FEW_RECORDS, ISLANDS, NUMERIC, SEXES, UNKNOWN, Batch
from app.modelfile import NotAModel

# Writes one block of encoded columns into the output matrix, which starts as zeros.
Op = Callable[[Batch, np.ndarray], None]


def one_hot(column: str, categories: Sequence[Any], start: int) -> Op:
    index = {category: start + i for i, category in enumerate(categories)}
    # The output column of each of the batch's codes (features.category_codes), -1 for none: a gather replaces the
    # lookup of every value, when the model knows no category beyond the contract's (else the codes could not say).
    table = np.full(UNKNOWN + 1, -1, dtype=np.intp)
    for code, category in enumerate(CATEGORIES[column]):
        table[code] = index.get(category, -1)
    by_code = set(index) <= set(CATEGORIES[column])

    def write(batch: Batch, out: np.ndarray) -> None:
        values = batch.categorical[column]
        if len(values) <= FEW_RECORDS:
            for row, value in enumerate(values):
                position = index.get(value)
                if position is not None:
                    out[row, position] = 1.0
            return
        if by_code:
            positions = table[batch.codes[column]]
        else:
            # One C-level pass over the values (map calls index.get(value, -1)).
            positions = np.fromiter(map(index.get, values, itertools.repeat(-1)), dtype=np.intp, count=len(values))
        # An unknown value (-1) sets no column: OneHotEncoder(handle_unknown="ignore") does the same.
        rows = np.flatnonzero(positions >= 0)
        out[rows, positions[rows]] = 1.0

    return write


def scaled_columns(columns: Sequence[str], start: int, mean: np.ndarray | None, scale: np.ndarray | None) -> Op:
    positions = [NUMERIC.index(column) for column in columns]
    stop = start + len(positions)

    def write(batch: Batch, out: np.ndarray) -> None:
        block = batch.numeric[:, positions]  # fancy indexing copies: safe to scale in place
        # The same two in-place float64 operations as StandardScaler.transform: bit-identical output.
        if mean is not None:
            block -= mean
        if scale is not None:
            block /= scale
        out[:, start:stop] = block

    return write


@dataclass(frozen=True)
class FastEncoder:
    ops: tuple[Op, ...]
    width: int
    columns: tuple[str, ...] | None = None  # set: the estimator was fitted on a named DataFrame

    def __call__(self, batch: Batch) -> Any:
        out = np.zeros((len(batch), self.width))
        for op in self.ops:
            op(batch, out)
        return out if self.columns is None else pd.DataFrame(out, columns=list(self.columns), copy=False)


def compile_column_transformer(transformer: ColumnTransformer) -> FastEncoder | None:
    """A numpy twin of a fitted ColumnTransformer made of the steps train.py uses, else None."""
    ops: list[Op] = []
    width = 0
    for _, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        if not all(isinstance(column, str) for column in columns):
            return None
        compiled = _compile_step(step, list(columns), width)
        if compiled is None:
            return None
        ops.extend(compiled[0])
        width = compiled[1]
    return FastEncoder(tuple(ops), width)


def _compile_step(step: Any, columns: list[str], start: int) -> tuple[list[Op], int] | None:
    if isinstance(step, OneHotEncoder) and set(columns) <= set(CATEGORICAL):
        if step.handle_unknown != "ignore" or step.drop is not None or getattr(step, "_infrequent_enabled", False):
            return None
        ops = []
        for column, categories in zip(columns, step.categories_, strict=True):
            ops.append(one_hot(column, list(categories), start))
            start += len(categories)
        return ops, start
    if type(step) is StandardScaler and set(columns) <= set(NUMERIC):
        return [scaled_columns(columns, start, step.mean_, step.scale_)], start + len(columns)
    if _is_identity(step) and set(columns) <= set(NUMERIC):
        return [scaled_columns(columns, start, None, None)], start + len(columns)
    return None


def _is_identity(step: Any) -> bool:
    # A fitted ColumnTransformer stores "passthrough" as a FunctionTransformer without a function.
    if isinstance(step, str):
        return step == "passthrough"
    return type(step) is FunctionTransformer and step.func is None


def compile_dummies(columns: Sequence[str]) -> FastEncoder:
    """Encode to exactly the named pd.get_dummies columns (island_Dream, sex_Male, bill_length_mm...)."""
    ops: list[Op] = []
    for position, column in enumerate(columns):
        if column in NUMERIC:
            ops.append(scaled_columns([column], position, None, None))
            continue
        feature, _, value = column.partition("_")
        if feature not in CATEGORICAL or not value:
            raise NotAModel(f"it takes a column {column!r} that cannot be built from a penguin record")
        ops.append(one_hot(feature, [value], position))
    return FastEncoder(tuple(ops), len(columns), tuple(columns))


def probe_batch() -> Batch:
    """Every island and sex with a spread of measurements: enough to tell a wrong encoder apart."""
    measurements = [
        (39.1, 18.7, 181.0, 3750.0),
        (46.5, 17.9, 192.0, 3500.0),
        (50.0, 15.2, 218.0, 5700.0),
        (0.5, 3.25, 1e4, 1.0),
    ]
    rows = list(itertools.product(ISLANDS, SEXES, measurements))
    return Batch(
        {"island": [row[0] for row in rows], "sex": [row[1] for row in rows]},
        np.array([row[2] for row in rows], dtype=np.float64),
    )
