"""End to end: `make up REPLICAS=3`, three API containers behind HAProxy, with the real images.

Routing by replica, the headers that pass through, the client's address in the logs, hot reload on every
replica, Prometheus finding each one, a replica killed under load and brought back, and the way back to one
API container. Run by `make test-compose`, from a temporary copy of the working tree (tests/stack.py).
The failover figures of compose/README.md come from here: run with `-s` to see them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_network
from typing import Any

import httpx
import pytest

from app.registry import VERSION_DIGITS
from tests.helpers import RECORD, ROOT, wait_for
from tests.stack import Project, docker, temporary_project

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1200)]

REPLICAS = 3
TOKEN = "replicas-test-token-0123456789"
# A client's claim to be someone else: HAProxy drops it, and no replica believes it.
SPOOFED = "203.0.113.9"
# The kill under load: this many requests from this many keep-alive clients, each pausing between two
# (about 20 s in all here); the kill comes once a quarter of them are answered.
LOAD_REQUESTS = 3000
LOAD_CLIENTS = 4
LOAD_PAUSE = 0.02
# Waits for something that must happen (a replica back, a scrape): generous bounds, so a busy machine passes.
WAIT_SECONDS = 120
HAPROXY_DOWN = re.compile(r"Server replicas/\S+ (is DOWN|was DOWN|is going DOWN)")


def free_replicas_network() -> str:
    """The first three numbers of a /24 in 172.16.0.0/16 that no Docker network overlaps, nor the default one
    that a user's `make up REPLICAS=3` would take."""
    default = re.search(r"REPLICAS_NETWORK:-([0-9.]+)}", (ROOT / "compose" / "replicas.yml").read_text())
    assert default
    inspected = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *networks())
    taken = [ip_network(subnet) for subnet in [*inspected.split(), f"{default[1]}.0/24"]]
    prefixes = [f"172.16.{third}" for third in range(1, 255)]
    free = [prefix for prefix in prefixes if not any(ip_network(f"{prefix}.0/24").overlaps(net) for net in taken)]
    return random.choice(free)


def networks() -> list[str]:
    return docker("network", "ls", "-q").split()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    # The token proves the Authorization header passes through; JSON access logs name each request's client.
    settings = {
        "API_TOKEN": TOKEN,
        "ACCESS_LOG": "1",
        "LOG_FORMAT": "json",
        "REPLICAS_NETWORK": free_replicas_network(),
    }
    with temporary_project(tmp_path_factory.mktemp("compose-replicas"), settings=settings) as created:
        yield created


@pytest.fixture(scope="module")
def printed(project: Project) -> str:
    """What `make up REPLICAS=3 MONITORING=1` prints."""
    return project.make("up", f"REPLICAS={REPLICAS}", "MONITORING=1")


@pytest.fixture(scope="module")
def replicated(printed: str, project: Project) -> Project:
    return project


def inspect(container: str) -> Any:
    return json.loads(docker("inspect", container))[0]


def replica_hosts(project: Project) -> dict[str, str]:
    """Each running replica's container hostname (what X-Served-By names), by container ID."""
    return {container: inspect(container)["Config"]["Hostname"] for container in project.containers("api")}


def address(container: str, network: str) -> str:
    found: str = inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]
    return found


def log_lines(container: str, *options: str) -> list[str]:
    """The container's log, standard output and error (the API and HAProxy write to both)."""
    done = subprocess.run(["docker", "logs", *options, container], capture_output=True, text=True, timeout=60)
    return done.stdout.splitlines() + done.stderr.splitlines()


