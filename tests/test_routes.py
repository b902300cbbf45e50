"""scripts/routes.py through the Makefile (make route, promote, rollback, routes) against a live server, which follows
each change on its next request; and a sticky header keeping a client on one variant across two workers."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.routes import ROUTES_FILE
from tests.helpers import RECORD, ROOT
from tests.live import LiveServer, start_server

PREDICT = {"records": [RECORD]}
REQUESTS = 30


@pytest.fixture(scope="module")
def folder(module_models_dir: Path) -> Path:
    """The module's live server's models folder, where the make targets write routes.json."""
    return module_models_dir


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[LiveServer]:
    with start_server(folder, folder.parent / "server.log") as live:
        yield live


def make(folder: Path, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
    """A target as a person runs it: make <target> LOCAL=1 ..., with MODELS_DIR the server's folder."""
    command = ["make", "--no-print-directory", "-s", target, "LOCAL=1", *variables]
    env = {**os.environ, "MODELS_DIR": str(folder)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def served(server: LiveServer, headers: dict[str, str] | None = None) -> Counter[str]:
    """Which variant answered each of REQUESTS requests for the route, each on a new connection."""
    variants: Counter[str] = Counter()
    for _ in range(REQUESTS):
        response = httpx.post(f"{server.url}/predict/penguins", json=PREDICT, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == response.headers["x-route-variant"] + ".pkl"
        variants[response.headers["x-route-variant"]] += 1
    return variants


def test_route_promote_and_rollback_change_the_variant_served_without_a_restart(
    folder: Path, server: LiveServer
) -> None:
    done = make(folder, "route", "ROUTE=penguins", "VARIANTS=logistic_regression=1 random_forest=1", "SHADOWS=svc")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Route penguins: logistic_regression 50%, random_forest 50%; shadows svc.\n"
    assert set(served(server)) == {"logistic_regression", "random_forest"}

    done = make(folder, "promote", "ROUTE=penguins", "MODEL=random_forest")
    assert done.returncode == 0, done.stderr
    assert served(server) == {"random_forest": REQUESTS}
    routes = json.loads((folder / ROUTES_FILE).read_text())
    assert routes["routes"]["penguins"] == {"variants": {"random_forest": 100}, "shadows": ["svc"]}
    assert routes["previous"]["penguins"]["variants"] == {"logistic_regression": 1, "random_forest": 1}

    done = make(folder, "rollback", "ROUTE=penguins")
    assert done.returncode == 0, done.stderr
    assert set(served(server)) == {"logistic_regression", "random_forest"}

    done = make(folder, "rollback", "ROUTE=penguins")  # a second rollback swaps back
    assert done.returncode == 0, done.stderr
    assert served(server) == {"random_forest": REQUESTS}

    shown = make(folder, "routes")
    assert shown.stdout.splitlines()[1:] == [
        "  penguins: random_forest 100%; shadows svc",
        "  penguins, previous (make rollback): logistic_regression 50%, random_forest 50%; shadows svc",
    ]
    assert server.process.poll() is None


def test_a_broken_file_on_a_live_server_keeps_the_last_good_routes(folder: Path, server: LiveServer) -> None:
    assert make(folder, "route", "ROUTE=penguins", "VARIANTS=svc=1").returncode == 0
    assert served(server) == {"svc": REQUESTS}
    (folder / ROUTES_FILE).write_text('{"routes": {"penguins": {"variants": {"svc": -1}}}}')
    assert served(server) == {"svc": REQUESTS}
    page = httpx.get(f"{server.url}/monitor", timeout=30).text
    assert "routes.json refused: routes.penguins.variants.svc: Input should be greater than or equal to 0" in page
    assert "refused by the API now" in make(folder, "routes").stdout
    refused = make(folder, "promote", "ROUTE=penguins", "MODEL=svc")
    assert refused.returncode != 0
    assert "is refused (routes.penguins.variants.svc: Input should be greater than or equal to 0)" in refused.stderr
    log = server.log.read_text()
    assert log.count("routes.json refused") == 1  # once for this version of the file, however many requests


@pytest.mark.parametrize(
    ("target", "variables", "says"),
    [
        pytest.param("route", [], "ROUTE is missing: make route ROUTE=penguins", id="route-without-a-name"),
        pytest.param("promote", ["ROUTE=penguins"], "MODEL is missing", id="promote-without-a-model"),
        pytest.param("rollback", ["ROUTE=nosuch"], "Route 'nosuch' has no previous state", id="rollback-nothing"),
        pytest.param("route", ["ROUTE=svc", "VARIANTS=svc=1"], "the name of a model file (svc.pkl)", id="model-name"),
        pytest.param("route", ["ROUTE=p", "VARIANTS=gone=1"], "'gone', which is not a model file", id="unknown"),
        pytest.param("route", ["ROUTE=p", "VARIANTS=svc=-1"], "greater than or equal to 0", id="weight-below-0"),
    ],
)
def test_a_refused_change_leaves_the_file_as_it_was(
    tmp_path: Path, trained_models_dir: Path, target: str, variables: list[str], says: str
) -> None:
    for model in trained_models_dir.glob("*.pkl"):
        (tmp_path / model.name).write_bytes(b"")
    before = '{"routes": {"penguins": {"variants": {"svc": 1}}}}'
    (tmp_path / ROUTES_FILE).write_text(before)
    refused = make(tmp_path, target, *variables)
    assert refused.returncode != 0
    assert says in refused.stderr
    assert (tmp_path / ROUTES_FILE).read_text() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [ROUTES_FILE, *(model.name for model in trained_models_dir.glob("*.pkl"))]
    )  # no temporary file left behind


def test_a_sticky_client_gets_one_variant_from_either_of_two_workers(models_dir: Path) -> None:
    assert (
        make(
            models_dir,
            "route",
            "ROUTE=penguins",
            "VARIANTS=logistic_regression=1 random_forest=1 svc=1",
            "STICKY=X-Client-ID",
        ).returncode
        == 0
    )
    with start_server(models_dir, models_dir.parent / "server.log", workers=2) as live:
        assert len(live.worker_pids()) == 2
        for number in range(12):
            variants = served(live, {"X-Client-ID": f"client-{number}"})
            assert len(variants) == 1, (number, variants)
        assert len(served(live)) == 3  # without the header, every variant
