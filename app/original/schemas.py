"""The original API's bodies: validated input, and the shapes its OpenAPI operations show."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from app.features import EXAMPLE_RECORD as EXAMPLE_RECORD  # the request example, importable from here too
from app.features import FLOAT32_MAX, Island, Sex, canonical_sex
from app.modelfile import ModelFormat
from app.monitoring.figures import Level
from app.openapi import MODEL_NAME

# strict: "39.1" or true is a client mistake, not a number; JSON integers still count.
Measurement = Annotated[float, Field(gt=0, lt=FLOAT32_MAX, allow_inf_nan=False, strict=True)]
AnyCaseSex = Annotated[Sex, BeforeValidator(canonical_sex)]
# What the registry accepts as a name, declared in the document; a name outside it is answered 400, not 422.
MODEL_NAME_SCHEMA: dict[str, Any] = {key: value for key, value in MODEL_NAME.items() if key != "type"}
ModelName = Annotated[
    str,
    Field(
        description="A file in MODELS_DIR, with or without `.pkl`.",
        examples=["svc"],
        json_schema_extra=MODEL_NAME_SCHEMA,
    ),
]


def state_max_records(schemas: dict[str, Any], max_records: int) -> None:
    """MAX_RECORDS as the bodies' `records` bound in the document (a setting, so stated when the app serves it)."""
    for name in ("PredictRequest", "CompareRequest"):
        schemas[name]["properties"]["records"]["maxItems"] = max_records


class PenguinRecord(TypedDict):
    """One penguin's measurements; fields not listed here are ignored."""

    # A TypedDict, not a BaseModel: validated by pydantic all the same (extra keys ignored),
    # at half the cost per record.

    island: Island
    bill_length_mm: Measurement
    bill_depth_mm: Measurement
    flipper_length_mm: Measurement
    body_mass_g: Measurement
    sex: AnyCaseSex


class PredictRequest(BaseModel):
    """POST /predict body; the query's `model` wins over `model` here."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"records": [EXAMPLE_RECORD]}]})

    records: list[PenguinRecord] = Field(min_length=1)
    model: ModelName | None = None


class CompareRequest(BaseModel):
    """POST /predict/compare body; the query's `models` win over `models` here; default: every model."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"records": [EXAMPLE_RECORD], "models": ["svc", "random_forest"]}]}
    )

    records: list[PenguinRecord] = Field(min_length=1)
    models: list[ModelName] | None = Field(default=None, min_length=1)


class PredictResponse(BaseModel):
    """One model's answer: a prediction per record, and a probability per class when the model has them."""

    model: str = Field(examples=["random_forest.pkl"])
    predictions: list[str] = Field(examples=[["Adelie"]])
    probabilities: list[dict[str, float]] | None = Field(
        examples=[[{"Adelie": 0.98, "Chinstrap": 0.02, "Gentoo": 0.0}]]
    )
    classes: list[str] = Field(examples=[["Adelie", "Chinstrap", "Gentoo"]])


class CompareResponse(BaseModel):
    """Several models' answers keyed by file name; `skipped` names unloadable files left out of a default run."""

    results: dict[str, PredictResponse]
    skipped: dict[str, str] = Field(default_factory=dict)


class SklearnVersionMismatch(BaseModel):
    """The model file was pickled by another scikit-learn than the one serving it: predictions may differ."""

    trained_with: str = Field(examples=["1.5.0"])
    serving_with: str = Field(examples=["1.9.1"])


class ReferenceAccuracy(BaseModel):
    """The mean accuracy of repeated stratified cross-validation on the training split, and its interval."""

    mean: float = Field(examples=[0.9955])
    lower: float = Field(examples=[0.9862])
    upper: float = Field(examples=[1.0])
    level: float = Field(description="The interval's confidence level.", examples=[0.95])
    folds: int = Field(examples=[5])
    repeats: int = Field(examples=[10])
    method: str


class CalibratorInfo(BaseModel):
    """What turns each answer into a probability of being right, whose mean estimates the accuracy before labels."""

    available: bool
    method: str | None = Field(examples=["isotonic"])
    score: Literal["top_probability", "decision_margin"] | None = Field(
        description="What it reads: the top class probability, or the margin of the decision function."
    )
    rows: int | None = Field(description="The held-out records it was fitted on.", examples=[2660])
    points: int | None = Field(description="The points of its piecewise linear map.")
    reason: str | None = Field(description="Why there is no estimate, when there is none.")


