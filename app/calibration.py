"""The estimate before labels arrive: each record's calibrated probability of being right. No HTTP.

A model file written by scripts/train.py holds a "calibrator": an isotonic map, learnt at training on rows the
model had not seen (the held-out folds of a repeated cross-validation), from a score the server has for each
record to the probability that the predicted class is right. The score is the top class probability
(TOP_PROBABILITY) for a model with probabilities, which the prediction already holds; for a model without them
(the SVC) it is the margin between the two best classes of its one-vs-rest decision function
(DECISION_MARGIN), one more pass of the encoded batch through the estimator, about what its predict costs. The
served answer never changes. The mean of these probabilities over a window estimates the accuracy before any
label is known (confidence-based performance estimation). It sees records moving towards the model's
boundaries; it cannot see a change in what the label means for the same inputs (concept drift), which only
real labels show. A file without a calibrator, or with a malformed one, is served as before, without an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.features import Batch
from app.modelfile import Unpacked
from app.predictors import Prediction, Predictor

TOP_PROBABILITY = "top_probability"
DECISION_MARGIN = "decision_margin"
METHOD = "isotonic"
# An isotonic map has a point per step of the scores it was fitted on: far fewer than this.
MAX_POINTS = 100_000


class MalformedCalibrator(ValueError):
    """A model file's calibrator entry cannot be read as one."""


@dataclass(frozen=True)
class NoCalibrator:
    """Why a model has no estimate."""

    reason: str
    malformed: bool = False


NO_CALIBRATOR = NoCalibrator("no calibrator")


@dataclass(frozen=True)
class Calibrator:
    """A non-decreasing piecewise linear map from a record's score to its probability of being right."""

    score: str  # TOP_PROBABILITY or DECISION_MARGIN
    x: np.ndarray  # non-decreasing scores
    y: np.ndarray  # the probability at each, non-decreasing, in [0, 1]
    rows: int | None  # the held-out records it was fitted on

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Each score's probability; below the first point the first value, above the last the last."""
        calibrated: np.ndarray = np.interp(scores, self.x, self.y)
        return calibrated

    def plain(self) -> dict[str, Any]:
        return {"method": METHOD, "score": self.score, "rows": self.rows, "points": len(self.x)}


def read_calibrator(unpacked: Unpacked, predictor: Predictor) -> Calibrator | NoCalibrator:
    """The model's calibrator; NoCalibrator when its file has none, or a malformed one (with the reason)."""
    if unpacked.calibrator is None:
        return NO_CALIBRATOR
    try:
        return parse_calibrator(unpacked.calibrator, predictor)
    except Exception as error:  # a hand-edited entry must never fail a load: whatever cannot be read is malformed
        reason = str(error) if isinstance(error, MalformedCalibrator) else f"{type(error).__name__}: {error}"
        return NoCalibrator(f"malformed calibrator: {reason}", malformed=True)


def parse_calibrator(entry: Any, predictor: Predictor) -> Calibrator:
    if not isinstance(entry, dict):
        raise MalformedCalibrator(f"it is a {type(entry).__name__}, not a dict")
    if entry.get("method") != METHOD:
        raise MalformedCalibrator(f"its method is {entry.get('method')!r}, not {METHOD!r}")
    score = entry.get("score")
    if score == TOP_PROBABILITY and not predictor.has_probabilities:
        raise MalformedCalibrator("it reads the top class probability of a model that gives no probabilities")
    if score == DECISION_MARGIN and not callable(getattr(predictor.estimator, "decision_function", None)):
        raise MalformedCalibrator("it reads the decision margin of a model without a decision function")
    if score not in (TOP_PROBABILITY, DECISION_MARGIN):
        raise MalformedCalibrator(f"its score is {score!r}, not {TOP_PROBABILITY!r} or {DECISION_MARGIN!r}")
    x, y = _points(entry.get("x"), "x"), _points(entry.get("y"), "y")
    if len(x) != len(y):
        raise MalformedCalibrator(f"x has {len(x)} points and y {len(y)}")
    if y[0] < 0 or y[-1] > 1:
        raise MalformedCalibrator("its probabilities leave [0, 1]")
    rows = entry.get("rows")
    if rows is not None and (type(rows) is not int or rows < 0):
        raise MalformedCalibrator(f"its rows is {rows!r}, not a count")
    return Calibrator(score, x, y, rows)


def _points(value: Any, label: str) -> np.ndarray:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_POINTS:
        raise MalformedCalibrator(f"{label} is not a list of 1 to {MAX_POINTS:,} numbers")
    if not all(type(item) in (int, float) and math.isfinite(item) for item in value):
        raise MalformedCalibrator(f"{label} holds something other than finite numbers")
    points = np.array(value, dtype=float)
    if (np.diff(points) < 0).any():
        raise MalformedCalibrator(f"{label} is not in non-decreasing order")
    return points


def scores(predictor: Predictor, batch: Batch, prediction: Prediction, kind: str) -> np.ndarray:
    """Each record's score of the given kind, as scripts/penguins.py's top_label_score computes it in training."""
    if kind == TOP_PROBABILITY:
        if prediction.probabilities is None:
            raise ValueError("the prediction holds no probabilities")
        top: np.ndarray = prediction.probabilities.max(axis=1)
        return top
    decision = np.asarray(predictor.estimator.decision_function(predictor.encode(batch)), dtype=float)
    if decision.ndim == 1:  # two classes: one signed distance, whose size is the margin
        distance: np.ndarray = np.abs(decision)
        return distance
    decision = np.sort(decision, axis=1)
    margin: np.ndarray = decision[:, -1] - decision[:, -2]
    return margin


class Calibrated(Protocol):
    """What confidence reads of a loaded model (app/registry.py's LoadedModel), without importing the registry."""

    @property
    def predictor(self) -> Predictor: ...

    @property
    def calibrator(self) -> Calibrator | NoCalibrator: ...


def confidence(model: Calibrated, batch: Batch, prediction: Prediction) -> np.ndarray | None:
    """The calibrated probability that each record's predicted class is right; None without a calibrator.

    prediction is what the model answered for batch. Blocking (for a decision margin, one pass of the batch
    through the estimator): call it off the request path.
    """
    calibrator = model.calibrator
    if not isinstance(calibrator, Calibrator):
        return None
    return calibrator.calibrate(scores(model.predictor, batch, prediction, calibrator.score))
