"""What is captured: a predicted batch as the request path leaves it, and its rows as the writer stores them.

The request path only keeps references (Captured); turning a batch into one row per record happens in the
writer's thread, column by column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import pydantic_core

from app.features import CATEGORICAL, FEATURES, NUMERIC, Batch
from app.predictors import Prediction

# What a label may say: the data set's species (tests/test_app_capture.py checks data/penguins.csv).
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


def rows(batches: Sequence[Captured]) -> list[tuple[Any, ...]]:
    """The batches as stored rows, in COLUMNS order: each column built for all of them at once, then zipped."""
    counts = [len(item.batch) for item in batches]

    def spread(values: Iterable[Any]) -> Iterable[Any]:
        return chain.from_iterable(map(repeat, values, counts))

    numeric = dict(zip(NUMERIC, np.concatenate([item.batch.numeric for item in batches]).T.tolist(), strict=True))
    categorical = {name: [value for item in batches for value in item.batch.categorical[name]] for name in CATEGORICAL}
    features = [categorical[name] if name in CATEGORICAL else numeric[name] for name in FEATURE_COLUMNS]
    return list(
        zip(
            spread(item.request_id for item in batches),
            spread(item.client_id for item in batches),
            chain.from_iterable(map(range, counts)),
            spread(item.at for item in batches),
            spread(item.model for item in batches),
            spread(item.version for item in batches),
            chain.from_iterable(_labels(item.prediction) for item in batches),
            chain.from_iterable(map(_probabilities, (item.prediction for item in batches), counts)),
            spread(item.shadow for item in batches),
            *features,
            strict=False,
        )
    )


def _labels(prediction: Prediction) -> list[str]:
    classes = prediction.classes
    return [classes[index] for index in prediction.indices.tolist()]


def _probabilities(prediction: Prediction, count: int) -> Iterable[str | None]:
    if prediction.probabilities is None:
        return repeat(None, count)
    return [pydantic_core.to_json(row).decode() for row in prediction.probabilities.tolist()]