class ModelInfo(BaseModel):
    """What a model file holds, from its metadata when it has some, and from the file itself."""

    name: str
    format: ModelFormat
    estimator: str
    params: dict[str, Any] | None
    metrics: dict[str, float] | None
    classes: list[str]
    features: list[str]
    trained_at: str | None
    sklearn_version: str | None
    sklearn_version_mismatch: SklearnVersionMismatch | None = Field(
        description="Set when the file was pickled by another scikit-learn (STRICT_SKLEARN_VERSION=1 refuses it)."
    )
    size_bytes: int
    modified_at: str
    probabilities: bool
    fast_path: bool = Field(description="Records are encoded by the compiled numpy encoder, not pandas.")
    reference_accuracy: ReferenceAccuracy | None = Field(
        description="The accuracy expected from training, with its interval; null for a file without it."
    )
    calibrator: CalibratorInfo


class RouteInfo(BaseModel):
    """A route of routes.json: a name that sends each request to one of its variants (model files), by weight."""

    name: str = Field(examples=["penguins"])
    variants: dict[str, float] = Field(examples=[{"logistic_regression": 90, "random_forest": 10}])
    shadows: list[str] = Field(examples=[["svc"]])
    sticky_header: str | None = Field(examples=["X-Client-ID"])


class ModelList(BaseModel):
    """The model files in MODELS_DIR at the moment of the request, and the routes served beside them."""

    path: str
    modelos_disponibles_total: int
    modelos_disponibles: list[str]
    routes: list[RouteInfo] = Field(default=[], description="The routes of routes.json; absent when it has none.")


class Bins(BaseModel):
    """A feature's bins, or the classes: the share of the training rows and of the window's records in each."""

    bins: list[str] = Field(examples=[["Biscoe", "Dream", "Torgersen"]])
    reference: list[float] = Field(examples=[[0.49, 0.36, 0.15]])
    window: list[float] = Field(examples=[[0.47, 0.38, 0.15]])
    psi: float | None = Field(
        description="Population stability index of the window against the reference; null while the window is empty."
    )
    level: Level = Field(
        description="How to read the PSI: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 significant; "
        "not judged with fewer records in the window than `thresholds.min_records`."
    )


class FeatureBins(Bins):
    out_of_range: int | None = Field(
        description="Numeric features: values outside the training min and max, counted since the model file "
        "was first predicted with; null for categorical ones."
    )


class PredictedBins(Bins):
    total: dict[str, int] = Field(description="Records predicted per class, counted since the file was first used.")


class ConfidenceHistogram(BaseModel):
    """The top class probability of each record predicted (models with probabilities only)."""

    buckets: list[float] = Field(description="Upper bounds of the buckets; one more bucket holds the rest.")
    counts: list[int] = Field(description="Records per bucket (not cumulative), one more than `buckets`.")
    sum: float
    window_mean: float | None = Field(description="The mean top probability of the window's records.")


class DriftWindow(BaseModel):
    size: int = Field(description="DRIFT_WINDOW: the last records per model the figures are computed on.")
    records: int = Field(description="Records in the window now.")


class DriftThresholds(BaseModel):
    moderate: float
    significant: float
    min_records: int


class ModelDrift(BaseModel):
    """A model's drift figures: its recent records against the reference profile of its training rows."""

    model: str = Field(examples=["logistic_regression.pkl"])
    version: str = Field(examples=["aedfc4bd20d7"])
    monitored: bool
    reason: str | None = Field(description="Why there are no figures: no reference profile, or a malformed one.")
    window: DriftWindow
    records: int = Field(description="Records counted since the model file was first predicted with.")
    reference_rows: int | None = Field(description="The training rows the profile describes.")
    thresholds: DriftThresholds
    features: dict[str, FeatureBins]
    predictions: PredictedBins | None
    confidence: ConfidenceHistogram | None


class Welcome(BaseModel):
    message: str
    endpoints: list[str]


class Health(BaseModel):
    status: Literal["ok"]
    models: int


class ErrorDetail(BaseModel):
    """Every error but validation: one sentence naming the problem."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorDetail(BaseModel):
    """422: what did not validate, where (FastAPI's shape)."""

    detail: list[ValidationIssue]
