"""What the HTTP front-ends share: the route table with its OpenAPI operations, status codes, the thread rule.

A front-end (app/original/, app/v2/) lists its endpoints once, as Endpoint rows: Starlette's routes and the
OpenAPI document's paths are both made from that list.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic_core
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route, compile_path
from starlette.types import Scope

from app.config import Settings
from app.dataplane import DataPlane
from app.errors import (
    InvalidInput,
    InvalidModelName,
    ModelLoadFailed,
    ModelNotFound,
    ModelOutsideFolder,
    ModelPredictFailed,
    ModelsFolderUnavailable,
    ServingError,
    StoreUnavailable,
    TooManyRecords,
)
from app.registry import LoadedModel
from app.routes import Route as ModelRoute  # not Starlette's Route: a routes.json route

# A prediction whose measured cost fits this runs on the event loop: a thread hop would cost as much.
INLINE_BUDGET_SECONDS = 0.0005
# Query strings up to this long are parsed once and kept, at most QUERIES_KEPT of them (about 0.3 MB at most).
QUERY_KEPT_BYTES = 256
QUERIES_KEPT = 1024
# Bodies up to this size (about 80 records) are parsed on the event loop, larger ones on a thread.
INLINE_BODY_BYTES = 16_384
# The scope's key for the body BodyLimit (app/limits.py) has read whole.
READ_BODY = "app.body"
STATUS_CODES: dict[type[ServingError], int] = {
    InvalidModelName: 400,
    ModelOutsideFolder: 400,
    InvalidInput: 400,
    ModelNotFound: 404,
    TooManyRecords: 413,
    ModelLoadFailed: 500,
    ModelPredictFailed: 500,
    ModelsFolderUnavailable: 503,
    StoreUnavailable: 503,
}
Handler = Callable[[Request], Awaitable[Response]]
# A dialect's error answer: status, one sentence, extra headers.
ErrorResponse = Callable[[int, str, "Mapping[str, str] | None"], Response]
T = TypeVar("T")
logger = logging.getLogger("app")
# A 500's whole answer, in either dialect: the cause goes to the log, never to the client.
INTERNAL_ERROR = "Internal server error; the cause is in the server log."
# The answer's header naming the variant a route chose.
ROUTE_VARIANT = "X-Route-Variant"
ROUTE_VARIANT_RAW = ROUTE_VARIANT.lower().encode("ascii")
# The route label of a request no route knows: one value however many paths are tried.
UNMATCHED = "<unmatched>"


class RequestInvalid(Exception):
    """A body or query did not validate against its dialect's schema; `errors` are pydantic's, located."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def from_pydantic(cls, error: ValidationError, where: str) -> RequestInvalid:
        """FastAPI's form: each error's location starts with where it was found ("body", "query")."""
        raw = error.errors(include_url=False, include_context=False, include_input=False)
        return cls([{"loc": [where, *item["loc"]], "msg": item["msg"], "type": item["type"]} for item in raw])


class FastJSONResponse(JSONResponse):
    """JSON rendered by pydantic-core's serializer (Rust), cheaper than json.dumps."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


@dataclass(frozen=True)
class Endpoint:
    """One method on one path: the handler, and its OpenAPI operation object."""

    method: str
    path: str  # Starlette's form, converters included: "/models/{name:path}"
    handler: Handler
    operation: dict[str, Any] = field(default_factory=dict)

    @property
    def documented_path(self) -> str:
        """The path as OpenAPI writes it: "/models/{name}"."""
        return compile_path(self.path)[1]


def routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """One Starlette route per endpoint; two methods on one path are two routes, which the router tells apart."""
    return [Route(endpoint.path, endpoint.handler, methods=[endpoint.method]) for endpoint in endpoints]


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that took the request ("/models/{name}"), never the raw path.

    The router leaves the route in the scope; an answer made before routing (a limit, a token) is matched here.
    """
    route = scope.get("route")
    if route is None:
        route = next((candidate for candidate in routes if candidate.matches(scope)[0] != Match.NONE), None)
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else UNMATCHED


