"""What is captured: a predicted batch as the request path leaves it, and the row the writer stores it as.

The request path hands each answer over as bytes (handover.py) to its worker's writer process, which takes it
back as a Captured; turning a batch into its one stored row happens in the writer's thread there, and so does
each record's calibrated confidence (app/calibration.py), once for all the batches one model answered: for the
SVC one more pass of them through the estimator, which a request never waits for.
A row holds the batch's per-record values packed, each column as the bytes of a little-endian array (the same
bytes on any machine), the words as their categories' codes, so a batch of any size is a few numpy calls to
store and one row to insert. The packed columns are bytearrays: the sqlite3 driver binds those directly, where
bytes first go through its adapters' lookups, which cost the writer more than the packing itself.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from typing import Any, NamedTuple

import numpy as np
import pydantic_core

from app import calibration
from app.features import CATEGORICAL, CATEGORIES, CATEGORY_INDEX, FEATURES, FEW_RECORDS, NUMERIC, UNKNOWN, Batch
from app.predictors import Prediction
from app.registry import LoadedModel

# What a label may say: the data set's species (tests/test_app_capture.py checks data/penguins.csv).
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
# The six features, as columns of the store and of an export.
FEATURE_COLUMNS = FEATURES
# The order of a stored row (schema.batches' columns; id is the store's to fill).
COLUMNS = (
    "request_id", "client_id", "at", "model", "version", "shadow", "records", "predicted", "probabilities",
    "confidences", "measurements", *CATEGORICAL, "words",
)  # fmt: skip
# The packed columns' element types, little-endian whatever the machine: a class's index, a category's code, a
# probability (seven significant digits: a record of what was answered), and the numbers figures are made of.
INDEX = np.dtype("<u2")
CODE = np.dtype("u1")
PROBABILITY = np.dtype("<f4")
FLOAT = np.dtype("<f8")
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


class Label(NamedTuple):
    """The true class of one captured record, found by its request's ID and its position in the batch.

    A named tuple, not a frozen dataclass: a post holds up to MAX_RECORDS of them, and a tuple is built in a
    tenth of the time.
    """

    request_id: str
    row: int
    label: str


def rows(batches: Sequence[Captured]) -> list[tuple[Any, ...]]:
    """The batches as stored rows, one per batch, in COLUMNS order.

    Each packed column is packed once for all the batches and cut at their bounds: for hundreds of one-record
    batches, a few numpy calls in all rather than a few for each.
    """
    sizes = [len(item.batch) for item in batches]
    ends = list(accumulate(sizes))
    bounds = list(zip([0, *ends[:-1]], ends, strict=True))
    indices = packed_each([item.prediction.indices for item in batches], INDEX, bounds)
    probabilities = packed_each([item.prediction.probabilities for item in batches], PROBABILITY, bounds)
    estimates = packed_confidences(batches, sizes, bounds)
    numbers = packed_each([item.batch.numeric for item in batches], FLOAT, bounds)
    columns = [_codes_each(batches, name, sizes, bounds) for name in CATEGORICAL]
    codes = list(zip(*columns, strict=True))
    # A word no category names is refused by the requests' validation: one look at all the codes is enough.
    sent: list[str | None] = [None] * len(batches)
    if any(UNKNOWN in b"".join(column) for column in columns):
        sent = [sent_words(item.batch.categorical, item_codes) for item, item_codes in zip(batches, codes, strict=True)]
    return [
        (
            item.request_id, item.client_id, item.at, item.model, item.version, item.shadow, size,
            *packed, *item_codes, item_sent,
        )
        for item, size, item_codes, item_sent, *packed
        in zip(batches, sizes, codes, sent, indices, probabilities, estimates, numbers, strict=True)
    ]  # fmt: skip


def packed_each(
    arrays: Sequence[np.ndarray | None], dtype: np.dtype[Any], bounds: Sequence[tuple[int, int]]
) -> Sequence[bytearray | None]:
    """Each array packed as `dtype` (None stays None): packed together and cut when they all have one row shape."""
    joined = _joined(arrays)
    if joined is None:
        return [None if array is None else pack(array, dtype) for array in arrays]
    return _cut(pack(joined, dtype), dtype.itemsize * math.prod(joined.shape[1:]), bounds)


def _joined(arrays: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Several arrays end to end, or None when one is missing, they differ in row shape, or there is only one."""
    present = [array for array in arrays if array is not None]
    if len(arrays) < 2 or len(present) < len(arrays):
        return None
    try:
        return np.concatenate(present)
    except ValueError:  # rows of different shapes: models with different numbers of classes
        return None


def _cut(packed: bytearray, width: int, bounds: Sequence[tuple[int, int]]) -> list[bytearray]:
    """A column packed for several batches, cut back into each batch's part (width: bytes a record)."""
    return [packed[start * width : end * width] for start, end in bounds]


