"""What the bench's rows share (scripts/benchmark.py, scripts/bench_capture.py): the API on a loopback port, wrk
against it, two servers taking turns, and the table's row.

Every server starts with the capture off (CAPTURE=0) unless its settings say otherwise: the rows measure the
serving path, and none writes a capture store, least of all the repository's data/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from app.original.schemas import EXAMPLE_RECORD as RECORD
from tests.live import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parents[1]
LOGISTIC = "/predict?model=logistic_regression"
WRK_REPORT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read("*a")
local header_length = os.getenv("BENCH_HEADER_LENGTH")
if header_length then wrk.headers["Inference-Header-Content-Length"] = header_length end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\n{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


@dataclass
class Row:
    case: str
    figure: float
    unit: str
    floor: float | None = None
    comparison: str = ""
    target: str = ""
    met: bool | None = None


@contextmanager
def served(command: list[str], env: dict[str, str]) -> Iterator[str]:
    """Run a server on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port)}
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as output:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(url, server, log)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def api_command(workers: int, settings: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The API as the image runs it, the capture off unless the settings turn it on."""
    return [sys.executable, "-m", "app"], {"WEB_CONCURRENCY": str(workers), "CAPTURE": "0", **(settings or {})}


def wrk(url: str, body: bytes, connections: int, seconds: float, header_length: int = 0) -> dict[str, float]:
    """One wrk run posting body (binary tensors after header_length bytes of JSON); returns requests/s, p50, p99."""
    with tempfile.TemporaryDirectory() as folder:
        script, payload = Path(folder) / "report.lua", Path(folder) / "body.json"
        script.write_text(WRK_REPORT)
        payload.write_bytes(body)
        threads = min(connections, 2)
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url]
        env = {**os.environ, "BENCH_BODY": str(payload)}
        if header_length:
            env["BENCH_HEADER_LENGTH"] = str(header_length)
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    report = json.loads(output.stdout.strip().splitlines()[-1])
    if report["errors"]:
        raise SystemExit(f"wrk saw {report['errors']} failed requests against {url}")
    return {**report, "rps": report["requests"] / report["seconds"]}


def body(records: int = 1) -> bytes:
    return json.dumps({"records": [RECORD] * records}).encode()


@contextmanager
def on_and_off_servers(workers: int, on: Mapping[str, str], off: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """Two servers at once, one with the `on` settings and one with the `off` ones; yields their URLs."""
    with served(*api_command(workers, on)) as on_url, served(*api_command(workers, off)) as off_url:
        yield on_url, off_url


ROUNDS = 5  # the turns two servers take; each figure is the median of its rounds'


@dataclass(frozen=True)
class Turns:
    """Two servers' requests/s under one load: each the median of its rounds', and `share`, the median of the
    rounds' on ÷ off, each of two runs seconds apart."""

    on: float
    off: float
    share: float


def in_turns(on: str, off: str, seconds: float, loads: Sequence[tuple[bytes, int]]) -> list[Turns]:
    """Requests/s of /predict?model=logistic_regression on each server, for each (body, connections).

    The servers take turns for ROUNDS rounds, each going first in every other round: a neighbour's burst on a
    shared machine, or a slow drift of its speed, hits both sides alike.
    """
    runs: list[list[tuple[float, float]]] = [[] for _ in loads]
    for turn in range(ROUNDS):
        for (payload, connections), rounds in zip(loads, runs, strict=True):
            order = [(True, on), (False, off)][:: 1 if turn % 2 == 0 else -1]
            rps = {enabled: wrk(server + LOGISTIC, payload, connections, seconds)["rps"] for enabled, server in order}
            rounds.append((rps[True], rps[False]))
    return [
        Turns(median(a for a, _ in rounds), median(b for _, b in rounds), median_ratio(*zip(*rounds, strict=True)))
        for rounds in runs
    ]


def median_ratio(figures: Sequence[float], others: Sequence[float]) -> float:
    """The median over rounds of one figure over another taken in the same round, each of two runs seconds apart."""
    return median(figure / other for figure, other in zip(figures, others, strict=True))


def on_and_off(workers: int, setting: str, seconds: float, loads: Sequence[tuple[bytes, int]]) -> list[Turns]:
    """in_turns with the setting on (1) and off (0)."""
    with on_and_off_servers(workers, {setting: "1"}, {setting: "0"}) as (on, off):
        return in_turns(on, off, seconds, loads)
