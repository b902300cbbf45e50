"""End to end: the real images and compose stack, driven through the Makefile as a user would.

The stack runs from a temporary copy of the working tree (no models, no .env: a fresh
clone) under its own compose project name and free ports, so a stack the user has
running, and their models/, are left alone. Only the image tags are shared: building
here retags penguins-jupyter and penguins-api from the same sources.

Run by `make test-compose`; skipped when no Docker daemon answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import RECORD
from live import free_port

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parent.parent
MODEL_NAMES = ["logistic_regression", "random_forest", "svc"]
IMAGES = ["penguins-jupyter:latest", "penguins-api:latest"]
# Run as root, the stack gets this non-root UID/GID instead, which also proves that the
# caller's IDs reach the images (it is neither root nor the images' default 1000).
STAND_IN_UID = 4242


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
        done = subprocess.run(
            ["make", "--no-print-directory", *targets],
            cwd=self.root,
            env=self.env,
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

    def exec_api(self, *command: str) -> subprocess.CompletedProcess[str]:
        (container,) = self.containers("api")
        return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True, timeout=60)

    def token(self) -> str:
        lines = (self.root / ".env").read_text().splitlines()
        return next(line.split("=", 1)[1] for line in lines if line.startswith("JUPYTER_TOKEN="))


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docker {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def copy_working_tree(target: Path) -> None:
    """Tracked and untracked-but-not-ignored files: what a fresh clone plus local edits holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    if not docker_answers():
        pytest.skip("no Docker daemon answers (`docker info` failed): start Docker to run the compose tests")
    root = tmp_path_factory.mktemp("compose-e2e")
    copy_working_tree(root)
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (STAND_IN_UID, STAND_IN_UID)
    api_port, jupyter_port, prometheus_port = free_port(), free_port(), free_port()
    name = f"penguins-test-{os.getpid()}"
    env = {key: value for key, value in os.environ.items() if key not in {"LOCAL", "JUPYTER_TOKEN", "BIND_ADDRESS"}}
    env |= {
        "COMPOSE_PROJECT_NAME": name,
        "API_PORT": str(api_port),
        "JUPYTER_PORT": str(jupyter_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "HOST_UID": str(uid),
        "HOST_GID": str(gid),
        # Two workers even on one CPU: hot reload must reach every worker.
        "WEB_CONCURRENCY": "2",
    }
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    urls = [f"http://127.0.0.1:{port}" for port in (api_port, jupyter_port, prometheus_port)]
    created = Project(root, env, name, uid, gid, *urls)
    yield created
    subprocess.run(["make", "down"], cwd=root, env=env, capture_output=True, timeout=300)
    # `make down` keeps named volumes (Prometheus's samples); the test's own go with it.
    volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={name}").split()
    if volumes:
        docker("volume", "rm", *volumes)


@pytest.fixture(scope="module")
def built(project: Project) -> Project:
    project.make("build")
    return project


@pytest.fixture(scope="module")
def trained(built: Project) -> Project:
    built.make("train")
    return built


@pytest.fixture(scope="module")
def synced(trained: Project) -> Project:
    trained.make("notebooks")
    return trained


@pytest.fixture(scope="module")
def serving(trained: Project) -> Project:
    trained.make("serve")
    return trained


@pytest.fixture(scope="module")
def stack_up(serving: Project) -> Project:
    serving.make("up")
    return serving


def predict(project: Project, model: str) -> httpx.Response:
    return httpx.post(f"{project.api_url}/predict", params={"model": model}, json={"records": [RECORD]}, timeout=30)


def test_both_images_build(built: Project) -> None:
    for image in IMAGES:
        docker("image", "inspect", image)


def test_train_in_the_container_writes_three_models_owned_by_the_caller(trained: Project) -> None:
    models = sorted((trained.root / "models").glob("*.pkl"))

    assert [path.stem for path in models] == MODEL_NAMES
    assert {(path.stat().st_uid, path.stat().st_gid) for path in models} == {(trained.uid, trained.gid)}


def test_notebooks_in_the_container_writes_notebooks_owned_by_the_caller(synced: Project) -> None:
    notebooks = sorted((synced.root / "notebooks").glob("*.ipynb"))

    assert "train.ipynb" in [path.name for path in notebooks]
    assert {path.stat().st_uid for path in notebooks} == {synced.uid}


def test_serve_starts_only_the_api(serving: Project) -> None:
    assert serving.containers("api")
    assert not serving.containers("jupyter")


def test_health_is_ok(serving: Project) -> None:
    response = httpx.get(f"{serving.api_url}/health", timeout=30)

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("model", [pytest.param(name, id=name) for name in MODEL_NAMES])
def test_predict_answers_for_each_model(serving: Project, model: str) -> None:
    response = predict(serving, model)

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_a_model_added_while_running_is_served_without_restart(serving: Project) -> None:
    models = serving.root / "models"
    shutil.copy2(models / "svc.pkl", models / "svc_copy.pkl")

    # Several requests, so that each worker is asked.
    statuses = {predict(serving, "svc_copy").status_code for _ in range(6)}

    assert statuses == {200}


def test_a_model_replaced_while_running_is_served_without_restart(serving: Project) -> None:
    models = serving.root / "models"
    before = {predict(serving, "logistic_regression").text for _ in range(6)}
    replacement = models / ".logistic_regression.replacing"
    shutil.copy2(models / "random_forest.pkl", replacement)
    os.replace(replacement, models / "logistic_regression.pkl")

    after = {predict(serving, "logistic_regression").text for _ in range(6)}

    assert len(before) == 1
    assert after.isdisjoint(before), "a worker still answers with the replaced model"


def test_docs_answers(serving: Project) -> None:
    response = httpx.get(f"{serving.api_url}/docs", timeout=30)

    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_api_container_runs_as_the_non_root_caller(serving: Project) -> None:
    uid = serving.exec_api("id", "-u").stdout.strip()

    assert uid == str(serving.uid)
    assert uid != "0"


def test_api_container_cannot_write_the_models(serving: Project) -> None:
    attempt = serving.exec_api("python", "-c", "open('/shared/models/intruder.pkl', 'wb')")

    assert attempt.returncode != 0
    assert "Read-only file system" in attempt.stderr
    assert not (serving.root / "models" / "intruder.pkl").exists()


def test_jupyterlab_answers_with_the_token(stack_up: Project) -> None:
    headers = {"Authorization": f"token {stack_up.token()}"}
    response = httpx.get(f"{stack_up.jupyter_url}/api/status", headers=headers, timeout=30)

    assert response.status_code == 200


def test_jupyterlab_refuses_without_the_token(stack_up: Project) -> None:
    response = httpx.get(f"{stack_up.jupyter_url}/api/status", timeout=30)

    assert response.status_code == 403


def test_saving_a_notebook_in_jupyterlab_updates_its_script_on_the_host(synced: Project, stack_up: Project) -> None:
    with httpx.Client(base_url=stack_up.jupyter_url, headers={"Authorization": f"token {stack_up.token()}"}) as client:
        notebook = client.get("/api/contents/notebooks/train.ipynb", timeout=30).json()["content"]
        notebook["cells"][0]["source"] += "\n\nEdited in JupyterLab."
        saved = client.put(
            "/api/contents/notebooks/train.ipynb",
            json={"type": "notebook", "format": "json", "content": notebook},
            timeout=30,
        )

    assert saved.status_code == 200, saved.text
    script = stack_up.root / "scripts" / "train.py"
    assert "# Edited in JupyterLab." in script.read_text()
    assert script.stat().st_uid == stack_up.uid


def test_ports_are_bound_to_localhost_only(stack_up: Project) -> None:
    bindings = [line for container in stack_up.containers() for line in docker("port", container).splitlines()]

    assert len(bindings) == 2
    assert all(line.split(" -> ")[1].startswith("127.0.0.1:") for line in bindings), bindings


@pytest.fixture(scope="module")
def monitored(stack_up: Project) -> Project:
    stack_up.make("up", "MONITORING=1")
    return stack_up


def test_prometheus_scrapes_the_api_with_the_monitoring_profile(monitored: Project) -> None:
    assert monitored.containers("prometheus")
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(f"{monitored.prometheus_url}/api/v1/targets", timeout=30).json()
        health = {target["labels"]["job"]: target["health"] for target in answer["data"]["activeTargets"]}
        if health == {"penguins-api": "up"} or time.monotonic() > deadline:
            break
        time.sleep(1)

    assert health == {"penguins-api": "up"}
    query = httpx.get(f"{monitored.prometheus_url}/api/v1/query", params={"query": "penguins_model_files"}, timeout=30)
    assert query.json()["data"]["result"][0]["value"][1] == "3"


def test_down_leaves_nothing_running(stack_up: Project) -> None:
    stack_up.make("down")

    assert stack_up.containers(all_states=True) == []
