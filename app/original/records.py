"""The original API's records read as columns: a quicker way to the same Batch, which pydantic keeps the last word on.

Validating a big body record by record with pydantic builds a dict and calls a validator for each record, and
costs more than the prediction. Here the body is parsed once by pydantic-core's JSON parser, the records are
turned into columns by operations that run in C (itemgetter, zip, type), and the core's Batch checks the columns
as it does any dialect's. Only a body that is plainly valid is taken: anything else (a missing field, a string for a
number, an unknown island, a measurement out of range) is left to pydantic's validation, so that every answer and
every error message stay what the schema says.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import InvalidInput
from app.features import CATEGORICAL, FEATURES, NUMERIC, Batch

# A record's six values, in FEATURES order, fetched in C; KeyError when one is missing.
VALUES = operator.itemgetter(*FEATURES)
# What the schema's strict measurements take from JSON: numbers, never booleans or strings.
NUMBER_TYPES = frozenset({int, float})


def read_columns(records: Any, max_records: int) -> Batch | None:
    """The records as a Batch when every one is plainly valid; None when pydantic must decide."""
    if type(records) is not list or not 0 < len(records) <= max_records:
        return None
    try:
        columns = dict(zip(FEATURES, zip(*map(VALUES, records), strict=True), strict=True))
    except (KeyError, TypeError):
        return None  # a record that is not an object, or lacks a field
    numeric = {name: columns[name] for name in NUMERIC}
    if not all(NUMBER_TYPES.issuperset(map(type, values)) for values in numeric.values()):
        return None
    categorical: Mapping[str, Sequence[str]] = {name: columns[name] for name in CATEGORICAL}
    try:
        return Batch.from_columns(categorical, numeric)
    except (InvalidInput, TypeError, OverflowError):
        return None  # a value the Batch refuses, an unhashable word, an integer beyond any float
