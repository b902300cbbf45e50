"""What passes between a worker and its capture writer process (app/capture/process.py): frames on a pipe.

A worker hands each captured answer over as one small bytes object, made on the request path while its values
are still in the processor's caches: its fields and its arrays' bytes, in marshal's format (both ends are the
same interpreter, the app's). Everything slower (the confidence, the packed row, the insert) happens in the
writer process, on another core, with an interpreter of its own. A frame is a length and a marshalled
message: a round of answers, a model the writer has not seen yet (pickled, once per version), or a flush; the
writer answers with counts of records it dropped and with each flush's outcome.
"""

from __future__ import annotations

import marshal
import pickle
import struct
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from app import calibration
from app.capture.records import Captured
from app.features import CATEGORICAL, CATEGORIES, FEW_RECORDS, NUMERIC, UNKNOWN, Batch
from app.modelfile import Stamp, Unpacked
from app.predictors import Prediction, build_predictor
from app.reference_accuracy import read_reference_accuracy
from app.registry import LoadedModel

LENGTH = struct.Struct("<Q")
# What a worker sends: its settings, a round of answers, a model, a flush (with its number); what the writer answers.
SETTINGS, ANSWERS, MODEL, FLUSH = "settings", "answers", "model", "flush"
DROPPED, FLUSHED = "dropped", "flushed"


class Handed:
    """A captured answer handed over: its record count, the model that answered (None for a shadow), its bytes."""

    __slots__ = ("loaded", "payload", "records")

    def __init__(self, records: int, loaded: LoadedModel | None, payload: bytes) -> None:
        self.records = records
        self.loaded = loaded
        self.payload = payload

    def __len__(self) -> int:
        return self.records


def hand_over(item: Captured) -> Handed:
    """A captured answer as bytes, on the request path: no conversion but its arrays' bytes."""
    batch, prediction = item.batch, item.prediction
    probabilities = prediction.probabilities
    payload = marshal.dumps((
        item.request_id, item.client_id, item.at, item.model, item.version, item.shadow, prediction.classes,
        _words_or_codes(batch), batch.numeric.tobytes(), prediction.indices.astype(np.int64, copy=False).tobytes(),
        None if probabilities is None else probabilities.tobytes(),
    ))  # fmt: skip
    return Handed(len(batch), item.loaded, payload)


def _words_or_codes(batch: Batch) -> tuple[bool, tuple[Any, ...]]:
    """A few records' words as they are; a big batch's codes (found when its request was checked), as bytes."""
    words = batch.categorical
    if len(batch) <= FEW_RECORDS:
        return False, (words["island"], words["sex"])  # CATEGORICAL's order, without a loop on the request path
    codes = [batch.codes[name] for name in CATEGORICAL]
    if any(bool((column == UNKNOWN).any()) for column in codes):  # refused by validation: kept as sent anyway
        return False, tuple(words[name] for name in CATEGORICAL)
    return True, tuple(column.tobytes() for column in codes)


def taken_back(payload: bytes, models: dict[tuple[str, str], LoadedModel]) -> Captured:
    """A handed-over answer as the writer captures it, with its model when the writer has been sent it."""
    (request_id, client_id, at, model, version, shadow, classes, (coded, categorical), numeric, indices,
     probabilities) = marshal.loads(payload)  # fmt: skip
    if coded:
        codes = {name: np.frombuffer(blob, np.uint8) for name, blob in zip(CATEGORICAL, categorical, strict=True)}
        words = {name: np.asarray(CATEGORIES[name], dtype=object)[codes[name]].tolist() for name in CATEGORICAL}
        batch = Batch(words, np.frombuffer(numeric).reshape(-1, len(NUMERIC)), codes)
    else:
        batch = Batch(
            dict(zip(CATEGORICAL, map(list, categorical), strict=True)),
            np.frombuffer(numeric).reshape(-1, len(NUMERIC)),
        )
    found = np.frombuffer(indices, np.int64)
    chances = None if probabilities is None else np.frombuffer(probabilities).reshape(len(found), -1)
    prediction = Prediction(tuple(classes), found, chances)
    loaded = None if shadow else models.get((model, version))
    return Captured(request_id, client_id, at, model, version, batch, prediction, shadow, loaded)


def model_message(model: LoadedModel) -> bytes:
    """A model as its worker loaded it, for the writer to calibrate its answers: its file's content, unpickled
    and pickled again (what the worker built from it holds functions of its own, which pickle cannot take)."""
    unpacked = pickle.dumps(model.unpacked, protocol=pickle.HIGHEST_PROTOCOL)
    return message(MODEL, model.name, tuple(model.stamp), model.version, unpacked)


def loaded_model(name: str, stamp: tuple[int, int, int], version: str, unpacked: bytes) -> LoadedModel:
    """The model a worker sent, built as its worker built it, less the timings only a worker needs."""
    content: Unpacked = pickle.loads(unpacked)
    predictor = build_predictor(content)
    return LoadedModel(
        name, Stamp(*stamp), predictor, content, 0.0, 0.0, version,
        calibrator=calibration.read_calibrator(content, predictor),
        reference_accuracy=read_reference_accuracy(content.metadata, name),
    )  # fmt: skip


def answers_message(items: Sequence[Handed]) -> bytes:
    return message(ANSWERS, [item.payload for item in items])


def message(kind: str, *fields: Any) -> bytes:
    """One frame: the message's length, then the message."""
    body = marshal.dumps((kind, *fields))
    return LENGTH.pack(len(body)) + body


def read_message(stream: IO[bytes]) -> tuple[Any, ...] | None:
    """The next message on the stream, None at its end (the other side has closed it, or died)."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return None
    found: tuple[Any, ...] = marshal.loads(body)
    return found