def balanced_client(project: Project) -> httpx.Client:
    """A keep-alive client of the load balancer, with the token."""
    return httpx.Client(base_url=project.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def predict(client: httpx.Client, model: str = "svc") -> httpx.Response:
    return client.post("/predict", params={"model": model}, json={"records": [RECORD]})


def test_up_prints_jupyterlab_and_the_api_behind_haproxy(printed: str, project: Project) -> None:
    (haproxy,) = project.containers("haproxy")

    assert f"JupyterLab: {project.jupyter_url}/lab?token=" in printed
    assert f"API:        {project.api_url}/docs" in printed
    assert docker("port", haproxy, "8000").strip() == project.api_url.removeprefix("http://")


def test_the_replicas_publish_no_port_of_their_own(replicated: Project) -> None:
    replicas = replicated.containers("api")

    assert len(replicas) == REPLICAS
    assert [docker("port", replica).strip() for replica in replicas] == [""] * REPLICAS


def test_requests_through_haproxy_are_answered_by_every_replica(replicated: Project) -> None:
    with balanced_client(replicated) as client:
        responses = [predict(client) for _ in range(300)]

    assert [response.status_code for response in responses] == [200] * 300
    assert set(Counter(response.headers["x-served-by"] for response in responses)) == set(
        replica_hosts(replicated).values()
    )


def test_the_request_id_and_the_token_pass_through_haproxy(replicated: Project) -> None:
    with balanced_client(replicated) as client:
        answered = client.get("/models", headers={"X-Request-ID": "through-haproxy-1"})
    refused = httpx.get(f"{replicated.api_url}/models", timeout=30)

    assert answered.status_code == 200
    assert answered.headers["x-request-id"] == "through-haproxy-1"
    assert refused.status_code == 401


def current_version(client: httpx.Client, model: str) -> dict[str, Any]:
    """The model's current version's live figures, from whichever replica answers (all read the shared store)."""
    versions = client.get(f"/models/{model}/performance").raise_for_status().json()["versions"]
    return next((version for version in versions if version["current"]), {"recent_predictions": 0})


def test_labels_posted_through_haproxy_join_the_predictions_every_replica_captured(replicated: Project) -> None:
    model, count = "random_forest", 30
    request_ids = [f"joined-{index}-{random.getrandbits(32):08x}" for index in range(count)]
    with balanced_client(replicated) as client:
        before = current_version(client, model)["recent_predictions"]
        served = [
            client.post("/predict", params={"model": model}, json={"records": [RECORD]}, headers={"X-Request-ID": rid})
            for rid in request_ids
        ]
        # Each replica writes its captures to the shared SQLite file within a moment: all of them there first.
        wait_for(lambda: current_version(client, model)["recent_predictions"] >= before + count, 30, "the captures")
        labels = [{"request_id": request_id, "label": "Adelie"} for request_id in request_ids]
        outcome = client.post("/feedback", json=labels).raise_for_status().json()
        # Read through HAProxy several times: whichever replica answers gives the same figures.
        figures = [current_version(client, model) for _ in range(REPLICAS * 2)]

    assert before + count <= 1000  # within the window, so the count above is exact
    assert {response.status_code for response in served} == {200}
    assert {response.headers["x-served-by"] for response in served} == set(replica_hosts(replicated).values())
    assert (outcome["matched"], outcome["unknown"]) == (count, 0)
    assert {(version["window_labels"], version["correct"]) for version in figures} == {(count, count)}


def logged_client(container: str, request_id: str) -> str:
    """The client address in the replica's access-log line for the request."""
    line = wait_for(lambda: access_line(container, request_id), 10, f"{container}'s access line for {request_id}", 0.2)
    return str(line["client"]).rsplit(":", 1)[0]


def access_line(container: str, request_id: str) -> dict[str, Any] | None:
    for line in log_lines(container):
        if line.startswith("{") and f'"request_id": "{request_id}"' in line:
            entry: dict[str, Any] = json.loads(line)
            if entry["logger"] == "app.access":
                return entry
    return None


def test_a_replica_logs_the_client_haproxy_forwards_not_the_one_claimed(replicated: Project) -> None:
    haproxy_address = f"{replicated.env['REPLICAS_NETWORK']}.2"
    with balanced_client(replicated) as client:
        response = client.get("/models", headers={"X-Request-ID": "forwarded-1", "X-Forwarded-For": SPOOFED})
    by_host = {host: container for container, host in replica_hosts(replicated).items()}

    client_address = logged_client(by_host[response.headers["x-served-by"]], "forwarded-1")

    assert client_address not in (SPOOFED, haproxy_address)
    assert client_address.startswith(replicated.env["REPLICAS_NETWORK"] + ".")  # the network's side of the host


def test_a_replica_ignores_x_forwarded_for_from_anyone_but_haproxy(replicated: Project) -> None:
    sender, receiver = replicated.containers("api")[:2]
    network = f"{replicated.name}_default"
    url = f"http://{address(receiver, network)}:8000/models"
    request = (
        f"import urllib.request as u; u.urlopen(u.Request({url!r}, headers={{'X-Forwarded-For': {SPOOFED!r}, "
        f"'X-Request-ID': 'direct-1', 'Authorization': 'Bearer {TOKEN}'}}), timeout=10)"
    )
    docker("exec", sender, "python", "-c", request)

    assert logged_client(receiver, "direct-1") == address(sender, network)


def test_a_replaced_model_is_served_in_its_new_version_by_every_replica(replicated: Project) -> None:
    models = replicated.root / "models"
    replacement = models / ".logistic_regression.replacing"
    shutil.copy2(models / "random_forest.pkl", replacement)
    expected = [hashlib.sha256(replacement.read_bytes()).hexdigest()[:VERSION_DIGITS]]
    hosts = set(replica_hosts(replicated).values())
    with balanced_client(replicated) as client:
        before = client.get("/v2/models/logistic_regression").json()["versions"]
        os.replace(replacement, models / "logistic_regression.pkl")
        versions: dict[str, list[list[str]]] = {}
        for _ in range(300):
            response = client.get("/v2/models/logistic_regression")
            versions.setdefault(response.headers["x-served-by"], []).append(response.json()["versions"])
            if set(versions) == hosts:
                break

    assert before != expected
    assert set(versions) == hosts
    assert all(answers == [expected] * len(answers) for answers in versions.values()), versions


def promql(project: Project, query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{project.prometheus_url}/api/v1/query", params={"query": query}, timeout=30).json()
    assert answer["status"] == "success", answer
    results: list[dict[str, Any]] = answer["data"]["result"]
    return results


def scraped_targets(project: Project) -> dict[str, str]:
    answer = httpx.get(f"{project.prometheus_url}/api/v1/targets", timeout=30).json()
    return {target["labels"]["instance"]: target["health"] for target in answer["data"]["activeTargets"]}


def test_prometheus_finds_each_replica_and_sums_their_requests(replicated: Project) -> None:
    models = replicated.root / "models"
    shutil.copy2(models / "svc.pkl", models / "counted.pkl")
    network = f"{replicated.name}_default"
    expected = {f"{address(replica, network)}:8000": "up" for replica in replicated.containers("api")}
    wait_for(lambda: scraped_targets(replicated) == expected, WAIT_SECONDS, f"Prometheus to see {expected}", 0.5)
    sent = 90
    with balanced_client(replicated) as client:
        statuses = [predict(client, "counted").status_code for _ in range(sent)]
    total = 'sum(penguins_predicted_records_total{model="counted"})'

    def counted() -> bool:
        return [result["value"][1] for result in promql(replicated, total)] == [str(sent)]

    wait_for(counted, WAIT_SECONDS, lambda: f"{total} to reach {sent} (now {promql(replicated, total)})", 0.5)
    assert statuses == [200] * sent
    by_replica = promql(replicated, 'penguins_predicted_records_total{model="counted"}')
    assert {result["metric"]["instance"] for result in by_replica} == set(expected)
    assert promql(replicated, 'count(up{job="penguins-api"} == 1)')[0]["value"][1] == str(REPLICAS)


@dataclass
class Kill:
    """A replica killed with SIGKILL under steady load through HAProxy, and what the clients saw."""

    victim: str  # container ID
    host: str  # its hostname, what X-Served-By names
    killed_at: float  # seconds since the epoch, just before `docker kill`
    outcomes: list[int | str]  # each request's status, or the error that ended it
    load_seconds: float  # how long the load took
    after: list[httpx.Response]  # the 500 requests sent once the load stopped
    started: dict[str, str]  # every other container's start time


def start_times(project: Project) -> dict[str, str]:
    return {container: inspect(container)["State"]["StartedAt"] for container in project.containers()}


def steady_load(project: Project, during: Callable[[], None]) -> list[int | str]:
    """LOAD_REQUESTS predictions through HAProxy, spread over LOAD_CLIENTS; `during` runs a quarter of the way."""
    outcomes: list[int | str] = []

    def run_client() -> None:
        with balanced_client(project) as client:
            for _ in range(LOAD_REQUESTS // LOAD_CLIENTS):
                try:
                    outcomes.append(predict(client).status_code)
                except httpx.HTTPError as error:
                    outcomes.append(type(error).__name__)
                time.sleep(LOAD_PAUSE)

    clients = [threading.Thread(target=run_client) for _ in range(LOAD_CLIENTS)]
    for client in clients:
        client.start()

    def quarter_answered() -> bool:
        return len(outcomes) >= LOAD_REQUESTS // 4 or not any(client.is_alive() for client in clients)

    wait_for(quarter_answered, WAIT_SECONDS, "a quarter of the load to be answered (the fault comes then)", 0.01)
    during()
    for client in clients:
        client.join(timeout=600)
    return outcomes


@pytest.fixture(scope="module")
def killed(replicated: Project) -> Kill:
    victim, host = next(iter(replica_hosts(replicated).items()))
    started = {container: at for container, at in start_times(replicated).items() if container != victim}
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.time())
        docker("kill", "-s", "KILL", victim)

    began = time.monotonic()
    outcomes = steady_load(replicated, kill)
    load_seconds = time.monotonic() - began
    with balanced_client(replicated) as client:
        after = [predict(client) for _ in range(500)]
    return Kill(victim, host, killed_at[0], outcomes, load_seconds, after, started)


def seconds_until_haproxy_took_it_out(project: Project, kill: Kill) -> float:
    (haproxy,) = project.containers("haproxy")
    for line in log_lines(haproxy, "--timestamps"):
        stamp, _, message = line.partition(" ")
        at = datetime.fromisoformat(stamp).timestamp()
        if at >= kill.killed_at and HAPROXY_DOWN.search(message):
            return at - kill.killed_at
    raise AssertionError("HAProxy never logged the killed replica down")


def test_a_replica_killed_under_load_costs_at_most_one_request_in_a_thousand(replicated: Project, killed: Kill) -> None:
    lost = [outcome for outcome in killed.outcomes if outcome != 200]
    out_after = seconds_until_haproxy_took_it_out(replicated, killed)
    print(
        f"\nreplica killed under load: {len(lost)} of {len(killed.outcomes)} requests "
        f"({killed.load_seconds:.0f} s) lost {Counter(lost)}, "
        f"HAProxy took it out {out_after:.2f} s after the kill"
    )

    assert killed.victim not in replicated.containers("api")
    assert len(killed.outcomes) == LOAD_REQUESTS
    assert len(lost) * 1000 <= LOAD_REQUESTS, Counter(lost)


def test_the_500_requests_after_a_kill_all_succeed_on_the_survivors(killed: Kill) -> None:
    assert [response.status_code for response in killed.after] == [200] * 500
    assert killed.host not in {response.headers["x-served-by"] for response in killed.after}


@dataclass
class Revival:
    """`make up REPLICAS=3` after the kill, timed (seconds since the epoch) until the replica answers again."""

    began: float  # `make up` started
    container_started: float  # the killed replica's container started again
    app_started: float  # its app logged that it is ready to serve
    answered: float  # its first answer through HAProxy


def first_answer_by(project: Project, host: str, answered: list[float], stop: threading.Event) -> None:
    """Predictions through HAProxy, back to back, until host answers one (its time into answered) or stop."""
    with balanced_client(project) as client:
        while not stop.is_set():
            try:
                if predict(client).headers.get("x-served-by") == host:
                    answered.append(time.time())
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)


def app_started_at(container: str) -> float:
    """When the container's app last logged that it is ready (uvicorn's line)."""
    ready = [line for line in log_lines(container, "--timestamps") if "Application startup complete" in line]
    assert ready, f"{container} never logged its start"
    return datetime.fromisoformat(ready[-1].split(" ", 1)[0]).timestamp()


@pytest.fixture(scope="module")
def revived(replicated: Project, killed: Kill) -> Revival:
    answered: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=first_answer_by, args=(replicated, killed.host, answered, stop))
    began = time.time()
    poller.start()
    try:
        replicated.make("up", f"REPLICAS={REPLICAS}", "MONITORING=1")
        poller.join(timeout=WAIT_SECONDS)
    finally:
        stop.set()
        poller.join(timeout=60)
    assert answered, "the killed replica never answered again"
    started = datetime.fromisoformat(inspect(killed.victim)["State"]["StartedAt"]).timestamp()
    return Revival(began, started, app_started_at(killed.victim), answered[0])


