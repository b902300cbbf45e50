"""End to end: the real images and compose stack, driven through the Makefile as a user would.

The stack runs from a temporary copy of the working tree (tests/stack.py), like a fresh clone.
Run by `make test-compose`; skipped when no Docker daemon answers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest
from conftest import RECORD
from stack import MODEL_NAMES, Project, docker, temporary_project

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1200)]

IMAGES = ["penguins-jupyter:latest", "penguins-api:latest"]


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


def test_down_leaves_nothing_running(stack_up: Project) -> None:
    stack_up.make("down")

    assert stack_up.containers(all_states=True) == []
