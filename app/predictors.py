"""Turn an unpickled model file into a Predictor: records in, species and probabilities out.

Three file shapes are served: the project's bundle {"model", "label_encoder", "metadata"};
a bare fitted estimator or pipeline taking the six raw columns; and the seed notebook's
bundle {"model", "label_encoder"} whose model was fitted on pd.get_dummies(drop_first=True)
columns. Where the preprocessing can be compiled exactly into numpy (checked at load time on
a probe set), requests skip pandas and the ColumnTransformer: they cost ten times the model.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from app.schemas import ISLANDS, SEXES, ModelFormat, PenguinRecord
from app.twins import compile_twin

CATEGORICAL = ("island", "sex")
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
FEATURES = ("island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex")


class NotAModel(ValueError):
    """The file unpickled fine but holds nothing the API can predict with."""


@dataclass(frozen=True)
class Batch:
    """Validated records as columns: the categorical values, and the measurements as one float matrix."""

    categorical: dict[str, list[str]]
    numeric: np.ndarray  # (n, 4) float64, columns in NUMERIC order

    @classmethod
    def from_records(cls, records: Sequence[PenguinRecord]) -> Batch:
        numeric = np.array(
            [(r["bill_length_mm"], r["bill_depth_mm"], r["flipper_length_mm"], r["body_mass_g"]) for r in records],
            dtype=np.float64,
        )
        return cls({"island": [r["island"] for r in records], "sex": [r["sex"] for r in records]}, numeric)

    def __len__(self) -> int:
        return len(self.numeric)

    def head(self, count: int) -> Batch:
        return Batch({key: values[:count] for key, values in self.categorical.items()}, self.numeric[:count])

    def frame(self, columns: Sequence[str] = FEATURES) -> pd.DataFrame:
        values = {**self.categorical, **{name: self.numeric[:, i] for i, name in enumerate(NUMERIC)}}
        return pd.DataFrame({name: values[name] for name in columns})


# Writes one block of encoded columns into the output matrix, which starts as zeros.
Op = Callable[[Batch, np.ndarray], None]


def one_hot(column: str, categories: Sequence[Any], start: int) -> Op:
    index = {category: start + i for i, category in enumerate(categories)}

    def write(batch: Batch, out: np.ndarray) -> None:
        # An unknown value sets no column: OneHotEncoder(handle_unknown="ignore") does the same.
        for row, value in enumerate(batch.categorical[column]):
            position = index.get(value)
            if position is not None:
                out[row, position] = 1.0

    return write


def numeric(columns: Sequence[str], start: int, mean: np.ndarray | None, scale: np.ndarray | None) -> Op:
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
        return [numeric(columns, start, step.mean_, step.scale_)], start + len(columns)
    if _is_identity(step) and set(columns) <= set(NUMERIC):
        return [numeric(columns, start, None, None)], start + len(columns)
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
            ops.append(numeric([column], position, None, None))
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


@dataclass(frozen=True)
class Predictor:
    estimator: Any  # what receives the encoded records: the final step, or the whole model
    encode: Callable[[Batch], Any]
    classes: tuple[str, ...]  # names, in the order of estimator.classes_
    has_probabilities: bool
    fast_path: bool
    input_columns: tuple[str, ...]

    def predict(self, batch: Batch) -> dict[str, Any]:
        encoded = self.encode(batch)
        if self.has_probabilities:
            # One pass: the prediction is the most probable class of the same result.
            probabilities = self.estimator.predict_proba(encoded)
            names = np.asarray(self.classes, dtype=object)
            return self._answer(names[probabilities.argmax(axis=1)].tolist(), probabilities)
        labels = self.estimator.predict(encoded)
        names_by_label = dict(zip(self.estimator.classes_.tolist(), self.classes, strict=True))
        return self._answer([names_by_label[label] for label in labels.tolist()], None)

    def _answer(self, predictions: list[str], probabilities: np.ndarray | None) -> dict[str, Any]:
        rows = (
            None
            if probabilities is None
            else [dict(zip(self.classes, row, strict=True)) for row in probabilities.tolist()]
        )
        return {"predictions": predictions, "probabilities": rows, "classes": list(self.classes)}


@dataclass(frozen=True)
class Unpacked:
    model: Any
    label_encoder: Any | None
    metadata: dict[str, Any] | None
    format: ModelFormat


def unpack(content: Any) -> Unpacked:
    if isinstance(content, dict):
        if "model" not in content:
            raise NotAModel(f"it holds a dict with keys {sorted(map(str, content))[:6]}, not a 'model' bundle")
        metadata = content.get("metadata")
        return Unpacked(
            content["model"],
            content.get("label_encoder"),
            metadata if isinstance(metadata, dict) else None,
            "bundle" if isinstance(metadata, dict) else "legacy_bundle",
        )
    return Unpacked(content, None, None, "estimator")


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