def _codes_each(
    batches: Sequence[Captured], name: str, sizes: Sequence[int], bounds: Sequence[tuple[int, int]]
) -> list[bytearray]:
    """A word column's codes for each batch: of small batches, all in one pass of Python, cut at their bounds."""
    if max(sizes, default=0) > FEW_RECORDS:
        return [_codes(item.batch, name) for item in batches]
    return _cut(_word_codes(name, chain.from_iterable(item.batch.categorical[name] for item in batches)), 1, bounds)


def packed_confidences(
    batches: Sequence[Captured], sizes: Sequence[int], bounds: Sequence[tuple[int, int]]
) -> Sequence[bytearray | None]:
    """Each batch's records' calibrated probabilities of being right, packed; None for a shadow answer or without
    a calibrator.

    One estimate per loaded model for all the batches it answered: a few hundred one-record batches cost one
    calibration, and for the SVC one pass through its decision function, not one each. Each estimate is put in
    place in one column for all the batches, packed once and cut at their bounds.
    """
    first = batches[0].loaded if batches else None
    if first is not None and all(item.loaded is first and not item.shadow for item in batches):
        # The usual round: one model answered every batch, so its estimate is the column as it is.
        estimate = _estimate(batches)
        if estimate is None:
            return [None] * len(batches)
        return _cut(pack(estimate, FLOAT), FLOAT.itemsize, bounds)
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(batches):
        if not item.shadow and item.loaded is not None:
            groups.setdefault(id(item.loaded), []).append(index)
    column = np.zeros(bounds[-1][1] if bounds else 0, dtype=FLOAT)
    rated = [False] * len(batches)
    for indices in groups.values():
        estimate = _estimate([batches[index] for index in indices])
        if estimate is None:
            continue
        # Where each of the group's records goes: its batch's start, plus its place in the batch.
        counts = np.asarray([sizes[index] for index in indices])
        starts = np.asarray([bounds[index][0] for index in indices]) - (np.cumsum(counts) - counts)
        column[np.arange(len(estimate)) + np.repeat(starts, counts)] = estimate
        for index in indices:
            rated[index] = True
    parts = _cut(pack(column, FLOAT), FLOAT.itemsize, bounds)
    return [part if has else None for has, part in zip(rated, parts, strict=True)]


def _estimate(group: Sequence[Captured]) -> np.ndarray | None:
    """The confidences of batches answered by one loaded model, from one call of calibration.confidence."""
    model = group[0].loaded
    if model is None or not isinstance(model.calibrator, calibration.Calibrator):
        return None
    batch = Batch.joined([item.batch for item in group])
    prediction = Prediction.joined([item.prediction for item in group])
    try:
        return calibration.confidence(model, batch, prediction)
    except Exception as error:  # the estimate must never cost the capture: the batches are kept without it
        logger.warning(
            "no confidence for %d batches of %s: %s: %s", len(group), model.name, type(error).__name__, error
        )
        return None


def _codes(batch: Batch, name: str) -> bytearray:
    """A word column's codes: a big batch's own (found when its request was checked), a small one's in Python."""
    values = batch.categorical[name]
    if len(values) <= FEW_RECORDS:
        return _word_codes(name, values)
    return pack(batch.codes[name], CODE)


def _word_codes(name: str, words: Iterable[str]) -> bytearray:
    """Words' codes in Python, a dict lookup each: for a few words, cheaper than starting numpy."""
    return bytearray(map(CATEGORY_INDEX[name].get, words, repeat(UNKNOWN)))


def sent_words(categorical: Mapping[str, Sequence[str]], codes: Sequence[bytes | bytearray]) -> str | None:
    """The word columns as a JSON object, only when a value is no known category (the request's validation
    refuses those, so never yet): a code cannot say it, the words keep it as it was sent."""
    if not any(UNKNOWN in blob for blob in codes):
        return None
    return pydantic_core.to_json({name: categorical[name] for name in CATEGORICAL}).decode()


def words(codes: Sequence[bytes], sent: str | None) -> dict[str, list[str]]:
    """A batch's word columns back: from their codes (CATEGORICAL order), or as sent when it kept them."""
    if sent is not None:
        found: dict[str, list[str]] = json.loads(sent)
        return found
    return {
        name: np.asarray(CATEGORIES[name], dtype=object)[unpack(blob, CODE)].tolist()
        for name, blob in zip(CATEGORICAL, codes, strict=True)
    }


def pack(values: Iterable[Any], dtype: np.dtype[Any]) -> bytearray:
    """An array's values as the bytes of `dtype`, row by row (a NaN stands for a missing number)."""
    return bytearray(np.asarray(values, dtype=dtype))


def unpack(blob: bytes, dtype: np.dtype[Any], width: int = 1) -> np.ndarray:
    """A packed column back as an array: one value per record, or `width` per record as rows."""
    values = np.frombuffer(blob, dtype)
    return values if width == 1 else values.reshape(-1, width)


def measurements(blob: bytes) -> np.ndarray:
    """A batch's measurements, (records, 4) in NUMERIC order."""
    return unpack(blob, FLOAT, len(NUMERIC))
