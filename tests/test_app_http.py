"""app/http.py: what the front-ends share: the route table, each error kind's status, the route label, the
thread rule, the query parameters, the body read once. Each dialect's use of it is in
tests/test_original_endpoints.py and tests/test_v2_endpoints.py."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from app.errors import InvalidInput, ModelLoadFailed, ServingError, TooManyRecords
from app.http import (
    QUERY_KEPT_BYTES,
    READ_BODY,
    STATUS_CODES,
    UNMATCHED,
    Endpoint,
    FastJSONResponse,
    RequestInvalid,
    query_params,
    route_template,
    routes,
    run_inline_or_threaded,
    status_code,
    whole_body,
)


async def nothing(request: Request) -> Response:
    return Response()


ENDPOINTS = [
    Endpoint("GET", "/models/{name:path}", nothing),
    Endpoint("DELETE", "/models/{name:path}", nothing),
    Endpoint("POST", "/predict", nothing),
]


def scope(method: str, path: str) -> Scope:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


@pytest.mark.parametrize("kind", STATUS_CODES)
def test_each_error_kind_has_its_status(kind: type[ServingError]) -> None:
    assert status_code(kind("why")) == STATUS_CODES[kind]


def test_a_finer_kind_takes_its_parents_status() -> None:
    class UnknownIsland(InvalidInput):
        pass

    assert status_code(UnknownIsland("Atlantis")) == 400


def test_a_kind_the_table_does_not_know_is_the_servers_fault() -> None:
    assert status_code(ServingError("?")) == 500
    assert (status_code(ModelLoadFailed("x")), status_code(TooManyRecords("x"))) == (500, 413)


def test_a_path_is_documented_without_its_converter() -> None:
    assert ENDPOINTS[0].documented_path == "/models/{name}"


def test_two_methods_on_one_path_are_two_routes() -> None:
    table = routes(ENDPOINTS)
    assert [(route.path, route.methods) for route in table] == [
        ("/models/{name:path}", {"GET", "HEAD"}), ("/models/{name:path}", {"DELETE"}), ("/predict", {"POST"}),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        pytest.param("GET", "/models/svc", "/models/{name}", id="matched"),
        pytest.param("POST", "/models/svc", "/models/{name}", id="matched-but-not-its-method"),
        pytest.param("GET", "/wp-admin/setup.php", UNMATCHED, id="unknown-path"),
    ],
)
def test_the_route_label_is_the_template_never_the_raw_path(method: str, path: str, template: str) -> None:
    assert route_template(scope(method, path), routes(ENDPOINTS)) == template


def test_the_route_the_router_chose_is_taken_as_it_is() -> None:
    table = routes(ENDPOINTS)
    routed = {**scope("GET", "/wp-admin"), "route": table[2]}
    assert route_template(routed, table) == "/predict"


class Body(BaseModel):
    records: list[int]


def test_a_validation_error_is_located_where_it_was_found() -> None:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"records": [1, "many"]})
    invalid = RequestInvalid.from_pydantic(caught.value, "body")
    assert [(error["loc"], error["type"]) for error in invalid.errors] == [(["body", "records", 1], "int_parsing")]


def test_the_fast_json_response_renders_what_json_would_parse_back() -> None:
    content = {"model": "svc.pkl", "probabilities": [{"Adelie": 0.25}], "skipped": {}}
    assert json.loads(bytes(FastJSONResponse(content).body)) == content


def test_cheap_work_runs_on_the_event_loop_and_dear_work_on_a_thread() -> None:
    async def threads() -> tuple[str, str]:
        inline = await run_inline_or_threaded(True, lambda: threading.current_thread().name)
        threaded = await run_inline_or_threaded(False, lambda: threading.current_thread().name)
        return inline, threaded

    inline, threaded = asyncio.run(threads())
    assert inline == threading.current_thread().name
    assert threaded != inline


def query_request(query: bytes) -> Request:
    return Request({**scope("POST", "/predict"), "query_string": query})


@pytest.mark.parametrize(
    "query", [b"model=svc", b"models=svc,logistic_regression&models=random_forest", b"model=a%20b+c", b""]
)
def test_the_query_parameters_are_starlettes_own(query: bytes) -> None:
    assert query_params(query_request(query)).multi_items() == query_request(query).query_params.multi_items()


def test_a_short_query_is_parsed_once_and_a_long_one_at_every_request() -> None:
    assert query_params(query_request(b"model=svc")) is query_params(query_request(b"model=svc"))
    long = b"model=" + b"x" * QUERY_KEPT_BYTES
    first, second = query_params(query_request(long)), query_params(query_request(long))
    assert first is not second and first == second


# The body, read whole once


def request_with_body(body: bytes, read_by_body_limit: bool) -> tuple[Request, list[dict[str, object]]]:
    """A request whose body is still to be received, and the messages not received yet."""
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    if read_by_body_limit:
        scope[READ_BODY] = body
    unreceived: list[dict[str, object]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        return unreceived.pop()

    return Request(scope, receive), unreceived


def test_the_body_body_limit_read_is_taken_from_the_scope_without_reading_again() -> None:
    request, unreceived = request_with_body(b'{"records": []}', read_by_body_limit=True)
    assert asyncio.run(whole_body(request)) == b'{"records": []}'
    assert len(unreceived) == 1  # nothing received: BodyLimit has read it all


def test_without_body_limit_the_body_is_read_from_the_request() -> None:
    request, unreceived = request_with_body(b'{"records": []}', read_by_body_limit=False)
    assert asyncio.run(whole_body(request)) == b'{"records": []}'
    assert unreceived == []
