"""The Open Inference Protocol (V2) REST front-end: KServe's and Triton's paths over the protocol-neutral core.

Health, server and model metadata, inference (JSON, and Triton's binary tensor data extension), and the model
repository extension. Errors answer {"error": "<one sentence>"} with the status the core's failure kind has.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app.dataplane import DataPlane
from app.errors import ModelLoadFailed, ModelNotFound, ServingError
from app.features import CATEGORICAL, FEATURES
from app.http import (
    INLINE_BODY_BYTES,
    INLINE_BUDGET_SECONDS,
    Endpoint,
    FastJSONResponse,
    RequestInvalid,
    Routed,
    data_plane,
    get_model,
    get_routed_model,
    run_inline_or_threaded,
    whole_body,
)
from app.openapi import (
    API_VERSION,
    MODEL_NAME,
    ErrorDoc,
    Schema,
    json_content,
    operation,
    path_parameter,
    ref,
    request_body,
    routed,
)
from app.registry import LoadedModel
from app.routes import Route, plain
from app.rules import SUFFIX
from app.v2.codec import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    PREDICT,
    PREDICT_PROBA,
    Decoded,
    decode,
    encode,
    output_names,
)
from app.v2.types import (
    EXAMPLE_REQUEST,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    RepositoryIndex,
    RepositoryIndexRequest,
    RepositoryModel,
    ServerLive,
    ServerMetadata,
    ServerReady,
    V2Error,
)

TAG = "Open Inference Protocol (V2)"
SERVER_NAME = "penguins-api"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
PLATFORM = "sklearn"
# A false health or readiness answer: the specification asks for a 4xx status.
NOT_READY = 400


async def server_metadata(request: Request) -> Response:
    return FastJSONResponse({"name": SERVER_NAME, "version": API_VERSION, "extensions": EXTENSIONS})


async def live(request: Request) -> Response:
    return FastJSONResponse({"live": True})


async def ready(request: Request) -> Response:
    ok = await run_in_threadpool(data_plane(request).ready)
    return FastJSONResponse({"ready": ok}, status_code=200 if ok else NOT_READY)


async def model_metadata(request: Request) -> Response:
    route = _route(request)
    if route is not None:
        return FastJSONResponse(route_metadata(route, await _variants(data_plane(request), route)))
    return FastJSONResponse(metadata(await _model(request)))


async def model_ready(request: Request) -> Response:
    """A route is ready when every variant it can send a request to is."""
    route = _route(request)
    try:
        if route is not None:
            await _variants(data_plane(request), route)
            return FastJSONResponse({"name": route.name, "ready": True})
        model = await _model(request)
    except ModelLoadFailed:
        return FastJSONResponse({"name": _stem(request.path_params["name"]), "ready": False}, status_code=NOT_READY)
    return FastJSONResponse({"name": model.stem, "ready": True})


async def infer(request: Request) -> Response:
    """A model's name, or a route's: then one of its variants answers, named in model_name and X-Route-Variant."""
    plane = data_plane(request)
    routed = await _routed(request)
    model = routed.model
    body = await whole_body(request)
    header = request.headers.get(HEADER_LENGTH)
    request_id = getattr(request.state, "request_id", None)
    if len(body) > INLINE_BODY_BYTES:
        # A big request pays for one thread hop, not one per step.
        content, length = await run_in_threadpool(_answer, plane, routed, body, header, request_id)
    else:
        decoded = decode(body, header, plane.settings.max_records)
        inline = model.estimated_seconds(len(decoded.batch)) <= INLINE_BUDGET_SECONDS
        content, length = await run_inline_or_threaded(inline, _predict_and_encode, plane, routed, decoded, request_id)
    if length:
        return routed.answer(content, BINARY_CONTENT_TYPE, {HEADER_LENGTH: str(length)})
    return routed.answer(content, "application/json")


def _answer(
    plane: DataPlane, routed: Routed, body: bytes, header: str | None, request_id: str | None
) -> tuple[bytes, int]:
    return _predict_and_encode(plane, routed, decode(body, header, plane.settings.max_records), request_id)


def _predict_and_encode(
    plane: DataPlane, routed: Routed, decoded: Decoded, request_id: str | None
) -> tuple[bytes, int]:
    """The answer's bytes, and its JSON part's length when binary tensors follow (else 0).

    Its id is the client's, else the request's own (given by a middleware), else a new one.
    """
    model = routed.model
    outputs = output_names(model, decoded)
    prediction = plane.predict(model, decoded.batch, decoded.id, routed.route)
    return encode(model, prediction, outputs, decoded.id or request_id or uuid4().hex)


async def repository_index(request: Request) -> Response:
    body = await whole_body(request)
    only_ready = _parse(RepositoryIndexRequest, body).ready if body.strip() else None
    plane = data_plane(request)
    entries = [_index_entry(plane, name) for name in await run_in_threadpool(plane.available)]
    entries += [_route_entry(plane, route) for route in await run_in_threadpool(plane.route_list)]
    return FastJSONResponse([entry for entry in entries if not only_ready or entry["state"] == "READY"])


async def load(request: Request) -> Response:
    """A route's name loads every variant it can send a request to."""
    plane = data_plane(request)
    route = _route(request)
    if route is not None:
        await _variants(plane, route)
        return FastJSONResponse({"name": route.name, "version": None, "state": "READY", "reason": ""})
    model = await run_in_threadpool(plane.load, request.path_params["name"])
    return FastJSONResponse({"name": model.stem, "version": model.version, "state": "READY", "reason": ""})


