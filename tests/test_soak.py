"""Soak and faults under load: a live server keeps answering while its models folder changes.

Run by `make test-soak` (marker `soak`), about a minute. Eight clients load a real uvicorn
server while, in turn: the three models are replaced 50 times, a broken file comes and goes,
a new model comes, is used and goes, and the folder becomes unreadable and readable again. Then four
clients ask a route while its file is rewritten 60 times (weights, shadows, one broken version).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_script
from tests.live import needs_proc, start_server

pytestmark = [pytest.mark.soak, needs_proc]

HEALTHY = ["logistic_regression", "random_forest", "svc"]
RECORD = {
    "island": "Dream",
    "bill_length_mm": 50.9,
    "bill_depth_mm": 19.1,
    "flipper_length_mm": 196,
    "body_mass_g": 3550,
    "sex": "male",
}
HEALTHY_CLIENTS = 6
PROBE_CLIENTS = 2
REPLACEMENTS = 50
MEMORY_GROWTH_LIMIT = 50 * 1024 * 1024


@dataclass
class Load:
    """Eight client threads: six on the healthy models, two on whatever `probe` names."""

    url: str
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    # (model, expected statuses) for the probe clients, or None while they idle.
    probe: tuple[str, frozenset[int]] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, failure: str | None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if failure is not None:
                self.failures.append(failure)

    def healthy_client(self, first: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for turn in range(first, 10**9):
                if self.stop.is_set():
                    return
                name = HEALTHY[turn % len(HEALTHY)]
                response = client.post("/predict", params={"model": name}, json={"records": [RECORD]})
                ok = response.status_code == 200 and response.json()["predictions"] == ["Chinstrap"]
                self.record("healthy 200" if ok else "healthy FAILED", None if ok else f"{name}: {response.text}")

    def probe_client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                if (probe := self.probe) is None:
                    time.sleep(0.005)
                    continue
                name, expected = probe
                response = client.post("/predict", params={"model": name}, json={"records": [RECORD]})
                ok = response.status_code in expected and (response.status_code == 200 or "detail" in response.json())
                kind = f"{name} {response.status_code}" + ("" if ok else " UNEXPECTED")
                self.record(kind, None if ok else f"{name}: {response.status_code} {response.text}")

    @contextmanager
    def running(self) -> Iterator[None]:
        threads = [threading.Thread(target=self.healthy_client, args=(index,)) for index in range(HEALTHY_CLIENTS)]
        threads += [threading.Thread(target=self.probe_client) for _ in range(PROBE_CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=60)

    def probing(self, name: str, *statuses: int) -> None:
        self.probe = (name, frozenset(statuses))


def write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def model_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two versions of the three models (different seeds), to swap under load."""
    first, second = tmp_path_factory.mktemp("seed42"), tmp_path_factory.mktemp("seed7")
    for folder, seed in ((first, "42"), (second, "7")):
        result = run_script("train.py", "--quick", "--seed", seed, "--models-dir", folder)
        assert result.returncode == 0, result.stderr
    return first, second


def swap_models(models: Path, sets: tuple[Path, Path]) -> None:
    for round_ in range(REPLACEMENTS):
        for name in HEALTHY:
            write_atomically(models / f"{name}.pkl", (sets[(round_ + 1) % 2] / f"{name}.pkl").read_bytes())
        time.sleep(0.15)  # long enough for the clients to use each new file


def comes_and_goes(path: Path, content: bytes, load: Load, status_while_there: int) -> None:
    """A file appears atomically, the probe clients ask for it, it is deleted, they ask again."""
    write_atomically(path, content)
    load.probing(path.stem, status_while_there, 404)  # 404 only in the instant it is deleted below
    time.sleep(3)
    path.unlink()
    time.sleep(0.5)
    load.probing(path.stem, 404)
    time.sleep(2)
    load.probe = None
    time.sleep(0.2)  # let requests already sent finish before the next fault


def health_while_unreadable(models: Path, url: str) -> tuple[int, int]:
    """The /health status while the folder cannot be read, and once it can again."""
    models.chmod(0o000)
    try:
        time.sleep(2)
        unreadable = httpx.get(f"{url}/health", timeout=30).status_code
        time.sleep(1)
    finally:
        models.chmod(0o755)
    return unreadable, httpx.get(f"{url}/health", timeout=30).status_code


