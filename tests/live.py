"""A live API server for the tests: `python -m app` in a subprocess, or an app object under uvicorn in a thread.

- start_server: `python -m app` (as the API image runs it) on a free loopback port.
- uvicorn_in_thread: an app object under a real uvicorn in a thread of this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from tests.helpers import ROOT, wait_for

# What the tests read of a live server's processes (memory, open files, workers) only Linux's /proc tells.
needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc, which only Linux has")
# Root reads any file whatever its mode; without these capabilities it obeys permissions like a user.
DROP_ROOT_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss_bytes(self) -> int:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) * 1024

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (none when it serves in the one process)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        # multiprocessing's spawned children; its resource tracker is a child too, but not a worker.
        return sorted(int(pid) for pid in children if _command(int(pid)).endswith("--multiprocessing-fork"))

    def wait_for_open_files(self, expected: int) -> None:
        """Until the server has closed the clients' connections: its open descriptors back to `expected`."""
        wait_for(lambda: self.open_files() == expected, 10, lambda: f"{expected} open files (now {self.open_files()})")

    def worker_environ(self, pid: int) -> dict[str, str]:
        entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def free_ports(count: int) -> list[int]:
    """`count` different free ports: each probe stays bound until all are found, or the system may give one twice."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def answers() -> bool:
        assert process.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
        try:
            httpx.get(f"{url}/health", timeout=2)
        except httpx.TransportError:
            return False
        return True

    wait_for(answers, 60, lambda: f"the server to answer at {url}: {log.read_text()[-3000:]}", interval=0.05)


@contextmanager
def start_server(
    models_dir: Path,
    log: Path,
    obey_permissions: bool = False,
    workers: int = 1,
    settings: Mapping[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Serve models_dir until the block ends. obey_permissions: a root server cannot read a mode-000 folder.

    settings: further environment variables of the server (MAX_BODY_BYTES, API_TOKEN, LOG_FORMAT, METRICS, ...).
    """
    port = free_port()
    env = {**os.environ, "MODELS_DIR": str(models_dir), "HOST": "127.0.0.1", "PORT": str(port)}
    env |= {"WEB_CONCURRENCY": str(workers), "PYTHONWARNINGS": "error", **(settings or {})}
    command = [sys.executable, "-m", "app"]
    if obey_permissions and os.geteuid() == 0:
        assert shutil.which("setpriv"), "setpriv (util-linux) is needed to test permissions as root"
        command = DROP_ROOT_OVERRIDES + command
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url, process, log)
        yield LiveServer(url, process, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it: -15 is its normal exit.
    printed = log.read_text()
    assert process.returncode in (0, -signal.SIGTERM), printed[-3000:]
    assert "Application shutdown complete" in printed, printed[-3000:]


@contextmanager
def uvicorn_in_thread(app: ASGIApp, **options: Any) -> Iterator[str]:
    """An app object under a real uvicorn in a thread of this process, on a free loopback port; yields its URL.

    For an app no settings of `python -m app` can make (a route that breaks), or one the test needs quickly: no
    new interpreter to start. It logs through the root logger, which pytest's caplog reads. options: further
    uvicorn.Config arguments (http=..., the protocol class; lifespan="off" for a bare ASGI function).
    """
    port = free_port()
    defaults: dict[str, Any] = {"host": "127.0.0.1", "port": port, "log_config": None, "lifespan": "on"}
    config = uvicorn.Config(app, **defaults | options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "uvicorn stopped before it started"
        return server.started

    try:
        wait_for(started, 30, "uvicorn to start", interval=0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