async def unload(request: Request) -> Response:
    """A route's name unloads all its variants."""
    name = request.path_params["name"]
    plane = data_plane(request)
    route = _route(request)
    for model_name in [name] if route is None else list(route.spec.variants):
        await run_in_threadpool(plane.unload, model_name)
    reason = "unloaded; the next request for it loads it again"
    return FastJSONResponse({"name": _stem(name), "version": None, "state": "UNAVAILABLE", "reason": reason})


def metadata(model: LoadedModel) -> dict[str, Any]:
    classes = list(model.predictor.classes)
    outputs = [{"name": PREDICT, "datatype": "BYTES", "shape": [-1]}]
    if model.predictor.has_probabilities:
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)]})
    inputs = [
        {"name": name, "datatype": "BYTES" if name in CATEGORICAL else "FP64", "shape": [-1]} for name in FEATURES
    ]
    return {
        "name": model.stem,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"classes": classes, **_reference_accuracy(model)},
    }


def _reference_accuracy(model: LoadedModel) -> dict[str, float]:
    """The accuracy expected from training and its 95 % interval, as flat parameters; none for a file without it."""
    reference = model.reference_accuracy
    if reference is None:
        return {}
    return {
        "reference_accuracy": reference.mean,
        "reference_accuracy_lower": reference.lower,
        "reference_accuracy_upper": reference.upper,
    }


def route_metadata(route: Route, variants: list[LoadedModel]) -> dict[str, Any]:
    """A route's metadata: what every variant takes, the outputs they all give, its variants and weights.

    It has no versions of its own: each answer's model_version is the version of the variant that made it.
    """
    described = [metadata(model) for model in variants]
    outputs = [output for output in described[0]["outputs"] if all(output in other["outputs"] for other in described)]
    parameters = {"classes": described[0]["parameters"]["classes"], "route": _route_parameters(route)}
    return {**described[0], "name": route.name, "versions": [], "outputs": outputs, "parameters": parameters}


def _route_parameters(route: Route) -> dict[str, Any]:
    return {key: value for key, value in plain(route).items() if key != "name"}


def _route(request: Request) -> Route | None:
    """The route the path names, when it names one (and no version: a route has none)."""
    if "version" in request.path_params:
        return None
    return data_plane(request).route(request.path_params["name"])


async def _variants(plane: DataPlane, route: Route) -> list[LoadedModel]:
    """The variants a request can reach, loaded."""
    return [await get_model(plane, name) for name in route.weighted]


async def _routed(request: Request) -> Routed:
    if "version" in request.path_params:
        return Routed(await _model(request), None)
    return await get_routed_model(data_plane(request), request.path_params["name"], request)


async def _model(request: Request) -> LoadedModel:
    """The named model, loaded if needed; a version other than the loaded file's is unknown."""
    model = await get_model(data_plane(request), request.path_params["name"])
    version = request.path_params.get("version")
    if version is not None and version != model.version:
        raise ModelNotFound(f"Model {model.stem} has no version {version[:64]!r}; its version is {model.version}.")
    return model


