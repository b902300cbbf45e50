"""What is captured: a predicted batch as the request path leaves it, and its rows as the writer stores them.

The request path only keeps references (Captured); turning a batch into one row per record happens in the
writer's thread, column by column.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

import pydantic_core

from app.features import FEATURES, NUMERIC, Batch
from app.predictors import Prediction

# What a label may say: the data set's species (tests/test_app_capture_records.py checks data/penguins.csv).
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
# The six features, as columns of the store and of an export.
FEATURE_COLUMNS = FEATURES
# The order of a stored row (store.predictions' columns; id and confidence are the store's to fill).
COLUMNS = (
    "request_id", "client_id", "batch_row", "at", "model", "version", "predicted", "probabilities", "shadow",
    *FEATURE_COLUMNS,
)  # fmt: skip


# Not frozen: built on the request path, where a frozen dataclass's __init__ costs several times more.
@dataclass(slots=True)
class Captured:
    """One model's answer to one request: references only, nothing converted."""

    request_id: str
    client_id: str | None  # a V2 request's own id, when it sent one
    at: float  # seconds since the epoch
    model: str  # the file's stem
    version: str
    batch: Batch
    prediction: Prediction
    shadow: bool = False

    def __len__(self) -> int:
        return len(self.batch)


@dataclass(frozen=True)
class SeenVersion:
    """A model version that answered, with its classes (a confusion matrix's rows and columns)."""

    model: str
    version: str
    classes: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class Label:
    """The true class of one captured record, found by its request's ID and its position in the batch."""

    request_id: str
    row: int
    label: str


def rows(captured: Captured) -> list[tuple[Any, ...]]:
    """The batch as stored rows, in COLUMNS order, built column by column."""
    batch, prediction = captured.batch, captured.prediction
    count = len(batch)
    probabilities = prediction.probabilities
    shown = (
        repeat(None, count)
        if probabilities is None
        else [pydantic_core.to_json(row).decode() for row in probabilities.tolist()]
    )
    numeric = dict(zip(NUMERIC, batch.numeric.T.tolist(), strict=True))
    features = [batch.categorical[name] if name in batch.categorical else numeric[name] for name in FEATURE_COLUMNS]
    return list(
        zip(
            repeat(captured.request_id, count),
            repeat(captured.client_id, count),
            range(count),
            repeat(captured.at, count),
            repeat(captured.model, count),
            repeat(captured.version, count),
            prediction.labels(),
            shown,
            repeat(captured.shadow, count),
            *features,
            strict=False,
        )
    )