def status_code(error: ServingError) -> int:
    """The error kind's status; a kind not in the table is the server's fault."""
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 500


def logged_status(request: Request, error: ServingError) -> int:
    """The error's status, for a dialect to answer with; a server fault is logged first, traceback and all."""
    status = status_code(error)
    if status >= 500:
        # The traceback (when there is one) goes to the log, never into the response.
        logger.error(
            "%s %s -> %d: %s", request.method, request.url.path, status, error.detail, exc_info=error.__cause__
        )
    return status


def settings_of(scope: Scope) -> Settings:
    """The settings the app started with, from the lifespan's state: a middleware has no Request."""
    settings: Settings = scope["state"]["settings"]
    return settings


def query_params(request: Request) -> QueryParams:
    """The request's query parameters. A client asks the same few queries over and over (?model=...): a short one
    is parsed once and the immutable result shared, where Starlette parses each request's again."""
    query: bytes = request.scope["query_string"]
    return _parsed_query(query) if len(query) <= QUERY_KEPT_BYTES else request.query_params


@functools.lru_cache(maxsize=QUERIES_KEPT)
def _parsed_query(query: bytes) -> QueryParams:
    return QueryParams(query)


def data_plane(request: Request) -> DataPlane:
    # From the lifespan state in the scope: request.state wraps it in an object at every request.
    plane: DataPlane = request.scope["state"]["data_plane"]
    return plane


async def run_inline_or_threaded(inline: bool, function: Callable[..., T], *args: Any) -> T:
    """Call on the event loop when cheap, else on a worker thread."""
    return function(*args) if inline else await run_in_threadpool(function, *args)


async def whole_body(request: Request) -> bytes:
    """The request's body, as app/limits.py's BodyLimit read it whole; read here only by an app without it."""
    body: bytes | None = request.scope.get(READ_BODY)
    return body if body is not None else await request.body()


async def parse_body(request: Request, parse: Callable[[bytes], T]) -> T:
    body = await whole_body(request)
    return await run_inline_or_threaded(len(body) <= INLINE_BODY_BYTES, parse, body)


async def get_model(plane: DataPlane, name: str | None) -> LoadedModel:
    """The model, loaded on a worker thread when it is not cached yet."""
    cached = plane.cached(name)
    return cached if cached is not None else await run_in_threadpool(plane.load, name)


@dataclass(frozen=True)
class Routed:
    """The model that answers a request, and the route that chose it (None: the request named the model)."""

    model: LoadedModel
    route: ModelRoute | None

    def answer(self, content: bytes, media_type: str, headers: Mapping[str, str] | None = None) -> Response:
        """The answer, with X-Route-Variant when a route was asked: added as raw bytes, one header cheaper to
        write than a mapping Starlette encodes at every request."""
        response = Response(content, media_type=media_type, headers=headers)
        if self.route is not None:
            response.raw_headers.append((ROUTE_VARIANT_RAW, self.model.stem.encode("ascii")))
        return response


async def get_routed_model(plane: DataPlane, name: str | None, request: Request) -> Routed:
    """A model's name gives that model; a route's, one of its variants, by its sticky header when the request has it."""
    # A name this worker knows as a route skips the model files (no folder scan to say there is none); any other
    # is looked up as a loaded model file first (no stat of routes.json), then as a route.
    model = None if plane.known_route(name) is not None else plane.cached_file(name)
    if model is not None:
        return Routed(model, None)
    route = plane.route(name)
    if route is None:
        return Routed(await get_model(plane, name), None)
    # The request's headers are parsed only for a route that reads one.
    sticky = None if route.sticky_header is None else request.headers.get(route.sticky_header)
    variant = plane.choose(route, sticky)
    model = plane.cached_file(variant)
    return Routed(model if model is not None else await get_model(plane, variant), route)