def _index_entry(plane: DataPlane, file_name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": _stem(file_name), "version": None, "state": "UNAVAILABLE"}
    try:
        model = plane.cached(file_name)
    except ServingError as error:
        return {**entry, "reason": error.detail}
    if model is None:
        return {**entry, "reason": "not loaded yet; the first request for it loads it"}
    return {**entry, "version": model.version, "state": "READY", "reason": ""}


def _route_entry(plane: DataPlane, route: Route) -> dict[str, Any]:
    """A route in the index: READY when every variant it can reach is loaded, else the first one's reason."""
    entry: dict[str, Any] = {"name": route.name, "version": None, "route": _route_parameters(route)}
    for variant in route.weighted:
        state = _index_entry(plane, variant + SUFFIX)
        if state["state"] != "READY":
            return {**entry, "state": "UNAVAILABLE", "reason": f"variant {variant}: {state['reason']}"}
    return {**entry, "state": "READY", "reason": ""}


def _stem(name: str) -> str:
    return name.removesuffix(SUFFIX)


def _parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise RequestInvalid.from_pydantic(error, "body") from None


# --- the route table and its OpenAPI operations -------------------------------------------------

MODEL_PARAMETERS = [path_parameter("name", MODEL_NAME)]
VERSION_PARAMETERS = [*MODEL_PARAMETERS, path_parameter("version", {"type": "string"})]
ERRORS: dict[int, ErrorDoc] = {
    400: (V2Error, "Bad request: a model name that is not a plain file name, or an input that cannot be used."),
    404: (V2Error, "No such model in MODELS_DIR, or not that version of it."),
    413: (V2Error, "More records than MAX_RECORDS."),
    500: (V2Error, "The model file cannot be loaded."),
    503: (V2Error, "MODELS_DIR is not readable."),
}
MODEL_ERRORS = {status: ERRORS[status] for status in (400, 404, 500, 503)}
FOLDER_ERRORS = {503: ERRORS[503]}
INFER_DESCRIPTION = (
    "One input tensor per feature, shape [N] or [N, 1]. Triton's binary tensor data extension is accepted too: "
    "with an `Inference-Header-Content-Length` header, the JSON is followed by the raw tensors "
    "(`parameters.binary_data_size` on each), and outputs come back binary when asked "
    "(`parameters.binary_data` on an output, `parameters.binary_data_output` on the request)."
)


def _infer_operation(summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    spec = routed(
        operation(TAG, summary, InferenceResponse, ERRORS, parameters=parameters, description=INFER_DESCRIPTION)
    )
    spec["requestBody"] = request_body(InferenceRequest, EXAMPLE_REQUEST)
    success = spec["responses"]["200"]["content"]
    success[BINARY_CONTENT_TYPE] = {"schema": {"type": "string", "format": "binary"}}
    return spec


def _ready_operation(
    summary: str, answer: type[BaseModel], errors: dict[int, ErrorDoc] | None = None, **extra: Any
) -> dict[str, Any]:
    spec = operation(TAG, summary, answer, errors, **extra)
    not_ready = ref(answer) if errors is None else {"anyOf": [ref(answer), ref(V2Error)]}
    spec["responses"][str(NOT_READY)] = json_content(not_ready, "Not ready; or a model name that is not a plain name.")
    return spec


def _model_endpoints(prefix: str, parameters: list[dict[str, Any]], versioned: str) -> list[Endpoint]:
    return [
        Endpoint("GET", prefix, model_metadata,
                 operation(TAG, f"Model metadata{versioned}", ModelMetadata, MODEL_ERRORS, parameters=parameters)),
        Endpoint("GET", f"{prefix}/ready", model_ready,
                 _ready_operation(f"Whether the model{versioned} loads and can predict", ModelReady,
                                  {404: ERRORS[404], 503: ERRORS[503]}, parameters=parameters)),
    ]  # fmt: skip


# Inference first: it is the path that carries the load.
ENDPOINTS = [
    Endpoint("POST", "/v2/models/{name}/infer", infer,
             _infer_operation("Predictions from the model, or from one variant of the route", MODEL_PARAMETERS)),
    Endpoint("POST", "/v2/models/{name}/versions/{version}/infer", infer,
             _infer_operation("Predictions from the model, at the given version", VERSION_PARAMETERS)),
    Endpoint("GET", "/v2", server_metadata, operation(TAG, "Server metadata", ServerMetadata)),
    Endpoint("GET", "/v2/health/live", live, operation(TAG, "The server is live", ServerLive)),
    Endpoint("GET", "/v2/health/ready", ready,
             _ready_operation("The models folder is readable and a model in it loads", ServerReady)),
    *_model_endpoints("/v2/models/{name}", MODEL_PARAMETERS, ""),
    *_model_endpoints("/v2/models/{name}/versions/{version}", VERSION_PARAMETERS, ", at the given version"),
    Endpoint("POST", "/v2/repository/index", repository_index,
             operation(TAG, "Every model file, READY when loaded; then every route", RepositoryIndex,
                       {400: ERRORS[400], **FOLDER_ERRORS},
                       requestBody={"required": False, **json_content(ref(RepositoryIndexRequest), "Filter.")})),
    Endpoint("POST", "/v2/repository/models/{name}/load", load,
             operation(TAG, "Load the model now", RepositoryModel, MODEL_ERRORS, parameters=MODEL_PARAMETERS)),
    Endpoint("POST", "/v2/repository/models/{name}/unload", unload,
             operation(TAG, "Drop the model from memory; its file stays, the next request loads it again",
                       RepositoryModel, {400: ERRORS[400], 404: ERRORS[404], 503: ERRORS[503]},
                       parameters=MODEL_PARAMETERS)),
]  # fmt: skip
SCHEMAS: list[Schema] = [
    InferenceRequest,
    InferenceResponse,
    ServerMetadata,
    ModelMetadata,
    ServerLive,
    ServerReady,
    ModelReady,
    RepositoryIndexRequest,
    RepositoryModel,
    RepositoryIndex,
    V2Error,
]
