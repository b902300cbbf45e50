"""GET /metrics: series that move with the requests, exact totals summed over two real workers, bounded labels."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import random
import shutil
import signal
import string
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app.features import FEATURES
from tests.helpers import RECORD, ROOT, older_model_file, wait_for
from tests.live import LiveServer, free_port, needs_proc, start_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def post_each(
    url: str, paths: list[str], records: int = 1, threads: int = 8, headers: dict[str, str] | None = None
) -> list[int]:
    """One new connection a request, several at once, so that the kernel spreads them over the workers."""

    def post(path: str) -> int:
        body = {"records": [RECORD] * records}
        return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(post, paths))


@pytest.fixture(scope="module")
def server(module_models_dir: Path) -> Iterator[LiveServer]:
    """Two workers over the module's models; tests that change models use their own copy (models_dir)."""
    with start_server(module_models_dir, module_models_dir.parent / "server.log", workers=2) as live:
        yield live


def metrics_dir(server: LiveServer) -> Path:
    (pid, *_) = server.worker_pids()
    return Path(server.worker_environ(pid)["PROMETHEUS_MULTIPROC_DIR"])


@needs_proc
def test_counts_are_exact_summed_over_both_workers(server: LiveServer) -> None:
    workers = server.worker_pids()
    before = scrape(server.url)
    sent = 0
    # Until both workers have answered some: each keeps its own values, the scrape adds them up.
    for _ in range(20):
        assert post_each(server.url, ["/predict?model=logistic_regression"] * 16, records=3) == [200] * 16
        sent += 16
        written = {path.name for path in metrics_dir(server).iterdir()}
        if {f"counter_{pid}.db" for pid in server.worker_pids()} <= written:
            break
    else:
        pytest.fail("the requests never reached both workers")
    after = scrape(server.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"method": "POST", "route": "/predict"}
    assert moved("penguins_http_requests_total", **route, status="200") == sent
    assert moved("penguins_http_request_duration_seconds_count", **route) == sent
    assert moved("penguins_inference_requests_total", model="logistic_regression", outcome="success") == sent
    assert moved("penguins_predicted_records_total", model="logistic_regression") == 3 * sent
    assert moved("penguins_predict_duration_seconds_count", model="logistic_regression") == sent
    assert moved("penguins_model_loads_total", model="logistic_regression", outcome="success") in (0, 1, 2)
    assert value(after, "penguins_model_files") == 3
    # Whichever worker answers the scrape, the totals are the same.
    records = "penguins_predicted_records_total"
    totals = {value(scrape(server.url), records, model="logistic_regression") for _ in range(8)}
    assert totals == {value(after, records, model="logistic_regression")}
    assert server.worker_pids() == workers  # none was restarted meanwhile


def test_routes_are_labelled_by_template_and_dialect_errors_count(server: LiveServer) -> None:
    before = scrape(server.url)
    assert httpx.get(f"{server.url}/models/svc").status_code == 200
    assert httpx.get(f"{server.url}/models/no_such_model").status_code == 404
    assert httpx.post(f"{server.url}/predict/svc", content=b"{").status_code == 422
    after = scrape(server.url)

    def moved(**labels: str) -> float:
        name = "penguins_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(method="GET", route="/models/{name}", status="200") == 1
    assert moved(method="GET", route="/models/{name}", status="404") == 1
    assert moved(method="POST", route="/predict/{model_name}", status="422") == 1
    assert not any("no_such_model" in str(key) for key in after)


def test_promtool_accepts_the_exposition(server: LiveServer, tmp_path: Path) -> None:
    assert shutil.which("promtool"), "promtool (Debian package prometheus) is needed: .ci/run installs it"
    post_each(server.url, ["/predict?model=svc", "/predict/compare", "/predict?model=random_forest"])
    for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"]:
        response = httpx.get(f"{server.url}/metrics", headers={"accept": accept})
        assert response.status_code == 200
        if accept == "text/plain":
            assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            checked = subprocess.run(
                ["promtool", "check", "metrics"], input=response.content, capture_output=True, timeout=60
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert checked.stdout + checked.stderr == b""  # no lint warnings either
        else:
            assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
            assert response.text.endswith("# EOF\n")


# The series /metrics reads from the capture store (app/feedback_metrics.py).
STORE_SERIES = ("penguins_feedback_", "penguins_live_", "penguins_label_", "penguins_estimated_", "penguins_reference_")
# Distinct names and paths, each a series if labels were not bounded: a few thousand show it as well as a million.
FLOOD = 2_000


def random_name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))


