"""The original API's bodies: validated input, and the shapes its OpenAPI operations show."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from app.features import EXAMPLE_RECORD as EXAMPLE_RECORD  # the request example, importable from here too
from app.features import FLOAT32_MAX, Island, Sex, canonical_sex
from app.modelfile import ModelFormat
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


class ModelList(BaseModel):
    """The model files in MODELS_DIR at the moment of the request."""

    path: str
    modelos_disponibles_total: int
    modelos_disponibles: list[str]


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
