"""app/logs.py: log lines, text or JSON, that carry the request's ID, from the app and from a live server.

The access log is written by app/request_id.py's middleware and checked here, where its lines are read; the ID's
own rules (echoed, replaced, on every answer) are in tests/test_app_request_id.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.http import INTERNAL_ERROR
from app.logs import JsonFormatter, RequestFilter, TextFormatter
from app.main import EXCEPTION_HANDLERS
from app.request_id import RequestIdMiddleware
from tests.helpers import RECORD
from tests.live import LiveServer, start_server, uvicorn_in_thread


def app_with(handler: Any) -> Starlette:
    """One route behind the request-ID middleware, with the app's own exception handlers."""
    return Starlette(
        routes=[Route("/", handler)],
        middleware=[Middleware(RequestIdMiddleware, routes=[])],
        exception_handlers=EXCEPTION_HANDLERS,
    )


async def broken(request: Request) -> Response:
    raise RuntimeError("boom")


def test_a_handler_reads_the_id_from_request_state() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(request.state.request_id)

    with TestClient(app_with(echo)) as client:
        response = client.get("/", headers={"X-Request-ID": "state-1"})
        generated = client.get("/")
    assert response.text == "state-1"
    assert generated.text == generated.headers["x-request-id"]


def test_an_unhandled_error_answers_500_with_the_id_and_reaches_the_server() -> None:
    with TestClient(app_with(broken), raise_server_exceptions=False) as client:
        response = client.get("/", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": INTERNAL_ERROR}
    assert response.headers["x-request-id"] == "crash-1"
    # The exception goes on to the server, whose job it is to log it.
    with TestClient(app_with(broken)) as client, pytest.raises(RuntimeError, match="boom"):
        client.get("/")


def test_the_server_logs_an_unhandled_error_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestFilter())
    with uvicorn_in_thread(app_with(broken)) as url:
        response = httpx.get(url, headers={"X-Request-ID": "crash-2"}, timeout=10)
    assert (response.status_code, response.headers["x-request-id"]) == (500, "crash-2")
    (logged,) = [entry for entry in caplog.records if entry.exc_info]
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "boom"
    assert getattr(logged, "request_id", None) == "crash-2"


def record(**extra: Any) -> logging.LogRecord:
    entry = logging.LogRecord("app.access", logging.INFO, __file__, 1, "%s done", ("GET /models",), None)
    entry.__dict__.update(extra)
    return entry


def test_a_json_line_has_the_fields_and_nothing_unset() -> None:
    line = JsonFormatter().format(record(request_id="r-1", method="GET", route="/models", status=200, model=None))
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "INFO", "logger": "app.access", "message": "GET /models done",
        "request_id": "r-1", "method": "GET", "route": "/models", "status": 200,
    }  # fmt: skip


def test_a_text_line_reads_like_uvicorns_and_names_the_request() -> None:
    line = TextFormatter().format(record(request_id="r-1", model="svc", records=2))
    assert line == "INFO:     app.access: GET /models done model=svc records=2 request_id=r-1"


def test_json_logs_of_a_live_server_parse_and_carry_the_request_id(models_dir: Path, tmp_path: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    log = tmp_path / "server.log"
    # The client's address: X-Forwarded-For counts from a proxy FORWARDED_ALLOW_IPS trusts (this one, loopback).
    settings = {"LOG_FORMAT": "json", "ACCESS_LOG": "1", "FORWARDED_ALLOW_IPS": "127.0.0.0/8"}
    with start_server(models_dir, log, workers=2, settings=settings) as server:
        headers = {"X-Request-ID": "json-1", "X-Forwarded-For": "203.0.113.7"}
        predicted = httpx.post(f"{server.url}/predict?model=svc", json={"records": [RECORD] * 2}, headers=headers)
        broken = httpx.post(
            f"{server.url}/predict/broken", json={"records": [RECORD]}, headers={"X-Request-ID": "json-2"}
        )
    assert (predicted.status_code, broken.status_code) == (200, 500)
    assert predicted.headers["x-request-id"] == "json-1"
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    # Python itself, not logging, warns of the socket uvicorn's parent process leaves open at exit.
    assert all("ResourceWarning" in line or line.startswith("Exception ignored") for line in lines if line[:1] != "{")
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    (access,) = [entry for entry in entries if entry["logger"] == "app.access" and entry.get("request_id") == "json-1"]
    assert access["duration_ms"] > 0
    assert access["client"].startswith("203.0.113.7:")
    assert {key: access[key] for key in ["method", "route", "status", "model", "records"]} == {
        "method": "POST", "route": "/predict", "status": 200, "model": "svc", "records": 2,
    }  # fmt: skip
    load_failures = [entry for entry in entries if entry.get("file") == "broken.pkl"]
    assert [(entry["level"], entry["request_id"]) for entry in load_failures] == [("ERROR", "json-2")]
    assert load_failures[0]["reason"].startswith("cannot be loaded: it cannot be unpickled")


def test_text_access_log_names_the_request(models_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    # Only 192.0.2.1 is a trusted proxy: the X-Forwarded-For of a client on loopback is not believed.
    with start_server(models_dir, log, settings={"ACCESS_LOG": "1", "FORWARDED_ALLOW_IPS": "192.0.2.1"}) as server:
        headers = {"X-Request-ID": "text-1", "X-Forwarded-For": "203.0.113.7"}
        httpx.get(f"{server.url}/models/svc", headers=headers)
    (line,) = [line for line in log.read_text().splitlines() if "app.access" in line and "request_id=text-1" in line]
    assert line.startswith("INFO:     app.access: 127.0.0.1:")
    assert '"GET /models/svc HTTP/1.1" 200' in line


def test_no_access_log_unless_asked_for(live_server: LiveServer) -> None:
    httpx.get(f"{live_server.url}/models", headers={"X-Request-ID": "quiet-1"})
    httpx.get(f"{live_server.url}/health")  # answered after the first one's line would have been written
    assert "quiet-1" not in live_server.log.read_text()
    assert "app.access" not in live_server.log.read_text()
