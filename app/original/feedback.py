"""POST /feedback and GET /models/{name}/performance: true labels in; live accuracy, its estimate before labels
and the reference from training out (app/capture/).

A body is one label object or a JSON list of them, at most MAX_RECORDS. A 200 means the labels are committed.
A list of plainly valid labels is read without pydantic, by operations that run in C (as app/original/records.py
reads records); anything else is left to pydantic's validation, so every error stays what the schema says.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.capture import SPECIES, Label, LabelOutcome, Performance, Recorder
from app.errors import InvalidInput, TooManyRecords
from app.http import Endpoint, FastJSONResponse, RequestInvalid, data_plane, get_model, whole_body
from app.openapi import MODEL_NAME, ErrorDoc, operation, path_parameter, request_body
from app.original.schemas import ErrorDetail, ValidationErrorDetail

TAG = "Original API"
CAPTURE_OFF = "Capture is off (CAPTURE=0): no prediction is kept to join a label to."
# The conflicts an answer lists one by one; the count covers them all.
CONFLICTS_SHOWN = 100
ROW_MAX = 2**31 - 1
REQUEST_ID_LENGTH = 128
SPECIES_SET = frozenset(SPECIES)


class FeedbackLabel(BaseModel):
    """The true species of one predicted record: its request's X-Request-ID and its position in that batch."""

    model_config = ConfigDict(extra="ignore")
    request_id: str = Field(min_length=1, max_length=REQUEST_ID_LENGTH, examples=["3f2a9c0d5e6b47a8b9c0d1e2f3a4b5c6"])
    label: str = Field(json_schema_extra={"enum": list(SPECIES)}, examples=["Adelie"])
    row: int = Field(default=0, ge=0, le=ROW_MAX, strict=True, description="The record's position in its batch.")


class FeedbackRequest(RootModel[FeedbackLabel | Annotated[list[FeedbackLabel], Field(min_length=1)]]):
    """One label, or a list of at most MAX_RECORDS labels."""


class Conflict(BaseModel):
    request_id: str
    row: int
    label: str = Field(description="The label sent, not kept.")
    kept: str = Field(description="The label the record already had, kept.")


class FeedbackResponse(BaseModel):
    """What happened to each label: joined to a prediction, kept for one not captured yet, already so, or not."""

    received: int
    matched: int = Field(description="Stored, and joined to a captured prediction.")
    unknown: int = Field(
        description="Stored, but no captured prediction has that request ID and row yet; joined if one comes."
    )
    unchanged: int = Field(description="The record already had this label: nothing changed.")
    conflicting: int = Field(description="The record already had another label, which is kept.")
    conflicts: list[Conflict] = Field(description=f"The first {CONFLICTS_SHOWN} conflicts.")


class ReferenceInterval(BaseModel):
    """The version's accuracy from training: the mean of a repeated cross-validation and its 95 % interval."""

    mean: float
    lower: float
    upper: float


class VersionPerformance(BaseModel):
    version: str
    current: bool = Field(description="The version of the file in the folder now.")
    first_captured: str
    last_captured: str
    window_labels: int = Field(description="Labelled records the figures are computed on (at most FEEDBACK_WINDOW).")
    correct: int
    accuracy: float | None
    accuracy_lower: float | None = Field(description="The 95 % Wilson interval's lower bound.")
    accuracy_upper: float | None
    confusion: dict[str, dict[str, int]] = Field(description="Records by true label, then by predicted class.")
    coverage: float | None = Field(description="Share of the version's recent predictions that have a label.")
    recent_predictions: int = Field(description="The recent predictions coverage is measured on.")
    label_delay_seconds: dict[str, float] = Field(description="Seconds from prediction to label: p50 and p90.")
    estimated_accuracy: float | None = Field(
        description="The mean calibrated confidence of the recent predictions, labelled or not: the accuracy "
        "expected before labels arrive. Null when the model file has no calibrator."
    )
    estimated_records: int = Field(description="The recent predictions the estimate is the mean of.")
    reference: ReferenceInterval | None = Field(
        description="The version's accuracy from training, as stored when it first answered; null without one."
    )


class ModelPerformance(BaseModel):
    """A model file's live accuracy per version, from the labels joined to its captured predictions."""

    model: str
    version: str
    window: int
    versions: list[VersionPerformance]


LABELS = TypeAdapter(list[FeedbackLabel])


def _capture(request: Request) -> Recorder:
    recorder = data_plane(request).capture
    if recorder is None:
        raise HTTPException(404, CAPTURE_OFF)
    return recorder


def parse_labels(body: bytes, max_records: int) -> list[Label]:
    """The body's labels; 422 for a malformed body, 413 beyond max_records, 400 for an unknown species."""
    try:
        raw = pydantic_core.from_json(body)
    except ValueError as error:
        raise RequestInvalid([{"loc": ["body"], "msg": f"Invalid JSON: {error}", "type": "json_invalid"}]) from None
    single = isinstance(raw, dict)
    if not single and not isinstance(raw, list):
        raise _invalid("Input should be a label object or a list of them", "model_type")
    items = [raw] if single else raw
    if len(items) > max_records:
        raise TooManyRecords(f"Got {len(items)} labels; at most MAX_RECORDS={max_records} are accepted per request.")
    if not items:
        raise _invalid("List should have at least 1 item", "too_short")
    plain = _plain_labels(items)
    if plain is not None:
        return plain
    try:
        labels = LABELS.validate_python(items)
    except ValidationError as error:
        invalid = RequestInvalid.from_pydantic(error, "body")
        if single:
            for item in invalid.errors:
                del item["loc"][1]
        raise invalid from None
    for index, label in enumerate(labels):
        if label.label not in SPECIES:
            where = "" if single else f" (label {index})"
            raise InvalidInput(
                f"Label {label.label[:64]!r}{where} is not a species: expected one of {', '.join(SPECIES)}."
            )
    return [Label(label.request_id, label.row, label.label) for label in labels]