def test_up_brings_a_killed_replica_back_without_restarting_anything_else(
    replicated: Project, killed: Kill, revived: Revival
) -> None:
    print(
        f"\nkilled replica back: its container started {revived.container_started - revived.began:.1f} s after "
        f"`make up`, its app {revived.app_started - revived.container_started:.1f} s later, its first answer "
        f"through HAProxy {revived.answered - revived.app_started:.1f} s after that "
        f"({revived.answered - revived.began:.1f} s in all)"
    )

    assert killed.victim in replicated.containers("api")
    assert {container: at for container, at in start_times(replicated).items() if container != killed.victim} == (
        killed.started
    )


def test_a_replica_brought_back_takes_its_share_of_requests(
    replicated: Project, killed: Kill, revived: Revival
) -> None:
    with balanced_client(replicated) as client:
        hosts = Counter(predict(client).headers["x-served-by"] for _ in range(90))

    assert set(hosts) == set(replica_hosts(replicated).values())
    assert hosts[killed.host] > 0


def test_every_replica_follows_a_promotion_and_a_rollback(replicated: Project, revived: Revival) -> None:
    def variants_by_replica() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        with balanced_client(replicated) as client:
            for _ in range(60):
                answer = predict(client, "penguins")
                assert answer.status_code == 200, answer.text
                seen.setdefault(answer.headers["x-served-by"], set()).add(answer.headers["x-route-variant"])
        return seen

    replicas = set(replica_hosts(replicated).values())
    replicated.make_with({"ROUTE": "penguins", "VARIANTS": "logistic_regression=100 svc=0"}, "route")
    wait_for(lambda: variants_by_replica() == {host: {"logistic_regression"} for host in replicas}, 60,
             "every replica to serve the route")  # fmt: skip
    replicated.make_with({"ROUTE": "penguins", "MODEL": "svc"}, "promote")
    wait_for(lambda: variants_by_replica() == {host: {"svc"} for host in replicas}, 60,
             "every replica to follow the promotion")  # fmt: skip
    replicated.make_with({"ROUTE": "penguins"}, "rollback")
    wait_for(lambda: variants_by_replica() == {host: {"logistic_regression"} for host in replicas}, 60,
             "every replica to follow the rollback")  # fmt: skip


def test_up_with_one_replica_gives_the_port_back_to_one_api_container(replicated: Project, revived: Revival) -> None:
    printed = replicated.make("up")
    (api,) = replicated.containers("api")
    response = httpx.get(f"{replicated.api_url}/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    assert f"API:        {replicated.api_url}/docs" in printed
    assert replicated.containers("haproxy") == []
    assert docker("port", api, "8000").strip() == replicated.api_url.removeprefix("http://")
    assert response.status_code == 200
    assert "x-served-by" not in response.headers


def test_down_removes_every_container_and_network(replicated: Project) -> None:
    replicated.make("down")
    label = f"label=com.docker.compose.project={replicated.name}"

    assert replicated.containers(all_states=True) == []
    assert docker("network", "ls", "-q", "--filter", label).split() == []