def test_a_flood_of_unknown_names_and_paths_adds_no_series(server: LiveServer) -> None:
    rng = random.Random(9)
    kinds: list[Callable[[str], tuple[str, str]]] = [
        lambda name: ("POST", f"/predict?model={name}"),
        lambda name: ("POST", f"/predict/{name}"),
        lambda name: ("GET", f"/models/{name}"),
        lambda name: ("GET", f"/{name}/{name}"),
        lambda name: ("GET", f"/models/{name}/..%2F{name}"),
        lambda name: ("DELETE", f"/{name}"),
        lambda name: ("PROPFIND", f"/predict?model={name}"),
    ]
    # Each kind once first: the route and status series it adds are the bounded ones.
    requests = [kind(random_name(rng)) for kind in kinds]
    names = [random_name(rng) for _ in range(FLOOD)]
    flood = [kinds[index % len(kinds)](name) for index, name in enumerate(names)]
    assert len({path for _, path in flood}) == FLOOD

    def send(batch: list[tuple[str, str]]) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for method, path in batch:
                client.request(method, path, json={"records": [RECORD]})

    send(requests)
    before = scrape(server.url)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(send, [flood[start::4] for start in range(4)]))
    after = scrape(server.url)

    # The store's series may grow meanwhile, as earlier tests' captures are written: none may name the flood's.
    assert own_series(after) == own_series(before)
    named = {value for _, labels in after for _, value in labels}
    assert not named & set(names)
    assert value(after, "penguins_http_requests_total", method="other", route="/predict", status="405") >= FLOOD // 7


