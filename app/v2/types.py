"""The Open Inference Protocol's JSON objects: requests parsed straight from bytes, answers as the document shows.

Names follow the specification (MLServer's types.py uses the same ones), so a V2 client's reader finds them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, RootModel
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from app.features import CATEGORICAL, EXAMPLE_RECORD, FEATURES, FLOAT32_MAX, ISLANDS, NUMERIC, SEXES

NUMERIC_DATATYPES = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
NumericDatatype = Literal[
    "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"
]  # fmt: skip
OutputName = Literal["predict", "predict_proba"]
# strict: true or "39.1" is not a number; JSON integers still are.
Number = Annotated[float, Field(strict=True)]
# Flat data is the common case: tried first, and taken when it fits.
LEFT_TO_RIGHT = Field(union_mode="left_to_right")
# $parameters: free-form; this server reads binary_data_size, binary_data, binary_data_output.
Parameters = dict[str, Any]


def _any_case(word: str) -> str:
    return "".join(f"[{letter.upper()}{letter.lower()}]" for letter in word)


EXAMPLE_REQUEST: dict[str, Any] = {
    "id": "42",
    "inputs": [
        {
            "name": name,
            "shape": [1],
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "data": [value],
        }
        for name, value in EXAMPLE_RECORD.items()
    ],
}


# What the codec (app/v2/codec.py) requires of the inputs beyond their types, stated in the document for clients.
# The codec checks it all the same, with refusals that name the input; JSON Schema cannot say that the columns'
# lengths agree with their shapes and with each other, nor what the binary data after the JSON holds.
SHAPE: dict[str, Any] = {
    "minItems": 1,
    "maxItems": 2,
    "prefixItems": [{"type": "integer", "minimum": 1}, {"const": 1}],
    "description": "[N] or [N, 1]: N records, at least one.",
}
# A tensor's values come one way: `data` (not null), or `binary_data_size` bytes after the JSON, never both.
DATA_OR_BINARY: list[dict[str, Any]] = [
    {"required": ["data"], "properties": {"data": {"not": {"type": "null"}}}},
    {
        "required": ["parameters"],
        "properties": {
            "parameters": {
                "type": "object",
                "required": ["binary_data_size"],
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            }
        },
    },
]
# An input's parameters: free-form, but a binary_data_size, when given, is a size (never null: the codec would
# not know whether binary data follows).
PARAMETERS: dict[str, Any] = {
    "anyOf": [
        {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        {"type": "null"},
    ]
}
MEASUREMENT: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": FLOAT32_MAX}
# Each input's words, by name: an island as written, a sex in any letter case.
WORDS: dict[str, dict[str, Any]] = {
    "island": {"type": "string", "enum": list(ISLANDS)},
    "sex": {"type": "string", "pattern": "^(" + "|".join(_any_case(sex) for sex in SEXES) + ")$"},
}

OUTPUT_NAMES = ("predict", "predict_proba")


def _values(item: dict[str, Any]) -> dict[str, Any]:
    """A column's data: flat, nested ([N, 1]), or null when its values come as binary data."""
    nested = {"type": "array", "items": {"type": "array", "items": item}}
    return {"anyOf": [{"type": "array", "items": item}, nested, {"type": "null"}]}


def _column(schema: dict[str, Any], names: tuple[str, ...]) -> None:
    """An input's document: its names, its shape, its values by name, and data or binary data."""
    properties = schema["properties"]
    properties["name"]["enum"] = list(names)
    properties["shape"].update(SHAPE)
    properties["parameters"] = PARAMETERS
    schema["oneOf"] = DATA_OR_BINARY
    values = {name: WORDS.get(name, MEASUREMENT) for name in names}
    schema["allOf"] = [
        {"if": {"properties": {"name": {"const": name}}}, "then": {"properties": {"data": _values(item)}}}
        for name, item in values.items()
    ]


def _once_each(names: tuple[str, ...], least: int) -> list[dict[str, Any]]:
    """Each name in at least `least` and at most one item of an array of named objects."""
    return [
        {"contains": {"properties": {"name": {"const": name}}}, "minContains": least, "maxContains": 1}
        for name in names
    ]


def _request(schema: dict[str, Any]) -> None:
    schema["examples"] = [EXAMPLE_REQUEST]
    properties = schema["properties"]
    properties["inputs"]["allOf"] = _once_each(FEATURES, 1)
    outputs = next(variant for variant in properties["outputs"]["anyOf"] if variant.get("type") == "array")
    outputs["allOf"] = _once_each(OUTPUT_NAMES, 0)


