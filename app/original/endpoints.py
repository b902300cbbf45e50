"""The original API: its routes, its bodies parsed into core calls, its answers in its own JSON shapes.

Compatibility: this dialect answers as the original FastAPI service did, so its clients keep working
unchanged — the Spanish welcome message, the Spanish field names of /models (`modelos_disponibles`),
FastAPI's error bodies, and "the query wins over the body" for the model to use.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import pydantic_core
from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.dataplane import DataPlane, Selection
from app.errors import TooManyRecords
from app.features import Batch
from app.http import (
    INLINE_BUDGET_SECONDS,
    Endpoint,
    FastJSONResponse,
    RequestInvalid,
    Routed,
    data_plane,
    get_model,
    get_routed_model,
    parse_body,
    query_params,
    run_inline_or_threaded,
)
from app.metrics import Metrics
from app.openapi import (
    MODEL_NAME,
    ErrorDoc,
    Schema,
    json_content,
    operation,
    path_parameter,
    query_parameter,
    ref,
    request_body,
    routed,
)
from app.original.answers import model_info, prediction_json
from app.original.feedback import FEEDBACK_ENDPOINT, PERFORMANCE_ENDPOINT
from app.original.feedback import SCHEMAS as FEEDBACK_SCHEMAS
from app.original.monitor import PAGE_POLICY, drift_body, monitor_page
from app.original.monitor_feedback import ground_truth
from app.original.monitor_routes import ROUTE_ENDPOINT, metrics_of, route_sections
from app.original.monitor_routes import SCHEMAS as ROUTE_SCHEMAS
from app.original.records import read_columns
from app.original.schemas import (
    EXAMPLE_RECORD,
    CompareRequest,
    CompareResponse,
    ErrorDetail,
    Health,
    ModelDrift,
    ModelInfo,
    ModelList,
    PenguinRecord,
    PredictRequest,
    PredictResponse,
    ValidationErrorDetail,
    Welcome,
)
from app.routes import plain
from app.rules import MODEL_NAME_MAX_LENGTH, MODEL_NAME_PATTERN

WELCOME = "Bienvenido a la API de inferencia de modelos ML"
# Bodies beyond this size (a few records) are read as columns first: below it pydantic alone is quicker.
COLUMNAR_BODY_BYTES = 2048
TAG = "Original API"
RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass(frozen=True)
class Parsed(Generic[RequestT]):
    """A body's records as the core's Batch, and its other fields; `request.records` is not to be read."""

    request: RequestT
    batch: Batch


class Parser(Generic[RequestT]):
    """Validates a raw body straight from bytes; more than max_records records is a 413, not a 422."""

    def __init__(self, model: type[RequestT], max_records: int) -> None:
        records = Annotated[list[PenguinRecord], Field(min_length=1, max_length=max_records)]
        # The length is checked before the items are: an oversized body is refused cheaply.
        self.model: type[RequestT] = create_model(model.__name__, __base__=model, records=(records, ...))
        # The other fields, for a body whose records were read as columns (app/original/records.py).
        self.others: type[RequestT] = create_model(model.__name__, __base__=model, records=(list[Any], []))
        self.max_records = max_records

    def parse(self, body: bytes) -> Parsed[RequestT]:
        """Beyond a few records, read as columns when that path takes the body; else, and on any doubt, by pydantic."""
        if len(body) > COLUMNAR_BODY_BYTES:
            parsed = self._as_columns(body)
            if parsed is not None:
                return parsed
        request = self.validated(body)
        records: list[PenguinRecord] = request.__dict__["records"]  # every body of this dialect has them
        return Parsed(request, Batch.from_records(records))

    def _as_columns(self, body: bytes) -> Parsed[RequestT] | None:
        try:
            value = pydantic_core.from_json(body)
        except ValueError:
            return None
        if type(value) is not dict:
            return None
        batch = read_columns(value.get("records"), self.max_records)
        if batch is None:
            return None
        try:
            others = self.others.model_validate({key: item for key, item in value.items() if key != "records"})
        except ValidationError:
            return None
        return Parsed(others, batch)

    def validated(self, body: bytes) -> RequestT:
        try:
            return self.model.model_validate_json(body)
        except ValidationError as error:
            for item in error.errors(include_url=False, include_input=False):
                if item["type"] == "too_long" and item["loc"] == ("records",):
                    raise TooManyRecords.of(item["ctx"]["actual_length"], self.max_records) from None
            raise RequestInvalid.from_pydantic(error, "body") from None


@functools.cache
def _cached_parser(model: type[BaseModel], max_records: int) -> Parser[Any]:
    return Parser(model, max_records)


def _parser(request: Request, model: type[RequestT]) -> Parser[RequestT]:
    # Made once per request type and MAX_RECORDS: building the validator costs far more than using it.
    parser: Parser[RequestT] = _cached_parser(model, data_plane(request).settings.max_records)
    return parser


async def welcome(request: Request) -> Response:
    paths = list(dict.fromkeys(endpoint.documented_path for endpoint in ENDPOINTS))
    return FastJSONResponse({"message": WELCOME, "endpoints": paths})


async def health(request: Request) -> Response:
    plane = data_plane(request)
    return FastJSONResponse({"status": "ok", "models": len(await run_in_threadpool(plane.available))})


async def list_models(request: Request) -> Response:
    plane = data_plane(request)
    names = await run_in_threadpool(plane.available)
    body: dict[str, Any] = {"path": str(plane.folder), "modelos_disponibles_total": len(names)}
    body["modelos_disponibles"] = names
    routes = [plain(route) for route in await run_in_threadpool(plane.route_list)]
    if routes:  # without routes, the original service's body exactly
        body["routes"] = routes
    return FastJSONResponse(body)


async def describe_model(request: Request) -> Response:
    return FastJSONResponse(model_info(await get_model(data_plane(request), request.path_params["name"])))


def _monitoring(request: Request) -> DataPlane:
    plane = data_plane(request)
    if not plane.settings.drift_monitoring:
        raise HTTPException(404, MONITORING_OFF)
    return plane


async def model_drift(request: Request) -> Response:
    plane = _monitoring(request)
    model = await get_model(plane, request.path_params["name"])
    return FastJSONResponse(drift_body(model, await run_in_threadpool(plane.drift, model)))


async def monitor(request: Request) -> Response:
    plane = _monitoring(request)
    page = await run_in_threadpool(_monitor_page, plane, request.scope.get("root_path", ""), metrics_of(request))
    return HTMLResponse(page, headers={"content-security-policy": PAGE_POLICY})


def _monitor_page(plane: DataPlane, root_path: str, metrics: Metrics | None) -> str:
    selection = plane.select(None)
    drift = [(model, plane.drift(model)) for model in selection.models]
    routes = route_sections(plane, metrics, root_path)
    return monitor_page(drift, selection.skipped, root_path, ground_truth(plane), plane.routes_problem(), routes)


async def predict_records(request: Request) -> Response:
    parsed = await parse_body(request, _parser(request, PredictRequest).parse)
    name = query_params(request).get("model", parsed.request.model)
    return await _predict(request, name, parsed.batch)


async def predict_with_model(request: Request) -> Response:
    parsed = await parse_body(request, _parser(request, PredictRequest).parse)
    return await _predict(request, request.path_params["model_name"], parsed.batch)


async def _predict(request: Request, name: str | None, batch: Batch) -> Response:
    """A model's name, or a route's: then one of its variants answers, named in `model` and X-Route-Variant."""
    plane = data_plane(request)
    routed = await get_routed_model(plane, name, request)
    model = routed.model
    inline = model.estimated_seconds(len(batch)) <= INLINE_BUDGET_SECONDS
    content = await run_inline_or_threaded(inline, _predict_answer, plane, routed, batch)
    return routed.answer(content, "application/json")


def _predict_answer(plane: DataPlane, routed: Routed, batch: Batch) -> bytes:
    return prediction_json(routed.model, plane.predict(routed.model, batch, route=routed.route))


async def compare(request: Request) -> Response:
    parsed = await parse_body(request, _parser(request, CompareRequest).parse)
    plane = data_plane(request)
    queried = query_params(request).getlist("models")
    names = split_names(queried) if queried else parsed.request.models
    cached = plane.select_cached(names)
    selection = cached if cached is not None else await run_in_threadpool(plane.select, names)
    cost = sum(model.estimated_seconds(len(parsed.batch)) for model in selection.models)
    results = await run_inline_or_threaded(
        cost <= INLINE_BUDGET_SECONDS, _compare_answers, plane, selection, parsed.batch
    )
    content = b"".join([b'{"results":{', results, b'},"skipped":', pydantic_core.to_json(selection.skipped), b"}"])
    return Response(content, media_type="application/json")


def _compare_answers(plane: DataPlane, selection: Selection, batch: Batch) -> bytes:
    """The models' answers as the members of the results object, in the selection's order."""
    return b",".join(
        pydantic_core.to_json(model.name) + b":" + prediction_json(model, plane.predict(model, batch))
        for model in selection.models
    )


def split_names(values: Sequence[str]) -> list[str]:
    """?models=a&models=b and ?models=a,b alike."""
    return [part.strip() for value in values for part in value.split(",")]


ERRORS: dict[int, ErrorDoc] = {
    400: (ErrorDetail, "The model name is not a plain file name, or it links outside MODELS_DIR."),
    404: (ErrorDetail, "No such model in MODELS_DIR; the detail lists the available ones."),
    413: (ErrorDetail, "More records than MAX_RECORDS."),
    422: (ValidationErrorDetail, "The body is not valid JSON or a record does not validate."),
    500: (ErrorDetail, "The model file cannot be loaded; the detail names the file and the reason."),
    503: (ErrorDetail, "MODELS_DIR is not readable."),
}
MODEL_ERRORS = {status: ERRORS[status] for status in (400, 404, 500, 503)}
FOLDER_ERRORS = {503: ERRORS[503]}
MONITORING_OFF = "Drift monitoring is off (DRIFT_MONITORING=0)."
DRIFT_ERRORS: dict[int, ErrorDoc] = {
    **MODEL_ERRORS,
    404: (ErrorDetail, f"No such model in MODELS_DIR, or: {MONITORING_OFF}"),
}
MONITOR_PAGE = {
    "tags": [TAG],
    "summary": "Every model's live accuracy and drift as a page for a person (HTML; the JSON: performance, drift)",
    "responses": {
        "200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}},
        "404": json_content(ref(ErrorDetail), MONITORING_OFF),
        "503": json_content(ref(ErrorDetail), ERRORS[503][1]),
    },
}
COMMA_SEPARATED_NAMES = rf"^{MODEL_NAME_PATTERN.pattern}(,{MODEL_NAME_PATTERN.pattern})*$"
PREDICT_EXAMPLE = {"records": [EXAMPLE_RECORD]}
COMPARE_EXAMPLE = {"records": [EXAMPLE_RECORD], "models": ["svc", "random_forest"]}
MODEL_QUERY = query_parameter(
    "model", "Model file name, with or without `.pkl`, or a route's name; wins over the body.", MODEL_NAME
)
MODELS_QUERY = query_parameter(
    "models",
    "Repeat it (`?models=svc&models=random_forest`) or separate names with commas; wins over the body.",
    {
        "type": "array",
        "items": {"type": "string", "pattern": COMMA_SEPARATED_NAMES, "maxLength": MODEL_NAME_MAX_LENGTH},
    },
)
ENDPOINTS = [
    Endpoint("GET", "/", welcome, operation(TAG, "Welcome message and the list of endpoints", Welcome)),
    Endpoint(
        "GET",
        "/health",
        health,
        operation(TAG, "Whether MODELS_DIR is readable, and how many models it holds", Health, FOLDER_ERRORS),
    ),
    Endpoint(
        "GET",
        "/models",
        list_models,
        operation(TAG, "The model files in MODELS_DIR now, and the routes beside them", ModelList, FOLDER_ERRORS),
    ),
    # Before /models/{name:path}, which would take /models/x/drift for a model named "x/drift".
    Endpoint(
        "GET",
        "/models/{name}/drift",
        model_drift,
        operation(
            TAG,
            "One model's drift figures: its recent records against its training rows",
            ModelDrift,
            DRIFT_ERRORS,
            parameters=[path_parameter("name", MODEL_NAME)],
        ),
    ),
    PERFORMANCE_ENDPOINT,
    Endpoint("GET", "/monitor", monitor, MONITOR_PAGE),
    ROUTE_ENDPOINT,
    # :path so that "../x" reaches the handler and gets its 400, instead of a bare routing 404.
    Endpoint(
        "GET",
        "/models/{name:path}",
        describe_model,
        operation(
            TAG, "One model's metadata", ModelInfo, MODEL_ERRORS, parameters=[path_parameter("name", MODEL_NAME)]
        ),
    ),
    Endpoint(
        "POST",
        "/predict",
        predict_records,
        routed(
            operation(
                TAG,
                "Species and probabilities from one model, or from one variant of a route",
                PredictResponse,
                ERRORS,
                parameters=[MODEL_QUERY],
                requestBody=request_body(PredictRequest, PREDICT_EXAMPLE),
            )
        ),
    ),
    Endpoint(
        "POST",
        "/predict/compare",
        compare,
        operation(
            TAG,
            "The same records through several models, side by side",
            CompareResponse,
            ERRORS,
            parameters=[MODELS_QUERY],
            requestBody=request_body(CompareRequest, COMPARE_EXAMPLE),
        ),
    ),
    FEEDBACK_ENDPOINT,
    Endpoint(
        "POST",
        "/predict/{model_name:path}",
        predict_with_model,
        routed(
            operation(
                TAG,
                "Species and probabilities from the named model or route (as /predict?model=...)",
                PredictResponse,
                ERRORS,
                parameters=[path_parameter("model_name", MODEL_NAME)],
                requestBody=request_body(PredictRequest, PREDICT_EXAMPLE),
            )
        ),
    ),
]
SCHEMAS: list[Schema] = [
    PredictRequest,
    CompareRequest,
    PredictResponse,
    CompareResponse,
    ModelInfo,
    ModelList,
    ModelDrift,
    Welcome,
    Health,
    ErrorDetail,
    ValidationErrorDetail,
    *FEEDBACK_SCHEMAS,
    *ROUTE_SCHEMAS,
]
