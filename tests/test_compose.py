"""End to end: the real images and compose stack, driven through the Makefile as a user would.

The stack runs from a temporary copy of the working tree (tests/stack.py, temporary_project), like a fresh clone.
Run by `make test-compose`; skipped when no Docker daemon answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import websocket
from penguins import MODEL_NAMES

from tests.helpers import RECORD, wait_for
from tests.stack import (
    USER_SETTINGS,
    Project,
    copy_working_tree,
    docker,
    docker_answers,
    dotenv_value,
    temporary_project,
)

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1200)]

IMAGES = ["penguins-jupyter:latest", "penguins-api:latest"]
NO_CAPABILITIES = "0000000000000000"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    # Two workers even on one CPU: hot reload must reach every worker.
    with temporary_project(tmp_path_factory.mktemp("compose-e2e"), workers=2) as created:
        yield created


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


def test_api_container_is_locked_down(serving: Project) -> None:
    config = serving.host_config("api")

    assert config["ReadonlyRootfs"] is True
    assert config["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in config["SecurityOpt"]
    assert config["Memory"] == 1024**3
    assert "/tmp" in config["Tmpfs"]


def test_api_process_has_no_capabilities_and_cannot_gain_any(serving: Project) -> None:
    status = serving.process_status("api")

    assert status["CapBnd"] == status["CapEff"] == status["CapPrm"] == NO_CAPABILITIES
    assert status["NoNewPrivs"] == "1"


def test_api_container_cannot_write_its_image_but_can_write_tmp(serving: Project) -> None:
    image = serving.exec_api("python", "-c", "open('/srv/app/intruder.py', 'w')")
    scratch = serving.exec_api("python", "-c", "import tempfile; tempfile.TemporaryFile().write(b'x')")

    assert image.returncode != 0
    assert "Read-only file system" in image.stderr
    assert scratch.returncode == 0, scratch.stderr


def test_jupyterlab_answers_with_the_token(stack_up: Project) -> None:
    headers = {"Authorization": f"token {stack_up.token()}"}
    response = httpx.get(f"{stack_up.jupyter_url}/api/status", headers=headers, timeout=30)

    assert response.status_code == 200


def test_jupyterlab_refuses_without_the_token(stack_up: Project) -> None:
    response = httpx.get(f"{stack_up.jupyter_url}/api/status", timeout=30)

    assert response.status_code == 403


def test_jupyter_container_is_locked_down(stack_up: Project) -> None:
    config = stack_up.host_config("jupyter")
    status = stack_up.process_status("jupyter")

    assert config["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in config["SecurityOpt"]
    assert status["CapBnd"] == NO_CAPABILITIES
    assert status["NoNewPrivs"] == "1"


def execute(project: Project, kernel: str, code: str) -> str:
    """Run code in a JupyterLab kernel over its websocket, as the browser does; return what it prints."""
    url = f"{project.jupyter_url.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels"
    connection = websocket.create_connection(url, header=[f"Authorization: token {project.token()}"], timeout=60)
    request = uuid4().hex
    header = {"msg_id": request, "msg_type": "execute_request", "username": "test", "session": uuid4().hex}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    try:
        connection.send(
            json.dumps(
                {
                    "header": header | {"version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": content,
                }
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(connection.recv())
            if message["parent_header"].get("msg_id") != request:
                continue
            if message["msg_type"] in {"stream", "error"}:
                return str(message["content"].get("text") or message["content"])
        raise AssertionError("the kernel printed nothing within 60 s")
    finally:
        connection.close()


def test_jupyterlab_runs_a_kernel_as_the_caller(stack_up: Project) -> None:
    with httpx.Client(base_url=stack_up.jupyter_url, headers={"Authorization": f"token {stack_up.token()}"}) as client:
        started = client.post("/api/kernels", json={"name": "python3"}, timeout=60)
        assert started.status_code == 201, started.text
        kernel = started.json()["id"]
        try:
            printed = execute(stack_up, kernel, "import os, sklearn; print(os.getuid(), sklearn.__version__)")
        finally:
            client.delete(f"/api/kernels/{kernel}", timeout=60)

    assert printed.split() == [str(stack_up.uid), "1.9.1"]


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


def target_health(project: Project) -> dict[str, str]:
    answer = httpx.get(f"{project.prometheus_url}/api/v1/targets", timeout=30).json()
    return {target["labels"]["job"]: target["health"] for target in answer["data"]["activeTargets"]}


def test_prometheus_scrapes_the_api_with_the_monitoring_profile(monitored: Project) -> None:
    assert monitored.containers("prometheus")
    wait_for(lambda: target_health(monitored) == {"penguins-api": "up"}, 60, "the API's target to be up", interval=1)

    query = httpx.get(f"{monitored.prometheus_url}/api/v1/query", params={"query": "penguins_model_files"}, timeout=30)
    # The files in the served folder now: earlier tests of this module add some.
    files = len(list((monitored.root / "models").glob("*.pkl")))
    assert query.json()["data"]["result"][0]["value"][1] == str(files)


def test_prometheus_loads_the_alerting_rules(monitored: Project) -> None:
    answer = httpx.get(f"{monitored.prometheus_url}/api/v1/rules", timeout=30).json()
    alerts = {rule["name"] for group in answer["data"]["groups"] for rule in group["rules"]}
    assert alerts == {
        "PenguinsFeatureDrift", "PenguinsPredictionDrift", "PenguinsLiveAccuracyBelowReference",
        "PenguinsEstimatedAccuracyLow", "PenguinsLabelCoverageLow", "PenguinsHighErrorRate", "PenguinsSlowAnswers",
    }  # fmt: skip


def test_drift_demo_runs_in_a_container_against_the_stack(stack_up: Project) -> None:
    output = stack_up.make("drift-demo")
    assert "drifted (PSI above 0.25): body_mass_g. See http://api:8000/monitor" in output


def test_feedback_demo_runs_in_a_container_and_the_live_accuracy_falls(stack_up: Project) -> None:
    output = stack_up.make("feedback-demo")

    closing = {words[0]: words[1:] for words in map(str.split, output.splitlines()) if len(words) == 4}
    assert closing["realistic"][-1] == "false"
    assert closing["concept"][-1] == "true"  # below the reference: the alert's expression holds


def test_export_labelled_in_a_container_writes_the_labels_for_train(stack_up: Project) -> None:
    request_id = f"export-{uuid4().hex}"
    predicted = httpx.post(
        f"{stack_up.api_url}/predict", json={"records": [RECORD] * 4}, headers={"X-Request-ID": request_id}, timeout=30
    )
    labels = [{"request_id": request_id, "row": row, "label": "Chinstrap"} for row in range(4)]
    labelled = httpx.post(f"{stack_up.api_url}/feedback", json=labels, timeout=30)
    assert predicted.status_code == labelled.status_code == 200, labelled.text

    output = stack_up.make("export-labelled")

    written = re.search(r"wrote (\d+) labelled records to /shared/data/labelled.csv", output)
    assert written, output
    exported = stack_up.root / "data" / "labelled.csv"
    lines = exported.read_text().splitlines()
    assert lines[0] == (stack_up.root / "data" / "penguins.csv").read_text().splitlines()[0]
    # Whatever else the stack's tests labelled, this request's four records, as labelled.
    assert len(lines) - 1 == int(written[1]) >= 4
    rows = [line.split(",") for line in lines[1:]]
    assert sum(row[:3] == ["Chinstrap", "Torgersen", "39.1"] for row in rows) >= 4
    assert (exported.stat().st_uid, exported.stat().st_gid) == (stack_up.uid, stack_up.gid)


def test_a_stop_and_start_keeps_the_captured_predictions_and_labels(stack_up: Project) -> None:
    request_id = f"kept-{uuid4().hex}"
    predicted = httpx.post(
        f"{stack_up.api_url}/predict", json={"records": [RECORD] * 5}, headers={"X-Request-ID": request_id}, timeout=30
    )
    first = httpx.post(f"{stack_up.api_url}/feedback", json={"request_id": request_id, "label": "Adelie"}, timeout=30)
    # Stopped at once after this one: what a worker still has queued, the graceful stop writes.
    second = httpx.post(
        f"{stack_up.api_url}/predict", json={"records": [RECORD] * 3}, headers={"X-Request-ID": request_id + "-b"},
        timeout=30,
    )  # fmt: skip
    stack_up.make("down")
    stack_up.make("up")
    labels = [{"request_id": request_id, "row": row, "label": "Adelie"} for row in range(5)]
    labels += [{"request_id": request_id + "-b", "row": row, "label": "Adelie"} for row in range(3)]
    after = httpx.post(f"{stack_up.api_url}/feedback", json=labels, timeout=30)

    assert predicted.status_code == first.status_code == second.status_code == after.status_code == 200
    # Stored either way: matched when the worker that took it had written the prediction, else unknown until then.
    assert first.json()["matched"] + first.json()["unknown"] == 1
    # The label posted before the stop is still there; every prediction made before it was kept, labelled now.
    assert after.json() | {"conflicts": []} == {
        "received": 8, "matched": 7, "unknown": 0, "unchanged": 1, "conflicting": 0, "conflicts": []
    }  # fmt: skip


def test_route_promote_and_rollback_in_a_container_move_the_running_api(stack_up: Project) -> None:
    def answered_by() -> str:
        answer = httpx.post(f"{stack_up.api_url}/predict/penguins", json={"records": [RECORD]}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == answer.headers["x-route-variant"] + ".pkl"
        return str(answer.headers["x-route-variant"])

    stack_up.make_with({"ROUTE": "penguins", "VARIANTS": "logistic_regression=100 svc=0"}, "route")
    wait_for(lambda: answered_by() == "logistic_regression", 30, "the route to be served")
    stack_up.make_with({"ROUTE": "penguins", "MODEL": "svc"}, "promote")
    wait_for(lambda: answered_by() == "svc", 30, "the promoted variant to answer")
    stack_up.make_with({"ROUTE": "penguins"}, "rollback")
    wait_for(lambda: answered_by() == "logistic_regression", 30, "the rolled-back route to answer")

    routes = stack_up.root / "models" / "routes.json"
    assert json.loads(routes.read_text())["routes"]["penguins"]["variants"] == {"logistic_regression": 100, "svc": 0}
    assert (routes.stat().st_uid, routes.stat().st_gid) == (stack_up.uid, stack_up.gid)


def test_down_leaves_nothing_running(stack_up: Project) -> None:
    stack_up.make("down")

    assert stack_up.containers(all_states=True) == []


# `make up` and `make serve` start from the dotenv step: it alone decides whether the API
# may be published without a token, so it is tested on its own, without containers.


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    if not docker_answers():
        pytest.skip("no Docker daemon answers (`docker info` failed): the dotenv step checks for one")
    copy_working_tree(tmp_path)
    return tmp_path


def dotenv(root: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in USER_SETTINGS} | settings
    return subprocess.run(
        ["make", "--no-print-directory", "dotenv"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def api_environment_value(root: Path, name: str) -> str | None:
    """What compose, reading .env, would pass to the api container as name."""
    command = ["docker", "compose", "-f", "compose/docker-compose.yml", "--env-file", ".env", "config"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    api = done.stdout.split("\n  api:\n", 1)[1].split("\n  jupyter:\n", 1)[0]
    found = re.search(rf"^      {name}: (.*)$", api, flags=re.MULTILINE)
    return found[1] if found else None


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20"])
def test_dotenv_writes_an_api_token_when_bound_beyond_loopback(fresh_clone: Path, address: str) -> None:
    done = dotenv(fresh_clone, BIND_ADDRESS=address)
    token = dotenv_value(fresh_clone, "API_TOKEN")

    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    assert token in done.stdout
    assert token != dotenv_value(fresh_clone, "JUPYTER_TOKEN")
    assert stat.S_IMODE((fresh_clone / ".env").stat().st_mode) == 0o600
    assert api_environment_value(fresh_clone, "API_TOKEN") == token


def test_dotenv_keeps_the_api_token_it_wrote(fresh_clone: Path) -> None:
    dotenv(fresh_clone, BIND_ADDRESS="0.0.0.0")
    first = dotenv_value(fresh_clone, "API_TOKEN")
    again = dotenv(fresh_clone, BIND_ADDRESS="0.0.0.0")

    assert again.returncode == 0, again.stderr
    assert dotenv_value(fresh_clone, "API_TOKEN") == first
    assert first not in again.stdout


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1", "localhost", "::1"])
def test_dotenv_leaves_the_api_open_on_loopback(fresh_clone: Path, address: str) -> None:
    done = dotenv(fresh_clone, BIND_ADDRESS=address)

    assert done.returncode == 0, done.stderr
    assert dotenv_value(fresh_clone, "API_TOKEN") == ""
    assert dotenv_value(fresh_clone, "JUPYTER_TOKEN") != ""


def test_dotenv_leaves_an_exported_api_token_alone(fresh_clone: Path) -> None:
    done = dotenv(fresh_clone, BIND_ADDRESS="0.0.0.0", API_TOKEN="chosen-by-the-user")

    assert done.returncode == 0, done.stderr
    assert dotenv_value(fresh_clone, "API_TOKEN") == ""


def test_dotenv_refuses_an_exported_empty_api_token_beyond_loopback(fresh_clone: Path) -> None:
    done = dotenv(fresh_clone, BIND_ADDRESS="0.0.0.0", API_TOKEN="")

    assert done.returncode != 0
    assert "API_TOKEN is exported empty" in done.stderr
