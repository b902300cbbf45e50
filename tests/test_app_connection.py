"""app/connection.py under a real uvicorn: a head over MAX_HEAD_BYTES gets a 431, a head too slow is closed.

The protocol subclasses uvicorn's own (its docstring names what it relies on); these are the tests to run on a
uvicorn upgrade. The size limit is tried on the shared live server (`python -m app`, as the image runs it), the
deadline under uvicorn in a thread with HEADERS_TIMEOUT at 1 s.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app import connection
from app.connection import HEAD_TOO_LARGE, HEAD_TOO_LARGE_BODY, MAX_HEAD_BYTES, HeadLimitedProtocol, head_too_large
from tests.live import LiveServer, uvicorn_in_thread


def address(url: str) -> tuple[str, int]:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    return host, port


def everything_sent(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a reset, when it closed with bytes left unread)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def parsed(answer: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The status line, the headers but those uvicorn adds to every answer (date, server), and the body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines)
    return status, {name: value for name, value in headers.items() if name not in (b"date", b"server")}, body


# --- the size limit -----------------------------------------------------------------------------------


def test_a_header_over_the_size_limit_is_answered_431(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/models", headers={"X-Big": "a" * (MAX_HEAD_BYTES + 1)})
    assert response.status_code == 431
    assert response.content == HEAD_TOO_LARGE_BODY
    assert response.headers["connection"] == "close"


def test_a_large_head_within_the_limit_is_served(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/models", headers={"X-Fine": "a" * (MAX_HEAD_BYTES - 1000)})
    assert response.status_code == 200


def test_an_endless_header_is_cut_off_with_431_before_it_ends(live_server: LiveServer) -> None:
    with socket.create_connection(address(live_server.url), timeout=10) as sock:
        sock.sendall(b"GET /models HTTP/1.1\r\nX-Endless: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * 16_384)
        except OSError:
            pass  # the server closed the connection while this was still sending: what is tested
        answer = everything_sent(sock)
    assert answer == HEAD_TOO_LARGE


async def empty_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 204 to every request; takes no lifespan."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_the_431_of_a_completed_head_is_the_same_as_of_an_endless_one() -> None:
    # A head that completed is answered through uvicorn's cycle (head_too_large, an ASGI app); one still
    # arriving by bytes written on the socket (HEAD_TOO_LARGE). The client sees one answer either way.
    with uvicorn_in_thread(head_too_large, lifespan="off") as url, socket.create_connection(address(url)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = everything_sent(sock)
    assert parsed(answer) == parsed(HEAD_TOO_LARGE)
    assert parsed(answer)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"


# --- the deadline -------------------------------------------------------------------------------------


@pytest.fixture
def quick_deadline(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """A server whose clients have 1 s to send each request's head; its address."""
    monkeypatch.setenv("HEADERS_TIMEOUT", "1")
    connection.headers_timeout.cache_clear()
    try:
        with uvicorn_in_thread(empty_app, lifespan="off", http=HeadLimitedProtocol) as url:
            yield address(url)
    finally:
        connection.headers_timeout.cache_clear()


def test_a_connection_that_sends_nothing_is_closed_unanswered(quick_deadline: tuple[str, int]) -> None:
    with socket.create_connection(quick_deadline, timeout=10) as sock:
        assert everything_sent(sock) == b""


def test_a_head_that_stops_halfway_is_closed_unanswered(quick_deadline: tuple[str, int]) -> None:
    with socket.create_connection(quick_deadline, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half")
        assert everything_sent(sock) == b""


def test_the_next_head_on_a_kept_connection_has_its_own_deadline(quick_deadline: tuple[str, int]) -> None:
    with socket.create_connection(quick_deadline, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half")
        rest = everything_sent(sock)
    assert first.startswith(b"HTTP/1.1 204 ")
    assert rest == b""