def own_series(samples: Samples) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The series the server makes of its own requests, not of what the capture store holds."""
    return {key for key in samples if not key[0].startswith(STORE_SERIES)}


def one_workers_gauge(folder: Path, pid: int, name: str) -> float:
    """A gauge as one worker alone has it: its file read on its own (0 before the worker has set any gauge)."""
    path = folder / f"gauge_livesum_{pid}.db"
    if not path.exists():
        return 0.0
    with tempfile.TemporaryDirectory() as alone:
        shutil.copy(path, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=alone)
        return registry.get_sample_value(name) or 0.0


@needs_proc
def test_a_killed_workers_live_gauges_stop_counting(server: LiveServer) -> None:
    victim = server.worker_pids()[0]
    # A worker loads a model on its first request for it.
    for _ in range(20):
        post_each(server.url, ["/predict?model=svc"] * 16)
        held = one_workers_gauge(metrics_dir(server), victim, "penguins_models_loaded")
        if held >= 1:
            break
    else:
        pytest.fail(f"worker {victim} never loaded a model")
    before = scrape(server.url)

    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: replaced(server, victim), 60, "uvicorn to replace the killed worker")
    samples = scrape(server.url)

    assert not list(metrics_dir(server).glob(f"gauge_live*_{victim}.db"))
    # What the killed worker held is no longer counted (its replacement holds nothing yet); what it did still is.
    assert value(samples, "penguins_models_loaded") == value(before, "penguins_models_loaded") - held
    predicted = "penguins_predicted_records_total"
    assert value(samples, predicted, model="svc") == value(before, predicted, model="svc")


def replaced(server: LiveServer, victim: int) -> bool:
    """The killed worker gone and a new one in its place."""
    workers = server.worker_pids()
    return victim not in workers and len(workers) == 2


# In one process (TestClient, `uvicorn app.main:app`): the same series, kept in memory.


def test_model_series_move_in_one_process(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    assert client.post("/predict/compare", json={"records": [RECORD] * 2}).status_code == 200
    assert client.post("/predict?model=broken", json={"records": [RECORD]}).status_code == 500
    samples = parse(client.get("/metrics").text)

    for model in ["logistic_regression", "random_forest", "svc"]:
        assert value(samples, "penguins_inference_requests_total", model=model, outcome="success") == 1
        assert value(samples, "penguins_predicted_records_total", model=model) == 2
        assert value(samples, "penguins_model_loads_total", model=model, outcome="success") == 1
    assert value(samples, "penguins_model_loads_total", model="broken", outcome="failure") == 1
    assert value(samples, "penguins_model_load_duration_seconds_count", model="broken") == 1
    assert value(samples, "penguins_models_loaded") == 3
    assert value(samples, "penguins_model_files") == 4
    assert value(samples, "penguins_http_requests_in_progress") == 1  # the scrape itself


def test_model_files_are_counted_at_each_scrape(client: TestClient, models_dir: Path) -> None:
    assert value(parse(client.get("/metrics").text), "penguins_model_files") == 3
    (models_dir / "svc.pkl").unlink()
    assert value(parse(client.get("/metrics").text), "penguins_model_files") == 2


def reference_series(samples: Samples) -> Samples:
    return {key: sample for key, sample in samples.items() if key[0].startswith("penguins_reference")}


@pytest.mark.parametrize(
    "capture",
    [
        pytest.param(True, id="from-the-store"),
        pytest.param(False, id="capture-off-from-the-loaded-models"),
    ],
)
def test_the_reference_accuracy_of_each_version_that_answered_is_exported(
    make_client: Callable[..., TestClient], models_dir: Path, capture: bool
) -> None:
    older_model_file(models_dir / "svc.pkl", models_dir / "older.pkl", "reference_accuracy")
    client = make_client(capture=capture)
    assert not reference_series(parse(client.get("/metrics").text))
    assert client.post("/predict/compare", json={"records": [RECORD]}).status_code == 200
    # With capture on, the writer stores each version's reference, a moment after the answer.
    wait_for(lambda: len(reference_series(parse(client.get("/metrics").text))) == 9, 10, "3 models' references")
    samples = parse(client.get("/metrics").text)
    for name in ["logistic_regression", "random_forest", "svc"]:
        info = client.get(f"/models/{name}").json()["reference_accuracy"]
        version = client.get(f"/v2/models/{name}").json()["versions"][0]
        for series, key in [("", "mean"), ("_lower", "lower"), ("_upper", "upper")]:
            assert (
                samples[(f"penguins_reference_accuracy{series}", (("model", name), ("version", version)))]
                == (info[key])
            )
    # A file without it has no series.
    assert not [labels for name, labels in reference_series(samples) if ("model", "older") in labels]


def test_metrics_off_answers_404(make_client: Callable[..., TestClient]) -> None:
    response = make_client(metrics=False).get("/metrics")
    assert response.status_code == 404
    assert response.json() == {"detail": "Metrics are off (METRICS=0)."}


# A real Prometheus server (Debian's package, as CI installs it) scraping a live server with two workers.


@contextmanager
def prometheus_scraping(target: str, folder: Path, token: str = "") -> Iterator[str]:
    """Prometheus on a free loopback port with the stack's own config, but scraping target every second."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus (Debian package prometheus) is needed: .ci/run installs it"
    (folder / "api_token").write_text(token)
    # The alerting rules go beside the config, as compose mounts them.
    shutil.copy(ROOT / "compose" / "prometheus" / "alerts.yml", folder)
    shipped = yaml.safe_load((ROOT / "compose" / "prometheus" / "prometheus.yml").read_text())
    # Every second instead of every 5 s, so that the test waits less; the timeout stays below the interval.
    shipped["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s"}
    (job,) = shipped["scrape_configs"]
    # The stack finds its API containers through Docker's DNS; here the one target is named.
    assert job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    assert job["authorization"]["credentials_file"] == "/tmp/api_token"
    job["authorization"]["credentials_file"] = str(folder / "api_token")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(shipped))
    port = free_port()
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: _answers(f"{url}/-/ready"), 60, f"Prometheus to get ready (its log: {folder / 'prometheus.log'})"
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def promql(prometheus: str, query: str) -> float | None:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", answer
    results = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else None


