"""app/limits.py: a body over MAX_BODY_BYTES or slower than BODY_TIMEOUT, and a request over
MAX_CONCURRENT_REQUESTS, are refused in the path's own dialect. The attacks on a live server are in
test_attacks.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.limits import BodyLimit, ConcurrencyLimit
from app.main import DIALECTS
from app.original import ENDPOINTS
from tests.helpers import RECORD

BODY_ROUTES = [endpoint.path.replace("{model_name:path}", "svc") for endpoint in ENDPOINTS if endpoint.method == "POST"]

CHUNKED = [(b"transfer-encoding", b"chunked")]


def http_scope(path: str, settings: Settings, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or [], "state": {"settings": settings}}


class Exchange:
    """Drives one request through an ASGI app and keeps what it sent back."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode(): value.decode() for name, value in self.messages[0]["headers"]}

    @property
    def body(self) -> Any:
        return json.loads(b"".join(message.get("body", b"") for message in self.messages[1:]))


async def reading_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then answers 200 with its length, as the routes do."""
    message = await receive()
    assert message["more_body"] is False  # read already: the whole body in one message
    await JSONResponse({"bytes": len(message["body"])})(scope, receive, send)


def never_read() -> Receive:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    return receive


def chunks(*parts: bytes, pause: float = 0.0) -> Receive:
    queue = list(parts)

    async def receive() -> Message:
        await asyncio.sleep(pause)
        body = queue.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    return receive


def run(app: Any, scope: Scope, receive: Receive) -> Exchange:
    exchange = Exchange()
    asyncio.run(app(scope, receive, exchange.send))
    return exchange


# MAX_BODY_BYTES


@pytest.mark.parametrize(("path", "key"), [("/predict", "detail"), ("/v2/models/svc/infer", "error")])
def test_a_declared_length_over_the_limit_is_413_before_reading(tmp_path: Path, path: str, key: str) -> None:
    settings = Settings(models_dir=tmp_path, max_body_bytes=100)
    scope = http_scope(path, settings, [(b"content-length", b"101")])
    exchange = run(BodyLimit(reading_app, DIALECTS), scope, never_read())
    assert exchange.status == 413
    assert exchange.headers["connection"] == "close"  # the rest of the upload is not read
    assert exchange.body[key] == "The request body is 101 bytes; at most MAX_BODY_BYTES=100 bytes are accepted."


@pytest.mark.parametrize(("path", "key"), [("/predict/compare", "detail"), ("/v2/models/svc/infer", "error")])
def test_a_streamed_body_is_cut_off_at_the_limit(tmp_path: Path, path: str, key: str) -> None:
    settings = Settings(models_dir=tmp_path, max_body_bytes=100)
    receive = chunks(b"x" * 60, b"x" * 60, b"x")
    exchange = run(BodyLimit(reading_app, DIALECTS), http_scope(path, settings, CHUNKED), receive)
    assert exchange.status == 413
    assert exchange.body[key] == "The request body is over 100 bytes; at most MAX_BODY_BYTES=100 bytes are accepted."


def test_a_body_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, max_body_bytes=100)
    scope = http_scope("/predict", settings, [(b"content-length", b"100")])
    exchange = run(BodyLimit(reading_app, DIALECTS), scope, chunks(b"x" * 50, b"x" * 50))
    assert (exchange.status, exchange.body) == (200, {"bytes": 100})


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_every_body_route_refuses_a_body_over_the_limit(make_client: Callable[..., TestClient], path: str) -> None:
    client = make_client(max_body_bytes=1000)
    body = json.dumps({"records": [RECORD] * 20})
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The request body is {len(body)} bytes; at most MAX_BODY_BYTES=1000 bytes are accepted."
    }
    valid = {"request_id": "r", "label": "Adelie"} if path == "/feedback" else {"records": [RECORD]}
    assert client.post(path, json=valid).status_code == 200


def test_max_records_records_fit_the_default_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_records=1000)
    pretty = json.dumps({"records": [{**RECORD, "bill_length_mm": 39.123456789012345}] * 1000}, indent=4)
    response = client.post("/predict", content=pretty, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


# BODY_TIMEOUT


@pytest.mark.parametrize(("path", "key"), [("/predict", "detail"), ("/v2/models/svc/infer", "error")])
def test_a_body_slower_than_the_timeout_is_408(tmp_path: Path, path: str, key: str) -> None:
    settings = Settings(models_dir=tmp_path, body_timeout=1)
    receive = chunks(b"{", b"}", b"", pause=0.6)  # each piece on time, the whole too late
    exchange = run(BodyLimit(reading_app, DIALECTS), http_scope(path, settings, CHUNKED), receive)
    assert exchange.status == 408
    assert exchange.headers["connection"] == "close"
    assert exchange.body[key] == "The request body took longer than BODY_TIMEOUT=1 seconds to arrive."


def test_bodies_read_at_once_are_each_held_to_their_own_deadline(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, body_timeout=1)
    limit = BodyLimit(reading_app, DIALECTS)  # one middleware, one timer for every body it reads

    async def read_after(delay: float, pause: float) -> Exchange:
        await asyncio.sleep(delay)
        exchange = Exchange()
        await limit(http_scope("/predict", settings, CHUNKED), chunks(b"{", b"}", b"", pause=pause), exchange.send)
        return exchange

    async def scenario() -> list[Exchange]:
        # Late at 1.0 s; on time at 0.9 s; late at 1.8 s, after the timer has rung for the first.
        return list(await asyncio.gather(read_after(0, 0.45), read_after(0.3, 0.2), read_after(0.8, 0.45)))

    statuses = [exchange.status for exchange in asyncio.run(scenario())]
    assert statuses == [408, 200, 408]


def test_a_read_cancelled_from_elsewhere_stays_cancelled(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, body_timeout=30)
    exchange = Exchange()

    async def scenario() -> None:
        limit, scope = BodyLimit(reading_app, DIALECTS), http_scope("/predict", settings, CHUNKED)
        reading = asyncio.create_task(limit(scope, chunks(b"{", pause=5), exchange.send))
        await asyncio.sleep(0.1)
        reading.cancel()  # the server stopping, say: not the body's deadline
        with pytest.raises(asyncio.CancelledError):
            await reading

    asyncio.run(scenario())
    assert exchange.messages == []


def test_the_body_timeout_holds_in_each_new_event_loop(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, body_timeout=1)
    limit = BodyLimit(reading_app, DIALECTS)
    on_time = run(limit, http_scope("/predict", settings, CHUNKED), chunks(b"{}"))
    assert on_time.status == 200  # its loop ends with the timer still armed for its deadline
    # A second loop, as a second test client starts one.
    late = run(limit, http_scope("/predict", settings, CHUNKED), chunks(b"{", b"}", b"", pause=0.6))
    assert late.status == 408


# MAX_CONCURRENT_REQUESTS


def test_a_request_over_the_concurrency_limit_is_503_at_once(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, max_concurrent_requests=2)

    async def scenario() -> list[Exchange]:
        release = asyncio.Event()

        async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
            await release.wait()
            await JSONResponse({"ok": True})(scope, receive, send)

        limit = ConcurrencyLimit(slow_app, DIALECTS, exempt={"/health"})
        exchanges = [Exchange() for _ in range(6)]
        paths = ["/predict", "/predict", "/predict", "/v2/models/svc/infer", "/health", "/predict"]
        tasks = [
            asyncio.create_task(limit(http_scope(path, settings), never_read(), exchange.send))
            for path, exchange in zip(paths[:5], exchanges, strict=False)
        ]
        await asyncio.sleep(0.05)
        refused_at_once = [bool(exchange.messages) for exchange in exchanges[:5]]
        assert refused_at_once == [False, False, True, True, False]
        release.set()
        await asyncio.gather(*tasks)
        await limit(http_scope(paths[5], settings), never_read(), exchanges[5].send)  # free again
        return exchanges

    exchanges = asyncio.run(scenario())
    assert [exchange.status for exchange in exchanges] == [200, 200, 503, 503, 200, 200]
    assert exchanges[2].headers["retry-after"] == "1"
    assert exchanges[2].body["detail"].startswith("The server is busy: MAX_CONCURRENT_REQUESTS=2 requests")
    assert exchanges[3].body["error"].startswith("The server is busy")


# A body is read before its request is counted: slow senders hold no slot.


def test_a_body_still_arriving_holds_no_concurrency_slot(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, max_concurrent_requests=1)
    stack = BodyLimit(ConcurrencyLimit(reading_app, DIALECTS, exempt=()), DIALECTS)

    async def scenario() -> tuple[Exchange, Exchange]:
        slow, quick = Exchange(), Exchange()
        trickling = asyncio.create_task(
            stack(http_scope("/predict", settings, CHUNKED), chunks(b"{", b"}", b"", pause=0.2), slow.send)
        )
        await asyncio.sleep(0.05)
        await stack(http_scope("/predict", settings, [(b"content-length", b"2")]), chunks(b"{}"), quick.send)
        assert not slow.messages  # the quick one was answered while the slow one was still sending
        await trickling
        return slow, quick

    slow, quick = asyncio.run(scenario())
    assert (slow.status, quick.status) == (200, 200)


def test_bodies_being_read_share_a_budget_of_bytes(tmp_path: Path) -> None:
    # One working slot of 100 bytes: the bodies being read may hold 100 bytes together.
    settings = Settings(models_dir=tmp_path, max_concurrent_requests=1, max_body_bytes=100)
    limit = BodyLimit(reading_app, DIALECTS)

    async def scenario() -> list[Exchange]:
        exchanges = [Exchange() for _ in range(3)]
        first = asyncio.create_task(
            limit(http_scope("/predict", settings, CHUNKED), chunks(b"x" * 60, b"x", pause=0.2), exchanges[0].send)
        )
        await asyncio.sleep(0.3)  # the first holds 60 bytes and waits for its last one
        await limit(http_scope("/v2/models/svc/infer", settings, CHUNKED), chunks(b"y" * 60), exchanges[1].send)
        await first
        await limit(http_scope("/predict", settings, CHUNKED), chunks(b"z" * 60), exchanges[2].send)
        return exchanges

    exchanges = asyncio.run(scenario())
    assert [exchange.status for exchange in exchanges] == [200, 503, 200]
    assert exchanges[1].headers["retry-after"] == "1"
    assert exchanges[1].body["error"].startswith("The server is busy: the request bodies being read hold")
    assert limit.held == 0


def test_a_client_gone_while_sending_gets_no_answer_and_reaches_no_route(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path)

    async def gone() -> Message:
        return {"type": "http.disconnect"}

    limit = BodyLimit(reading_app, DIALECTS)
    exchange = run(limit, http_scope("/predict", settings, CHUNKED), gone)
    assert exchange.messages == []
    assert limit.held == 0
