"""The API under a real uvicorn on a free loopback port: real HTTP, concurrent clients, files replaced mid-load."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import RECORD, wait_for
from tests.live import start_server


@pytest.fixture
def models_dir(live_models_dir: Path) -> Path:
    """The shared server's models: tests add files, never change these."""
    return live_models_dir


@pytest.fixture
def server(live_url: str) -> str:
    return live_url


def test_a_live_server_answers_predictions_and_refuses_a_broken_body(server: str) -> None:
    assert httpx.get(f"{server}/").json()["message"] == "Bienvenido a la API de inferencia de modelos ML"
    response = httpx.post(f"{server}/predict", json={"records": [RECORD]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["predictions"] == ["Adelie"]
    assert httpx.post(f"{server}/predict", content=b"{").status_code == 422


def test_concurrent_clients_all_succeed(server: str) -> None:
    calls = [("POST", "/predict?model=logistic_regression"), ("POST", "/predict?model=random_forest"),
             ("POST", "/predict?model=svc"), ("POST", "/predict/compare"), ("GET", "/models")] * 12  # fmt: skip

    def call(method_path: tuple[str, str]) -> int:
        with httpx.Client(base_url=server, timeout=30) as client:
            return client.request(method_path[0], method_path[1], json={"records": [RECORD] * 3}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, calls))
    assert statuses == [200] * len(calls)


def test_a_model_replaced_mid_load_fails_no_request(server: str, models_dir: Path) -> None:
    versions = {"forest": models_dir / "random_forest.pkl", "svc": models_dir / "svc.pkl"}
    saved = {name: path.read_bytes() for name, path in versions.items()}
    target = models_dir / "served.pkl"
    shutil.copyfile(versions["forest"], target)
    stop = threading.Event()
    failures: list[str] = []
    answers: set[bool] = set()

    def hammer() -> None:
        with httpx.Client(base_url=server, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/predict?model=served", json={"records": [RECORD]})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                else:
                    answers.add(response.json()["probabilities"] is None)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    rounds = itertools.count()

    def replace_once() -> bool:
        # train.py's way: write a dot-named temporary, os.replace it over the served name, while requests load it.
        round_ = next(rounds)
        temporary = models_dir / f".served.{round_}.tmp"
        temporary.write_bytes(saved["svc" if round_ % 2 == 0 else "forest"])
        os.replace(temporary, target)
        time.sleep(0.05)
        # At least 16 replacements, and on until both versions have answered: a busy machine may start the clients late.
        return round_ >= 16 and answers == {True, False}

    try:
        wait_for(replace_once, 120, "both versions answering while the file is replaced", interval=0)
    finally:
        stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert answers == {True, False}  # both versions were served


def test_an_unreadable_folder_keeps_loaded_models_serving(models_dir: Path, tmp_path: Path) -> None:
    # Root reads any folder: start_server drops those capabilities so the mode really applies.
    folder = tmp_path / "models"
    shutil.copytree(models_dir, folder)
    with start_server(folder, tmp_path / "server.log", obey_permissions=True) as server:
        assert httpx.post(f"{server.url}/predict?model=svc", json={"records": [RECORD]}).status_code == 200
        folder.chmod(0o000)
        try:
            loaded = httpx.post(f"{server.url}/predict?model=svc", json={"records": [RECORD]})
            not_loaded = httpx.post(f"{server.url}/predict?model=logistic_regression", json={"records": [RECORD]})
            health = httpx.get(f"{server.url}/health")
        finally:
            folder.chmod(0o755)
        assert loaded.status_code == 200
        assert (not_loaded.status_code, health.status_code) == (503, 503)
        assert not_loaded.json()["detail"] == f"Models folder {folder} is not readable: permission denied."
        assert httpx.get(f"{server.url}/health").status_code == 200
