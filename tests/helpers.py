"""What the tests share: the project's paths, its scripts run for real, a live API server, a compose stack.

- run_script: scripts/<name> in a subprocess, as `make ... LOCAL=1` runs it, offline.
- start_server: `python -m app` (as the API image runs it) on a free loopback port.
- temporary_project: the compose stack the project's way, `make` in a temporary copy of the tree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from app.features import EXAMPLE_RECORD

# The original service's request example, an Adelie: what clients send first.
RECORD: dict[str, Any] = dict(EXAMPLE_RECORD)
# Set on a test whose body failed, so its fixtures can keep evidence (the browser's screenshot).
FAILED = pytest.StashKey[bool]()


# --- scripts -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
# An unreachable proxy: any download attempt fails at once instead of reaching out.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


def run_script(
    script: str, *args: str | os.PathLike[str], cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run scripts/<script> with the test's Python, warnings as errors, no network."""
    inherited = {key: value for key, value in os.environ.items() if key not in ("MODELS_DIR", "DATA_DIR")}
    # A developer's data/labelled.csv must not change what the tests train, unless a test asks for it.
    inherited["LABELLED_CSV"] = "none"
    env = {**inherited, **OFFLINE, "PYTHONWARNINGS": "error", **(env or {})}
    command = [sys.executable, str(ROOT / "scripts" / script), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# --- a live API server ---------------------------------------------------------------------------

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

    def worker_environ(self, pid: int) -> dict[str, str]:
        entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def older_model_file(source: Path, target: Path, *metadata_keys: str, calibrator: Any = None) -> None:
    """A copy of a trained bundle as an older train.py wrote it: without the metadata keys named, and with
    the given calibrator entry (none by default)."""
    import joblib  # only the tests that write model files pay for it

    bundle = joblib.load(source)
    bundle["metadata"] = {key: value for key, value in bundle["metadata"].items() if key not in metadata_keys}
    bundle.pop("calibrator", None)
    if calibrator is not None:
        bundle["calibrator"] = calibrator
    joblib.dump(bundle, target)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
        try:
            httpx.get(f"{url}/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the server did not answer within 60 s: {log.read_text()[-3000:]}")


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
def uvicorn_in_thread(app: ASGIApp) -> Iterator[str]:
    """An app object under a real uvicorn in a thread of this process, on a free loopback port; yields its URL.

    For an app no settings of `python -m app` can make (a route that breaks), or one the test needs quickly: no
    new interpreter to start. It logs through the root logger, which pytest's caplog reads.
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --- the compose stack ---------------------------------------------------------------------------

# Run as root, the stack gets this non-root UID/GID instead, which also proves that the
# caller's IDs reach the images (it is neither root nor the images' default 1000).
STAND_IN_UID = 4242
# Settings of the user's shell that would change what a fresh clone does.
USER_SETTINGS = {"LOCAL", "JUPYTER_TOKEN", "API_TOKEN", "BIND_ADDRESS", "API_MEMORY_LIMIT", "MAKEFLAGS", "MAKELEVEL"}


@dataclass(frozen=True)
class Project:
    root: Path
    env: dict[str, str]
    name: str
    uid: int
    gid: int
    api_url: str
    jupyter_url: str
    prometheus_url: str

    def make(self, *targets: str) -> str:
        return self.make_with({}, *targets)

    def make_with(self, settings: Mapping[str, str], *targets: str) -> str:
        """make with more variables in its environment, as a user's shell would export them."""
        done = subprocess.run(
            ["make", "--no-print-directory", *targets],
            cwd=self.root,
            env=self.env | dict(settings),
            capture_output=True,
            text=True,
            timeout=1100,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"make {' '.join(targets)} failed:\n{output[-4000:]}"
        return output

    def containers(self, service: str | None = None, all_states: bool = False) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={self.name}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return docker("ps", "-q", *(["-a"] if all_states else []), *filters).split()

    def exec_in(self, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        (container,) = self.containers(service)
        return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True, timeout=60)

    def exec_api(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.exec_in("api", *command)

    def host_config(self, service: str) -> dict[str, Any]:
        (container,) = self.containers(service)
        config: dict[str, Any] = json.loads(docker("inspect", container))[0]["HostConfig"]
        return config

    def process_status(self, service: str) -> dict[str, str]:
        """/proc/1/status of the service's container: what its main process may do."""
        lines = self.exec_in(service, "cat", "/proc/1/status").stdout.splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)

    def token(self) -> str:
        return dotenv_value(self.root, "JUPYTER_TOKEN")


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docker {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def dotenv_value(root: Path, name: str) -> str:
    lines = (root / ".env").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith(f"{name}="))


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def copy_working_tree(target: Path) -> None:
    """Tracked and untracked-but-not-ignored files: what a fresh clone plus local edits holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


@contextmanager
def temporary_project(root: Path, workers: int = 1, settings: Mapping[str, str] | None = None) -> Iterator[Project]:
    """A copy of the working tree in root with its own project name and ports; `make down` at the end.

    settings: further variables in make's environment, as a user's shell would export them (API_TOKEN, ...).
    """
    if not docker_answers():
        pytest.skip("no Docker daemon answers (`docker info` failed): start Docker to run the container tests")
    copy_working_tree(root)
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (STAND_IN_UID, STAND_IN_UID)
    api_port, jupyter_port, prometheus_port = free_port(), free_port(), free_port()
    name = f"penguins-test-{os.getpid()}-{root.name}".lower()
    env = {key: value for key, value in os.environ.items() if key not in USER_SETTINGS}
    env |= {
        "COMPOSE_PROJECT_NAME": name,
        "API_PORT": str(api_port),
        "JUPYTER_PORT": str(jupyter_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "HOST_UID": str(uid),
        "HOST_GID": str(gid),
        "WEB_CONCURRENCY": str(workers),
        **(settings or {}),
    }
    try:
        urls = [f"http://127.0.0.1:{port}" for port in (api_port, jupyter_port, prometheus_port)]
        yield Project(root, env, name, uid, gid, *urls)
    finally:
        subprocess.run(["make", "down"], cwd=root, env=env, capture_output=True, timeout=300)
        # `make down` keeps named volumes (Prometheus's samples); the test's own go with it.
        volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={name}").split()
        if volumes:
            docker("volume", "rm", *volumes)