def state_max_records(schemas: dict[str, Any], max_records: int) -> None:
    """MAX_RECORDS in the document, where JSON Schema can state it: the N of an input's shape, and the length of
    its flat data (a setting, so stated when the app serves the document)."""
    for name in ("NumericInput", "BytesInput"):
        schema = schemas[name]
        schema["properties"]["shape"]["prefixItems"][0]["maximum"] = max_records
        for rule in schema["allOf"]:
            flat = rule["then"]["properties"]["data"]["anyOf"][0]
            flat["maxItems"] = max_records


class _Tensor(TypedDict):
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    parameters: NotRequired[Parameters | None]


class NumericInput(_Tensor):
    """A measurement column: numbers, [N] or [N, 1], flat or nested; or `binary_data_size` bytes after the JSON."""

    __pydantic_config__ = ConfigDict(json_schema_extra=lambda schema: _column(schema, NUMERIC))  # type: ignore[misc]

    datatype: NumericDatatype
    data: NotRequired[Annotated[list[Number] | list[list[Number]] | None, LEFT_TO_RIGHT]]


class BytesInput(_Tensor):
    """A word column (island, sex): strings, [N] or [N, 1], flat or nested; or binary BYTES elements."""

    __pydantic_config__ = ConfigDict(json_schema_extra=lambda schema: _column(schema, CATEGORICAL))  # type: ignore[misc]

    datatype: Literal["BYTES"]
    data: NotRequired[Annotated[list[str] | list[list[str]] | None, LEFT_TO_RIGHT]]


RequestInput = Annotated[NumericInput | BytesInput, Field(discriminator="datatype")]


class RequestOutput(TypedDict):
    """An output to return; `parameters.binary_data: true` asks for it as binary data."""

    name: OutputName
    parameters: NotRequired[Parameters | None]


class InferenceRequest(TypedDict):
    """POST .../infer body: one input tensor per feature; `outputs` picks the outputs (default: all)."""

    # A TypedDict, not a BaseModel: validated by pydantic all the same, at a lower cost per request.
    __pydantic_config__ = ConfigDict(json_schema_extra=_request)  # type: ignore[misc]

    id: NotRequired[str | None]
    parameters: NotRequired[Parameters | None]
    inputs: Annotated[list[RequestInput], Field(min_length=1)]
    outputs: NotRequired[list[RequestOutput] | None]


class ResponseOutput(BaseModel):
    name: OutputName
    shape: list[int]
    datatype: Literal["BYTES", "FP64"]
    parameters: Parameters | None = None
    data: list[Any] | None = Field(default=None, description="Absent when the output is sent as binary data.")


class InferenceResponse(BaseModel):
    """The predictions; `predict_proba` is row-major [N, classes], its class order in `parameters.classes`."""

    model_name: str
    model_version: str
    id: str
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: Literal["BYTES", "FP64"]
    shape: list[int]
    parameters: Parameters | None = None


class ModelMetadata(BaseModel):
    """What a model takes and gives; `versions` holds the loaded file's version, `parameters.classes` its labels,
    and `parameters.reference_accuracy` (with `_lower`, `_upper`) the accuracy expected from its training."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: Parameters | None = None


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class RepositoryIndexRequest(BaseModel):
    """POST /v2/repository/index body (optional): `ready: true` lists only the loaded models."""

    ready: Annotated[bool, Field(strict=True)] | None = None


class RouteParameters(BaseModel):
    """A route of routes.json: its variants (model files) with their weights, its shadows, its sticky header."""

    variants: dict[str, float]
    shadows: list[str]
    sticky_header: str | None


class RepositoryModel(BaseModel):
    """A model file: READY when loaded, else UNAVAILABLE with the reason. A route has `route`, and is READY when
    every variant it can send a request to is loaded."""

    name: str
    version: str | None = None
    state: Literal["READY", "UNAVAILABLE"]
    reason: str
    route: RouteParameters | None = None


class RepositoryIndex(RootModel[list[RepositoryModel]]):
    """Every model file in MODELS_DIR, then every route of its routes.json."""


class V2Error(BaseModel):
    """Every V2 error: one sentence naming the problem."""

    error: str
