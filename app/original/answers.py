"""The original dialect's answers written: a model's predictions (fast for a big batch) and a model's metadata.

Both keep exactly the fields the original service's clients read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic_core

from app.calibration import Calibrator
from app.features import FEW_RECORDS
from app.modelfile import estimator_name
from app.predictors import Prediction
from app.registry import LoadedModel


def prediction_json(model: LoadedModel, prediction: Prediction) -> bytes:
    """prediction_body as JSON: the same bytes, written without a dict per record for a big batch."""
    probabilities, classes = prediction.probabilities, prediction.classes
    if probabilities is None or len(probabilities) <= FEW_RECORDS or len(set(classes)) != len(classes):
        return pydantic_core.to_json(prediction_body(model, prediction))
    # Every probability written at once by the same serializer, then set between the keys of its record's object.
    values = pydantic_core.to_json(probabilities.ravel().tolist())[1:-1].split(b",")
    row = b"{" + b",".join(pydantic_core.to_json(name) + b":%s" for name in classes) + b"}"
    rows = b",".join(map(row.__mod__, zip(*[iter(values)] * len(classes), strict=True)))
    return b"".join(
        [
            b'{"model":',
            pydantic_core.to_json(model.name),
            b',"predictions":',
            pydantic_core.to_json(prediction.labels()),
            b',"probabilities":[',
            rows,
            b'],"classes":',
            pydantic_core.to_json(list(classes)),
            b"}",
        ]
    )


def prediction_body(model: LoadedModel, prediction: Prediction) -> dict[str, Any]:
    probabilities = prediction.probabilities
    rows = (
        None
        if probabilities is None
        else [dict(zip(prediction.classes, row, strict=True)) for row in probabilities.tolist()]
    )
    return {
        "model": model.name,
        "predictions": prediction.labels(),
        "probabilities": rows,
        "classes": list(prediction.classes),
    }


def model_info(model: LoadedModel) -> dict[str, Any]:
    metadata = model.unpacked.metadata or {}
    metrics = {key: metadata[key] for key in ("cv_score", "test_accuracy") if isinstance(metadata.get(key), float)}
    return {
        "name": model.name,
        "format": model.unpacked.format,
        "estimator": estimator_name(model.unpacked),
        "params": metadata.get("params"),
        "metrics": metrics or None,
        "classes": list(model.predictor.classes),
        "features": list(model.predictor.input_columns),
        "trained_at": metadata.get("trained_at"),
        "sklearn_version": metadata.get("sklearn_version"),
        "sklearn_version_mismatch": _mismatch(model),
        "size_bytes": model.stamp.size,
        "modified_at": datetime.fromtimestamp(model.stamp.mtime_ns / 1e9, UTC).isoformat(),
        "probabilities": model.predictor.has_probabilities,
        "fast_path": model.predictor.fast_path,
        "reference_accuracy": None if model.reference_accuracy is None else model.reference_accuracy.plain(),
        "calibrator": _calibrator(model),
    }


def _calibrator(model: LoadedModel) -> dict[str, Any]:
    calibrator = model.calibrator
    if isinstance(calibrator, Calibrator):
        return {"available": True, **calibrator.plain(), "reason": None}
    return {
        "available": False,
        "method": None,
        "score": None,
        "rows": None,
        "points": None,
        "reason": calibrator.reason,
    }


def _mismatch(model: LoadedModel) -> dict[str, str] | None:
    mismatch = model.sklearn_version_mismatch
    return None if mismatch is None else {"trained_with": mismatch.trained_with, "serving_with": mismatch.serving_with}
