"""What is captured: a predicted batch as the request path leaves it, and its rows as the writer stores them.

The request path only keeps references (Captured); turning a batch into one row per record happens in the
writer's thread, column by column, and so does each record's calibrated confidence (app/calibration.py), once for
all the batches one model answered: for the SVC one more pass of them through the estimator, which a request
never waits for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from typing import Any

import numpy as np
import pydantic_core

from app import calibration
from app.features import CATEGORICAL, FEATURES, NUMERIC, Batch
from app.predictors import Prediction
from app.registry import LoadedModel

# What a label may say: the data set's species (tests/test_app_capture.py checks data/penguins.csv).
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
# The six features, as columns of the store and of an export.
FEATURE_COLUMNS = FEATURES
# The order of a stored row (store.predictions' columns; id is the store's to fill).
COLUMNS = (
    "request_id", "client_id", "batch_row", "at", "model", "version", "predicted", "probabilities", "confidence",
    "shadow", *FEATURE_COLUMNS,
)  # fmt: skip
logger = logging.getLogger("app")


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
    # The model that answered: its calibrator and reference accuracy, read by the writer, not on the request path.
    loaded: LoadedModel | None = None

    def __len__(self) -> int:
        return len(self.batch)


@dataclass(frozen=True)
class Reference:
    """A version's accuracy from training: the mean and its interval's bounds."""

    mean: float
    lower: float
    upper: float

    def values(self) -> tuple[float, float, float]:
        return self.mean, self.lower, self.upper


@dataclass(frozen=True)
class SeenVersion:
    """A model version that answered, with its classes (a confusion matrix's rows and columns)."""

    model: str
    version: str
    classes: tuple[str, ...]
    at: float
    reference: Reference | None = None


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
            confidences(batches),
            spread(item.shadow for item in batches),
            *features,
            strict=False,
        )
    )


def confidences(batches: Sequence[Captured]) -> list[float | None]:
    """Each record's calibrated probability of being right, in order; None for a shadow answer or without a calibrator.

    One estimate per loaded model for all the batches it answered: a few hundred one-record batches cost one
    calibration, and for the SVC one pass through its decision function, not one each.
    """
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(batches):
        if not item.shadow and item.loaded is not None:
            groups.setdefault(id(item.loaded), []).append(index)
    starts = list(accumulate((len(item.batch) for item in batches), initial=0))
    values: list[float | None] = [None] * starts[-1]
    for indices in groups.values():
        estimate = _estimate([batches[index] for index in indices])
        taken = 0
        for index in indices:
            count = starts[index + 1] - starts[index]
            values[starts[index] : starts[index + 1]] = estimate[taken : taken + count]
            taken += count
    return values


def _estimate(group: Sequence[Captured]) -> list[float | None]:
    """The confidences of batches answered by one loaded model, from one call of calibration.confidence."""
    model = group[0].loaded
    count = sum(len(item.batch) for item in group)
    if model is None or not isinstance(model.calibrator, calibration.Calibrator):
        return [None] * count
    batch, prediction = (group[0].batch, group[0].prediction) if len(group) == 1 else _joined(group)
    try:
        estimate = calibration.confidence(model, batch, prediction)
    except Exception as error:  # the estimate must never cost the capture: the rows are kept without it
        logger.warning(
            "no confidence for %d batches of %s: %s: %s", len(group), model.name, type(error).__name__, error
        )
        return [None] * count
    return [None] * count if estimate is None else estimate.tolist()


def _joined(group: Sequence[Captured]) -> tuple[Batch, Prediction]:
    """The batches one model answered as one batch, and its answers as one prediction."""
    categorical = {
        name: list(chain.from_iterable(item.batch.categorical[name] for item in group)) for name in CATEGORICAL
    }
    batch = Batch(categorical, np.concatenate([item.batch.numeric for item in group]))
    known = [probabilities for item in group if (probabilities := item.prediction.probabilities) is not None]
    indices = np.concatenate([item.prediction.indices for item in group])
    joined = np.concatenate(known) if len(known) == len(group) else None
    return batch, Prediction(group[0].prediction.classes, indices, joined)


def _labels(prediction: Prediction) -> list[str]:
    classes = prediction.classes
    return [classes[index] for index in prediction.indices.tolist()]


def _probabilities(prediction: Prediction, count: int) -> Iterable[str | None]:
    if prediction.probabilities is None:
        return repeat(None, count)
    if not count:
        return []
    # One serializer call for the whole matrix, cut between its rows (a number holds no bracket): each row's
    # text is the one pydantic_core.to_json(row) would write.
    text = pydantic_core.to_json(prediction.probabilities.tolist()).decode()
    return text[1:-1].replace("],[", "]\n[").split("\n")
