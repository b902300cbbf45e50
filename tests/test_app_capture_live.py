"""Capture and feedback against a real server: several workers, a PostgreSQL stopped and started, kills, stops."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.capture.process import HAND_OVER_SECONDS
from app.capture.recorder import FIGURES_SECONDS
from tests.helpers import RECORD, wait_for
from tests.live import LiveServer, needs_proc, start_server
from tests.postgres import PostgresServer


def predict(url: str, request_id: str, records: int = 1, model: str = "logistic_regression") -> None:
    answer = httpx.post(f"{url}/predict/{model}", json={"records": [RECORD] * records},
                        headers={"x-request-id": request_id}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text


def series(url: str, name: str, **labels: str) -> float | None:
    """One sample of a scrape, made on a new connection (so either worker may answer)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def performance(url: str, model: str) -> Any:
    answer = httpx.get(f"{url}/models/{model}/performance", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def store_file(models_dir: Path) -> Path:
    return models_dir.parent / "data" / "capture" / "capture.db"


def stored_references(database: Path) -> int:
    """Versions with a reference in the store; 0 while the writer has not made it yet."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:  # read-only: never makes the file
            query = "SELECT COUNT(*) FROM model_versions WHERE reference_mean IS NOT NULL"
            return int(connection.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # no file, or no table yet
        return 0


def count(database: Path, table: str) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # a test's fixed table name


def captured_records(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT COALESCE(SUM(records), 0) FROM batches").fetchone()[0])


def test_the_figures_are_the_same_whichever_of_two_workers_is_scraped(module_models_dir: Path, tmp_path: Path) -> None:
    with start_server(module_models_dir, tmp_path / "server.log", workers=2) as server:
        for index in range(10):
            predict(server.url, f"two-{index}")
        labels = [{"request_id": f"two-{index}", "label": "Adelie" if index < 7 else "Gentoo"} for index in range(10)]
        answer = httpx.post(f"{server.url}/feedback", json=labels, timeout=30).json()
        assert answer["matched"] + answer["unknown"] == 10
        model = {"model": "logistic_regression"}
        wait_for(
            lambda: series(server.url, "penguins_live_window_labels", **model) == 10, 20, "10 labels in the window"
        )
        # Everything is in the store now; the other worker may still hold figures read before, for their cache's age.
        time.sleep(FIGURES_SECONDS)
        for _ in range(12):
            assert series(server.url, "penguins_live_window_labels", **model) == 10
            assert series(server.url, "penguins_live_accuracy", **model) == 0.7
            assert series(server.url, "penguins_live_labelled_records", correct="false", **model) == 3
            assert series(server.url, "penguins_live_confusion_records", label="Gentoo", predicted="Adelie",
                          **model) == 3  # fmt: skip
            assert series(server.url, "penguins_feedback_labels_total", outcome="matched") == answer["matched"]
            lower = series(server.url, "penguins_live_accuracy_lower", **model)
            assert lower is not None and 0.39 < lower < 0.7


def reference_series(url: str) -> set[tuple[str, str, str, float]]:
    """The reference figures of a scrape made on a new connection (so either worker may answer)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        (sample.name, sample.labels["model"], sample.labels["version"], sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("penguins_reference_accuracy")
    }


def test_the_reference_figures_are_the_same_whichever_of_two_workers_is_scraped(
    module_models_dir: Path, tmp_path: Path
) -> None:
    with start_server(module_models_dir, tmp_path / "server.log", workers=2) as server:
        # One request: one worker loads the model, the other never does; both export what the store holds.
        predict(server.url, "reference")
        # Waited for in the store, not by scraping: a scrape before it would leave a worker's figures cached empty.
        stored = lambda: stored_references(store_file(module_models_dir)) == 1  # noqa: E731
        wait_for(stored, 20, "the reference stored by the writer")
        first = reference_series(server.url)
        assert {(name, model) for name, model, _, _ in first} == {
            ("penguins_reference_accuracy", "logistic_regression"),
            ("penguins_reference_accuracy_lower", "logistic_regression"),
            ("penguins_reference_accuracy_upper", "logistic_regression"),
        }
        for _ in range(12):
            assert reference_series(server.url) == first


def test_postgresql_stopped_under_traffic_then_started_again(
    module_models_dir: Path, tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.create_database(f"live_{uuid.uuid4().hex[:12]}")
    log = tmp_path / "server.log"
    with start_server(module_models_dir, log, settings={"CAPTURE_URL": url}) as server:
        predict(server.url, "before")
        label = httpx.post(f"{server.url}/feedback", json={"request_id": "before", "label": "Adelie"}, timeout=30)
        assert label.json()["matched"] == 1
        postgres.stop()
        try:
            for index in range(20):
                predict(server.url, f"down-{index}")
            refused = httpx.post(f"{server.url}/feedback", json={"request_id": "x", "label": "Adelie"}, timeout=30)
            assert refused.status_code == 503
            assert refused.json() == {
                "detail": "The capture store cannot be reached now; the cause is in the server log."
            }
            wait_for(
                lambda: (series(server.url, "penguins_capture_dropped_total") or 0) >= 20, 20, "20 captures dropped"
            )
            assert "capture store postgresql cannot be written" in log.read_text()
        finally:
            postgres.start()
        predict(server.url, "after")
        after = {"request_id": "after", "label": "Adelie"}
        accepted = lambda: httpx.post(f"{server.url}/feedback", json=after, timeout=30).status_code == 200  # noqa: E731
        wait_for(accepted, 20, "/feedback accepting labels again")
        again = httpx.post(f"{server.url}/feedback", json={"request_id": "after", "label": "Adelie"}, timeout=30)
        assert again.json()["unchanged"] == 1
    assert "reachable again" in log.read_text()


@needs_proc
def test_a_killed_worker_loses_no_acknowledged_label(models_dir: Path, tmp_path: Path) -> None:
    with start_server(models_dir, tmp_path / "server.log", workers=2) as server:
        predict(server.url, "kept", records=5)
        labels = [{"request_id": "kept", "row": row, "label": "Adelie"} for row in range(5)]
        assert httpx.post(f"{server.url}/feedback", json=labels, timeout=30).status_code == 200
        for pid in server.worker_pids():
            os.kill(pid, signal.SIGKILL)
        assert count(store_file(models_dir), "labels") == 5
        wait_for(lambda: _answers(server), 90, "new workers answering")  # uvicorn starts new workers


@needs_proc
def test_a_killed_workers_writer_process_writes_what_it_was_handed_and_exits(models_dir: Path, tmp_path: Path) -> None:
    with start_server(models_dir, tmp_path / "server.log", workers=2) as server:
        for index in range(20):
            predict(server.url, f"handed-{index}", records=3)
        time.sleep(4 * HAND_OVER_SECONDS)  # each worker hands its queue over at least once meanwhile
        writers = [pid for worker in server.worker_pids() for pid in writer_processes(worker)]
        assert writers, "no capture writer process runs beside the workers"
        for pid in server.worker_pids():
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(map(running, writers)), 30, "the killed workers' writer processes to exit")
        assert captured_records(store_file(models_dir)) == 60


def writer_processes(worker: int) -> list[int]:
    # A thread's children are listed under that thread: the writer's is started by the worker's hand-over thread.
    tasks = Path(f"/proc/{worker}/task").iterdir()
    children = [pid for task in tasks for pid in (task / "children").read_text().split()]
    return [int(pid) for pid in children if b"app.capture" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def running(pid: int) -> bool:
    """Neither gone nor a zombie left for its new parent to reap."""
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:4]
    except FileNotFoundError:
        return False


def _answers(server: LiveServer) -> bool:
    try:
        return httpx.get(f"{server.url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_graceful_stop_writes_what_is_queued(models_dir: Path, tmp_path: Path) -> None:
    with start_server(models_dir, tmp_path / "server.log") as server:
        for index in range(30):
            predict(server.url, f"stop-{index}", records=3)
    assert captured_records(store_file(models_dir)) == 90


def test_a_replaced_model_file_starts_new_figures(models_dir: Path, tmp_path: Path) -> None:
    with start_server(models_dir, tmp_path / "server.log") as server:
        predict(server.url, "old-version")
        label = {"request_id": "old-version", "label": "Adelie"}
        assert httpx.post(f"{server.url}/feedback", json=label, timeout=30).json()["matched"] == 1
        old = httpx.get(f"{server.url}/models/logistic_regression/performance", timeout=30).json()
        replacement = models_dir / "replacement.tmp"
        replacement.write_bytes((models_dir / "svc.pkl").read_bytes())
        replacement.replace(models_dir / "logistic_regression.pkl")
        predict(server.url, "new-version")
        # The new version's first prediction reaches the store when the writer next runs, not with the answer.
        wait_for(lambda: len(performance(server.url, "logistic_regression")["versions"]) == 2, 20, "both versions")
        body = performance(server.url, "logistic_regression")
        assert body["version"] != old["version"]
        versions = {version["version"]: version for version in body["versions"]}
        assert versions[body["version"]]["window_labels"] == 0 and versions[body["version"]]["current"]
        assert versions[old["version"]]["window_labels"] == 1 and not versions[old["version"]]["current"]


pytestmark = pytest.mark.timeout(300)