def answers(prometheus: str, query: str, expected: float) -> bool:
    return promql(prometheus, query) == expected


def test_a_real_prometheus_scrapes_two_workers_with_the_token_and_counts_the_requests(
    models_dir: Path, tmp_path: Path
) -> None:
    token = "a-long-random-token-0123456789"
    with (
        start_server(models_dir, tmp_path / "server.log", workers=2, settings={"API_TOKEN": token}) as server,
        prometheus_scraping(server.url.removeprefix("http://"), tmp_path, token) as prometheus,
    ):
        wait_for(functools.partial(answers, prometheus, 'up{job="penguins-api"}', 1), 30, "the API's target to be up")
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401  # without the token: refused
        sent = 25
        headers = {"Authorization": f"Bearer {token}"}
        assert post_each(server.url, ["/predict/svc"] * sent, headers=headers) == [200] * sent
        queries = {
            'sum(penguins_http_requests_total{route="/predict/{model_name}", status="200"})': sent,
            'sum(penguins_inference_requests_total{model="svc", outcome="success"})': sent,
            'sum(penguins_predicted_records_total{model="svc"})': sent,
        }
        for query, expected in queries.items():
            wait_for(functools.partial(answers, prometheus, query, expected), 30, f"{query} to be {expected}")


def test_a_real_prometheus_scrapes_without_a_token_and_loads_the_alerting_rules(live_url: str, tmp_path: Path) -> None:
    # No API_TOKEN: the token file is empty, as the compose service writes it, and the scrape still goes through.
    with prometheus_scraping(live_url.removeprefix("http://"), tmp_path) as prometheus:
        wait_for(functools.partial(answers, prometheus, 'up{job="penguins-api"}', 1), 30, "the API's target to be up")
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert alerts == {
        "PenguinsFeatureDrift", "PenguinsPredictionDrift", "PenguinsLiveAccuracyBelowReference",
        "PenguinsEstimatedAccuracyLow", "PenguinsLabelCoverageLow", "PenguinsHighErrorRate", "PenguinsSlowAnswers",
    }  # fmt: skip
    assert not [rule for group in groups for rule in group["rules"] if rule["health"] == "err"]


# The drift figures (app/monitoring/): the same whichever worker answers, labels from the profiles only.

DRIFT_SERIES = (
    "penguins_feature_drift_psi", "penguins_prediction_drift_psi", "penguins_drift_window_records",
    "penguins_predictions_total", "penguins_prediction_confidence", "penguins_feature_out_of_range_total",
)  # fmt: skip


def drift_samples(samples: Samples) -> Samples:
    return {key: figure for key, figure in samples.items() if key[0].startswith(DRIFT_SERIES)}


def socket_owner(pids: list[int], server_port: int, client_port: int) -> int:
    """The process holding the server's end of a loopback connection (/proc/net/tcp, then each one's descriptors)."""
    ends = f"0100007F:{server_port:04X} 0100007F:{client_port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    (inode,) = [row[9] for row in rows if f"{row[1]} {row[2]}" == ends]
    for pid in pids:
        if f"socket:[{inode}]" in open_descriptors(pid):
            return pid
    raise AssertionError(f"no worker holds socket {inode}")