def _plain_labels(items: list[Any]) -> list[Label] | None:
    """The labels when every one is plainly valid (what FeedbackLabel takes, and a species); None when pydantic must
    decide."""
    try:
        request_ids = [item["request_id"] for item in items]
        rows = [item.get("row", 0) for item in items]
        labels = [item["label"] for item in items]
        valid = (
            {str}.issuperset(map(type, request_ids))
            and min(map(len, request_ids)) >= 1
            and max(map(len, request_ids)) <= REQUEST_ID_LENGTH
            and {int}.issuperset(map(type, rows))  # strict: never a bool, a float or a string
            and min(rows) >= 0
            and max(rows) <= ROW_MAX
            and SPECIES_SET.issuperset(labels)
        )
    except (KeyError, TypeError, AttributeError):
        return None  # an item that is not an object, lacks a field, or holds an unhashable label
    return list(map(Label, request_ids, rows, labels)) if valid else None


def _invalid(message: str, kind: str) -> RequestInvalid:
    return RequestInvalid([{"loc": ["body"], "msg": message, "type": kind}])


def feedback_body(received: int, outcome: LabelOutcome) -> dict[str, Any]:
    conflicts = [
        {"request_id": label.request_id, "row": label.row, "label": label.label, "kept": kept}
        for label, kept in outcome.conflicts[:CONFLICTS_SHOWN]
    ]
    return {"received": received, **outcome.counts(), "conflicts": conflicts}


async def feedback(request: Request) -> Response:
    recorder = _capture(request)
    body = await whole_body(request)
    labels = await run_in_threadpool(parse_labels, body, data_plane(request).settings.max_records)
    outcome = await run_in_threadpool(recorder.add_labels, labels)
    return FastJSONResponse(feedback_body(len(labels), outcome))


async def model_performance(request: Request) -> Response:
    recorder = _capture(request)
    plane = data_plane(request)
    model = await get_model(plane, request.path_params["name"])
    versions = await run_in_threadpool(recorder.performance, model.stem)
    return FastJSONResponse(
        {
            "model": model.name,
            "version": model.version,
            "window": recorder.window,
            "versions": [version_body(figures, model.version) for figures in versions],
        }
    )


def version_body(figures: Performance, current: str) -> dict[str, Any]:
    rows = list(dict.fromkeys([*figures.classes, *(label for label, _ in figures.confusion)]))
    confusion = {
        label: {predicted: figures.confusion.get((label, predicted), 0) for predicted in figures.classes}
        for label in rows
    }
    return {
        "version": figures.version,
        "current": figures.version == current,
        "first_captured": _time(figures.first_at),
        "last_captured": _time(figures.last_at),
        "window_labels": figures.window_labels,
        "correct": figures.correct,
        "accuracy": figures.accuracy,
        "accuracy_lower": figures.lower,
        "accuracy_upper": figures.upper,
        "confusion": confusion,
        "coverage": figures.coverage,
        "recent_predictions": figures.recent,
        "label_delay_seconds": {f"p{round(quantile * 100)}": seconds for quantile, seconds in figures.delays.items()},
        "estimated_accuracy": figures.estimated_accuracy,
        "estimated_records": figures.estimated_records,
        "reference": None if figures.reference is None else asdict(figures.reference),
    }


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


STORE_DOWN = "The capture store cannot be reached now (the cause is in the server log)."
FEEDBACK_ERRORS: dict[int, ErrorDoc] = {
    400: (ErrorDetail, "A label that is not a species."),
    404: (ErrorDetail, CAPTURE_OFF),
    413: (ErrorDetail, "More labels than MAX_RECORDS."),
    422: (ValidationErrorDetail, "The body is not valid JSON, or a label object does not validate."),
    503: (ErrorDetail, STORE_DOWN),
}
PERFORMANCE_ERRORS: dict[int, ErrorDoc] = {
    400: (ErrorDetail, "The model name is not a plain file name, or it links outside MODELS_DIR."),
    404: (ErrorDetail, f"No such model in MODELS_DIR, or: {CAPTURE_OFF}"),
    500: (ErrorDetail, "The model file cannot be loaded; the detail names the file and the reason."),
    503: (ErrorDetail, f"MODELS_DIR is not readable, or: {STORE_DOWN}"),
}
FEEDBACK_EXAMPLE = {"request_id": "3f2a9c0d5e6b47a8b9c0d1e2f3a4b5c6", "label": "Adelie", "row": 0}
FEEDBACK_ENDPOINT = Endpoint(
    "POST",
    "/feedback",
    feedback,
    operation(
        TAG,
        "True labels for captured predictions, by request ID and row; counted by what happened to each",
        FeedbackResponse,
        FEEDBACK_ERRORS,
        requestBody=request_body(FeedbackRequest, FEEDBACK_EXAMPLE),
    ),
)
PERFORMANCE_ENDPOINT = Endpoint(
    "GET",
    "/models/{name}/performance",
    model_performance,
    operation(
        TAG,
        "One model's live accuracy per version, from the labels received",
        ModelPerformance,
        PERFORMANCE_ERRORS,
        parameters=[path_parameter("name", MODEL_NAME)],
    ),
)
SCHEMAS = [
    FeedbackRequest, FeedbackLabel, FeedbackResponse, Conflict, ModelPerformance, VersionPerformance,
    ReferenceInterval,
]  # fmt: skip
