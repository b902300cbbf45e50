"""The compose stack the project's way, for the container tests: `make` in a temporary copy of the tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.live import free_ports

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
    api_port, jupyter_port, prometheus_port = free_ports(3)
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