def open_descriptors(pid: int) -> set[str]:
    """What each of a process's descriptors points to; one closed while being read is simply not there."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            targets.add(os.readlink(fd))
    return targets


def on_a_new_connection(server: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, int, str]:
    """One request on a connection of its own: the worker that answered it, the status and the body."""
    port = int(server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, payload, {"content-type": "application/json"})
        answer = connection.getresponse()
        text = answer.read().decode()
        assert connection.sock is not None
        worker = socket_owner(server.worker_pids(), port, connection.sock.getsockname()[1])
        return worker, answer.status, text
    finally:
        connection.close()


def test_the_drift_figures_are_the_same_whichever_worker_is_scraped(server: LiveServer) -> None:
    heavy = {**RECORD, "body_mass_g": 7000, "island": "Biscoe"}
    before = drift_samples(scrape(server.url))
    predicted_by: dict[int, int] = {}
    # Records through both workers: each writes to the same shared counts.
    for _ in range(100):
        worker, status, _ = on_a_new_connection(server, "POST", "/predict/random_forest", {"records": [RECORD, heavy]})
        assert status == 200
        predicted_by[worker] = predicted_by.get(worker, 0) + 2
        if len(predicted_by) == 2 and min(predicted_by.values()) >= 10:
            break
    else:
        pytest.fail("the predictions never reached both workers")
    # Then scrapes until each worker has answered one.
    scraped_by: dict[int, Samples] = {}
    for _ in range(100):
        worker, status, text = on_a_new_connection(server, "GET", "/metrics")
        scraped_by[worker] = drift_samples(parse(text))
        if len(scraped_by) == 2:
            break
    else:
        pytest.fail("the scrapes never reached both workers")

    first, second = scraped_by.values()
    assert first == second
    sent = sum(predicted_by.values())

    def predicted(samples: Samples) -> float:
        name = "penguins_predictions_total"
        return sum(figure for key, figure in samples.items() if key[0] == name and ("model", "random_forest") in key[1])

    assert predicted(first) - predicted(before) == sent
    window = value(first, "penguins_drift_window_records", model="random_forest")
    assert window == min(value(before, "penguins_drift_window_records", model="random_forest") + sent, 1000)


def test_odd_and_refused_records_add_no_drift_series(server: LiveServer) -> None:
    assert post_each(server.url, ["/predict/compare"]) == [200]  # every model has its series
    before = drift_samples(scrape(server.url))
    rng = random.Random(11)

    def odd_record() -> dict[str, Any]:
        word = random_name(rng)
        return rng.choice([
            {**RECORD, "island": word},  # refused: 422
            {**RECORD, "sex": word},  # refused: 422
            {**RECORD, rng.choice(["bill_length_mm", "body_mass_g"]): rng.choice([1e-9, 3e38, rng.random()])},
            {**RECORD, word: word},  # an unknown field, ignored
        ])  # fmt: skip

    def send(count: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(count):
                model = rng.choice(["svc", "random_forest", "logistic_regression"])
                client.post(f"/predict/{model}", json={"records": [odd_record() for _ in range(3)]})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(send, [500] * 4))
    after = drift_samples(scrape(server.url))

    assert set(after) == set(before)
    labels = {name: {dict(key[1]).get(name) for key in after} - {None} for name in ("model", "feature", "class")}
    assert labels["model"] == {"svc", "random_forest", "logistic_regression"}
    assert labels["feature"] == set(FEATURES) and labels["class"] == {"Adelie", "Chinstrap", "Gentoo"}


@needs_proc
def test_with_metrics_off_two_workers_still_share_the_drift_figures(models_dir: Path, tmp_path: Path) -> None:
    with start_server(models_dir, tmp_path / "server.log", workers=2, settings={"METRICS": "0"}) as live:
        folder = metrics_dir(live)
        predicted_by: list[int] = []
        for _ in range(100):
            worker, status, _ = on_a_new_connection(live, "POST", "/predict/svc", {"records": [RECORD]})
            assert status == 200
            predicted_by.append(worker)
            if len(set(predicted_by)) == 2:
                break
        answers: dict[int, str] = {}
        for _ in range(100):
            worker, status, text = on_a_new_connection(live, "GET", "/models/svc/drift")
            answers[worker] = text
            if len(answers) == 2:
                break
        assert httpx.get(f"{live.url}/metrics").status_code == 404
    assert not folder.exists()  # the folder the workers shared goes with the server
    assert len(set(predicted_by)) == len(answers) == 2, "the requests never reached both workers"
    first, second = answers.values()
    assert first == second
    assert json.loads(first)["records"] == len(predicted_by)