def test_keeps_serving_while_the_models_folder_changes_under_load(
    model_sets: tuple[Path, Path], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(model_sets[0], models)
    with start_server(models, tmp_path / "server.log", obey_permissions=True) as server:
        for name in HEALTHY:  # every model loaded once before the baseline
            assert httpx.post(f"{server.url}/predict?model={name}", json={"records": [RECORD]}).status_code == 200
        time.sleep(1)  # the server closes those connections
        files_before, memory_before = server.open_files(), server.rss_bytes()
        loads_before = server.log.read_text().count(" loaded ")
        load = Load(server.url)
        with load.running():
            swap_models(models, model_sets)
            comes_and_goes(models / "broken.pkl", b"\x80\x04 this is not a whole pickle", load, 500)
            comes_and_goes(models / "newcomer.pkl", (model_sets[0] / "svc.pkl").read_bytes(), load, 200)
            health = health_while_unreadable(models, server.url)
            time.sleep(1)
        memory_growth = server.rss_bytes() - memory_before
        server.wait_for_open_files(files_before)  # the clients' connections closed, nothing else left open
        reloads = server.log.read_text().count(" loaded ") - loads_before

    print(f"\nrequests: {sum(load.counts.values())}; by kind: {dict(load.counts)}")
    growth = f"{memory_growth / 2**20:.1f} MiB"
    print(f"reloads observed: {reloads}; memory growth: {growth}; open files back to {files_before}")
    assert load.failures == []
    assert load.counts["healthy 200"] > 500
    assert load.counts["broken 500"] > 0 and load.counts["broken 404"] > 0
    assert load.counts["newcomer 200"] > 0 and load.counts["newcomer 404"] > 0
    assert health == (503, 200)
    assert reloads >= REPLACEMENTS  # the clients used the new files, not a stale cache
    assert memory_growth < MEMORY_GROWTH_LIMIT


ROUTE_REWRITES = 60


def route_file(weights: tuple[int, int], shadows: list[str]) -> bytes:
    variants = {"logistic_regression": weights[0], "random_forest": weights[1]}
    return json.dumps({"routes": {"penguins": {"variants": variants, "shadows": shadows}}}).encode()


def route_client(url: str, stop: threading.Event, answered: collections.Counter[str], failures: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            response = client.post("/predict/penguins", json={"records": [RECORD]})
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text}")
                continue
            answered[response.headers["x-route-variant"]] += 1


def test_a_route_keeps_answering_while_its_file_is_rewritten_under_load(
    model_sets: tuple[Path, Path], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(model_sets[0], models)
    routes = models / "routes.json"
    write_atomically(routes, route_file((100, 0), []))
    with start_server(models, tmp_path / "server.log", workers=2) as server:
        stop, answered, failures = threading.Event(), collections.Counter[str](), list[str]()
        clients = [threading.Thread(target=route_client, args=(server.url, stop, answered, failures)) for _ in range(4)]
        for client in clients:
            client.start()
        try:
            for turn in range(ROUTE_REWRITES):
                if turn == ROUTE_REWRITES // 2:  # a broken file: the last good routes go on answering
                    write_atomically(routes, b'{"routes": {"penguins": {"variants": {"logistic_regression": -1}}}}')
                else:
                    weight = (turn * 37) % 101
                    write_atomically(routes, route_file((weight, 100 - weight), ["svc"] if turn % 2 else []))
                time.sleep(0.1)
            write_atomically(routes, route_file((0, 100), []))
            time.sleep(1)
            last = collections.Counter(answered)
            time.sleep(1)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=60)
        log = server.log.read_text()

    print(f"\nthrough the route while its file was rewritten {ROUTE_REWRITES} times: {dict(answered)}")
    assert failures == []
    assert answered["logistic_regression"] > 0 and answered["random_forest"] > 0
    # Once at 0/100, only random_forest answers, in both workers.
    assert answered["logistic_regression"] == last["logistic_regression"]
    assert answered["random_forest"] > last["random_forest"]
    assert "routes.json refused" in log
