"""A loaded model as a Predictor: a batch of records in, the predicted class and probabilities out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from app.encoders import FastEncoder, compile_column_transformer, compile_dummies, probe_batch
from app.features import FEATURES, FEW_RECORDS, Batch
from app.modelfile import NotAModel, Unpacked
from app.twins import compile_twin


@dataclass(frozen=True)
class Prediction:
    """What a model says of a batch, in no protocol's shape: each front-end writes its own."""

    classes: tuple[str, ...]
    indices: np.ndarray  # (n,) the position in classes of each record's predicted class
    probabilities: np.ndarray | None  # (n, len(classes)) float64, None for a model without them

    def labels(self) -> list[str]:
        if len(self.indices) <= FEW_RECORDS:  # a lookup each costs less than starting numpy
            return [self.classes[index] for index in self.indices.tolist()]
        names: list[str] = np.asarray(self.classes, dtype=object)[self.indices].tolist()
        return names

    @classmethod
    def joined(cls, predictions: Sequence[Prediction]) -> Prediction:
        """One model's answers to several batches as one (probabilities only when every answer has them)."""
        if len(predictions) == 1:
            return predictions[0]
        known = [found for prediction in predictions if (found := prediction.probabilities) is not None]
        indices = np.concatenate([prediction.indices for prediction in predictions])
        probabilities = np.concatenate(known) if len(known) == len(predictions) else None
        return cls(predictions[0].classes, indices, probabilities)

    def part(self, start: int, stop: int) -> Prediction:
        """The answers to records start to stop (a joined prediction cut back into its batches)."""
        probabilities = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.classes, self.indices[start:stop], probabilities)


@dataclass(frozen=True)
class Predictor:
    estimator: Any  # what receives the encoded records: the final step, or the whole model
    encode: Callable[[Batch], Any]
    classes: tuple[str, ...]  # names, in the order of estimator.classes_
    has_probabilities: bool
    fast_path: bool
    input_columns: tuple[str, ...]

    def predict(self, batch: Batch) -> Prediction:
        encoded = self.encode(batch)
        if self.has_probabilities:
            # One pass: the prediction is the most probable class of the same result.
            probabilities = self.estimator.predict_proba(encoded)
            return Prediction(self.classes, probabilities.argmax(axis=1), probabilities)
        # classes_ is sorted (scikit-learn classifiers build it with np.unique), so a label's index is a search.
        indices = np.searchsorted(self.estimator.classes_, self.estimator.predict(encoded))
        return Prediction(self.classes, indices, None)


def build_predictor(unpacked: Unpacked) -> Predictor:
    model = unpacked.model
    if not callable(getattr(model, "predict", None)):
        raise NotAModel(f"it holds a {type(model).__name__}, not a fitted model")
    if getattr(model, "classes_", None) is None:
        raise NotAModel(f"its {type(model).__name__} is not a fitted classifier (no classes_)")
    columns = _input_columns(model)
    classes = _class_names(model.classes_, unpacked.label_encoder)
    if set(columns) == set(FEATURES):
        return _raw_predictor(model, columns, classes)
    encoder = compile_dummies(columns)
    return Predictor(_fastest(model, encoder), encoder, classes, _has_probabilities(model), True, columns)


def _input_columns(model: Any) -> tuple[str, ...]:
    names = getattr(model, "feature_names_in_", None)
    if names is None and isinstance(model, Pipeline):
        names = getattr(model[0], "feature_names_in_", None)
    if names is None:
        raise NotAModel("its model was fitted without column names, so the columns it takes are unknown")
    return tuple(str(name) for name in names)


def _class_names(labels: np.ndarray, label_encoder: Any | None) -> tuple[str, ...]:
    if label_encoder is not None:
        labels = label_encoder.inverse_transform(labels)
    return tuple(str(label) for label in labels)


def _has_probabilities(estimator: Any) -> bool:
    # SVC(probability=False) hides predict_proba: hasattr is False, so predict is used instead.
    return hasattr(estimator, "predict_proba")


def _raw_predictor(model: Any, columns: tuple[str, ...], classes: tuple[str, ...]) -> Predictor:
    encoder = _verified_encoder(model)
    if encoder is None:

        def as_frame(batch: Batch) -> pd.DataFrame:
            return batch.frame(columns)

        return Predictor(model, as_frame, classes, _has_probabilities(model), False, columns)
    return Predictor(_fastest(model[-1], encoder), encoder, classes, _has_probabilities(model[-1]), True, columns)


def _fastest(estimator: Any, encoder: FastEncoder) -> Any:
    """The estimator's exact numpy twin (app/twins.py) where one applies, else the estimator itself."""
    return compile_twin(estimator, encoder(probe_batch())) or estimator


def _verified_encoder(model: Any) -> FastEncoder | None:
    """The compiled encoder, only when it reproduces the pipeline's own preprocessing exactly."""
    if not isinstance(model, Pipeline) or len(model) != 2 or not isinstance(model[0], ColumnTransformer):
        return None
    encoder = compile_column_transformer(model[0])
    if encoder is None:
        return None
    probe = probe_batch()
    expected = model[:-1].transform(probe.frame(_input_columns(model)))
    fast = encoder(probe)
    if not isinstance(expected, np.ndarray) or expected.dtype != fast.dtype or not np.array_equal(expected, fast):
        return None
    return encoder


def measure(predictor: Predictor, batch: Batch, repeats: int = 5) -> float:
    """Best-of-n seconds for one predict: the registry's estimate of what a request would cost."""
    predictor.predict(batch)  # the first call pays for lazy imports and caches
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict(batch)
        best = min(best, time.perf_counter() - started)
    return best
