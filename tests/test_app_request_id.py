"""app/request_id.py: every answer carries the request's ID (the client's when sane, else a new one), and
X-Served-By names the host when SERVED_BY asks for it. The access log it writes is checked in test_app_logs.py."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from app.logs import RANDOM_BATCH, new_request_id
from app.request_id import client_request_id, identity_headers
from tests.helpers import RECORD

NEW_ID = re.compile(r"[0-9a-f]{32}")
BODY = json.dumps({"records": [RECORD]}).encode()


@pytest.mark.parametrize(
    "sent",
    [pytest.param("abc", id="short"), pytest.param("x" * 128, id="128-chars"), pytest.param("a:b/c-1!~", id="signs")],
)
def test_a_sane_client_id_is_echoed(client: TestClient, sent: str) -> None:
    response = client.get("/health", headers={"X-Request-ID": sent})
    assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x" * 129, id="129-chars"),
        pytest.param(b"has space", id="space"),
        pytest.param(b"tab\there", id="control"),
        pytest.param("caf\u00e9".encode(), id="not-ascii"),
    ],
)
def test_an_insane_client_id_is_replaced_by_a_new_one(client: TestClient, sent: bytes) -> None:
    response = client.get("/health", headers=[(b"x-request-id", sent)])
    assert NEW_ID.fullmatch(response.headers["x-request-id"])


def test_each_request_gets_its_own_id(client: TestClient) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20
    assert all(NEW_ID.fullmatch(value) for value in ids)


def test_a_new_id_is_a_uuid7_of_the_time_it_was_given() -> None:
    before = time.time_ns() // 1_000_000
    given = new_request_id()
    after = time.time_ns() // 1_000_000
    found = uuid.UUID(hex=given)
    assert (found.version, found.variant) == (7, uuid.RFC_4122)
    assert before <= found.int >> 80 <= after


def test_new_ids_sort_by_when_they_were_given() -> None:
    # The capture store's request index relies on it: ids of later milliseconds sort after earlier ones.
    earlier = [new_request_id() for _ in range(50)]
    time.sleep(0.002)
    later = [new_request_id() for _ in range(50)]
    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 100


def test_new_ids_stay_unique_across_refills_of_the_random_pool() -> None:
    ids = [new_request_id() for _ in range(3 * RANDOM_BATCH + 7)]  # several system calls' worth of random bits
    assert len(set(ids)) == len(ids)
    assert len({value[-20:] for value in ids}) == len(ids)  # the random part alone, whatever the millisecond


def test_a_forked_child_does_not_give_out_its_parents_next_ids() -> None:
    new_request_id()  # the pool is full now, in this process
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe, then leaves at once
        os.write(writing, new_request_id().encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    childs = os.read(reading, 64).decode()
    os.close(reading)
    assert childs[-20:] != new_request_id()[-20:]


def test_no_served_by_header_unless_asked_for(client: TestClient) -> None:
    assert "x-served-by" not in client.get("/health").headers


@pytest.mark.parametrize("path", [pytest.param("/health", id="answer"), pytest.param("/v2/nowhere", id="error")])
def test_served_by_names_this_host_on_every_answer(make_client: Callable[..., TestClient], path: str) -> None:
    response = make_client(served_by=True).get(path)
    assert response.headers["x-served-by"] == socket.gethostname()
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("GET", "/no/such/path", b"", 404, id="unknown-path"),
        pytest.param("POST", "/predict?model=..%2Fx", BODY, 400, id="bad-name"),
        pytest.param("POST", "/predict?model=nothing", BODY, 404, id="unknown-model"),
        pytest.param("DELETE", "/models", b"", 405, id="wrong-method"),
        pytest.param("POST", "/predict", b"{", 422, id="invalid-body"),
    ],
)
def test_an_error_answer_carries_the_id_too(
    client: TestClient, method: str, path: str, body: bytes, status: int
) -> None:
    response = client.request(method, path, content=body, headers={"X-Request-ID": "err-1"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "err-1"


def test_the_client_id_is_read_from_the_scope_only_when_sane() -> None:
    assert client_request_id({"headers": [(b"x-request-id", b"abc-1")]}) == "abc-1"
    assert client_request_id({"headers": [(b"x-request-id", b"two words")]}) is None
    assert client_request_id({"headers": []}) is None


def test_an_answer_made_outside_the_middleware_gets_the_same_identity_headers() -> None:
    state = {"request_id": "id-1", "served_by": b"host-a"}
    assert identity_headers({"state": state}) == {"x-request-id": "id-1", "x-served-by": "host-a"}
    assert identity_headers({}) == {}
