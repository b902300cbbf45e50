"""Process faults under load (marker `soak`, `make test-soak`): a worker killed, the server told to stop.

Real uvicorn (`python -m app`) on 127.0.0.1; each test bounded in time and stops by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.config import WORKER_HEALTHCHECK_SECONDS
from tests.helpers import RECORD, wait_for
from tests.live import LiveServer, needs_proc, start_server

pytestmark = [pytest.mark.soak, needs_proc]

CLIENTS = 6
# Between two requests of a client: steady load that leaves a CPU for the replacement worker to start on.
PACE = 0.01
GRACEFUL_TIMEOUT = 5
RESPAWN_SECONDS = 10
BODY = b'{"records": [{"island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, ' + (
    b'"flipper_length_mm": 181, "body_mass_g": 3750, "sex": "Male"}]}'
)


@pytest.fixture
def live_models(trained_models_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(trained_models_dir, folder)
    return folder


def is_dead(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def workers(server: LiveServer) -> set[int]:
    """The worker processes uvicorn's supervisor runs now (multiprocessing's spawned children)."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if parent == server.process.pid and b"spawn_main" in command:
            children.add(int(entry.name))
    return children


def serving_workers(server: LiveServer) -> int:
    """Workers that finished starting and have not died since, as the server's log tells."""
    log = server.log.read_text()
    return log.count("Application startup complete") - log.count("] died")


@dataclass
class Load:
    """Clients sending one-record predicts, each on a new connection; every result with its start time."""

    url: str
    results: list[tuple[float, bool, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> None:
        # Connection: close: a new connection each time, so a request fails only if the killed worker held it.
        with httpx.Client(base_url=self.url, timeout=30, headers={"Connection": "close"}) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/predict", json={"records": [RECORD]})
                    self.results.append((started, response.status_code == 200, str(response.status_code)))
                except httpx.TransportError as error:
                    self.results.append((started, False, repr(error)))
                time.sleep(PACE)


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(live_models: Path, tmp_path: Path) -> None:
    with start_server(live_models, tmp_path / "server.log", workers=2) as server:
        wait_for(lambda: len(workers(server)) == 2, 30, "both workers to start")
        load = Load(server.url)
        threads = [threading.Thread(target=load.client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(2)
            victim = min(workers(server))
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: is_dead(victim), 30, f"worker {victim} to die", interval=0.01)
            dead_at = time.monotonic()
            back_at = None
            while time.monotonic() - killed_at < RESPAWN_SECONDS + 5:
                replaced = f"Child process [{victim}] died" in server.log.read_text()
                if back_at is None and replaced and serving_workers(server) == 2:
                    back_at = time.monotonic()
                time.sleep(0.1)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join()
        log = server.log.read_text()

    failures = [(started, detail) for started, ok, detail in load.results if not ok]
    after_death = [ok for started, ok, _ in load.results if started > dead_at]
    first_success = min(started for started, ok, _ in load.results if ok and started > killed_at)
    print(
        f"\n{len(load.results)} requests, {len(failures)} failed (in flight on the killed worker); "
        f"first answer after the kill {first_success - killed_at:.3f} s; "
        f"worker back after {(back_at or float('nan')) - killed_at:.1f} s"
    )
    assert len(failures) <= CLIENTS, failures  # at most the one request each client had in flight
    assert all(started < dead_at for started, _ in failures), failures
    assert after_death and all(after_death)  # the survivor answered every later request
    assert first_success - killed_at < 1
    assert back_at is not None and back_at - killed_at < RESPAWN_SECONDS, log[-2000:]
    assert f"Child process [{victim}] died" in log


def test_a_worker_killed_while_the_supervisor_awaits_its_health_check_is_replaced_at_once(
    live_models: Path, tmp_path: Path
) -> None:
    """Stopped first, the worker cannot answer the supervisor's ping, which then waits on it; killed meanwhile, it
    must be replaced in seconds, not after the health check's whole timeout (WORKER_HEALTHCHECK_SECONDS)."""
    with start_server(live_models, tmp_path / "server.log", workers=2) as server:
        wait_for(lambda: serving_workers(server) == 2 and len(workers(server)) == 2, 60, "both workers to start")
        victim = min(workers(server))
        os.kill(victim, signal.SIGSTOP)
        time.sleep(2)  # the supervisor checks each worker every 0.5 s: a ping now waits on the stopped one
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: f"Child process [{victim}] died" in server.log.read_text(), RESPAWN_SECONDS,
                 f"the supervisor to see worker {victim} die")  # fmt: skip
        seen_after = time.monotonic() - killed_at
        wait_for(lambda: serving_workers(server) == 2, 60, "the new worker to start")
        assert httpx.post(f"{server.url}/predict", content=BODY, timeout=10).status_code == 200
    print(f"\nthe supervisor saw the killed worker die after {seen_after:.1f} s")
    assert seen_after < WORKER_HEALTHCHECK_SECONDS / 2


def in_flight(where: tuple[str, int]) -> socket.socket:
    """A predict whose head and half its body are sent: the app is waiting for the rest."""
    sock = socket.create_connection(where, timeout=30)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    sock.sendall(head.encode() + BODY[:40])
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; then this side closes too."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


def address(server: LiveServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(live_models: Path, tmp_path: Path) -> None:
    settings = {"GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT)}
    with start_server(live_models, tmp_path / "server.log", settings=settings) as server:
        httpx.post(f"{server.url}/predict", json={"records": [RECORD]}).raise_for_status()
        where = address(server)
        requests = [in_flight(where) for _ in range(4)]
        time.sleep(0.2)  # the server has read their heads
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(where, timeout=5).close()
        for sock in requests:
            sock.sendall(BODY[40:])
        answers = [answer(sock) for sock in requests]
        server.process.wait(timeout=GRACEFUL_TIMEOUT + 5)
        exited_after = time.monotonic() - stopped_at
    print(f"\nexited {exited_after:.2f} s after SIGTERM")
    assert all(reply.startswith(b"HTTP/1.1 200 ") and b'"predictions":["Adelie"]' in reply for reply in answers)
    assert exited_after < GRACEFUL_TIMEOUT


def test_sigterm_exits_within_the_graceful_timeout_despite_a_stuck_request(live_models: Path, tmp_path: Path) -> None:
    settings = {"GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT), "BODY_TIMEOUT": "60"}
    with start_server(live_models, tmp_path / "server.log", settings=settings) as server:
        stuck = in_flight(address(server))  # never sends the rest of its body
        time.sleep(0.2)
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)
        exited_after = time.monotonic() - stopped_at
        stuck.close()
    print(f"\nexited {exited_after:.2f} s after SIGTERM with a request stuck")
    assert GRACEFUL_TIMEOUT - 1 < exited_after < GRACEFUL_TIMEOUT + 2
    assert "timeout graceful shutdown exceeded" in server.log.read_text()
