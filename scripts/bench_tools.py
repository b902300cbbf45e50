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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


ROUNDS = 5  # the turns the servers (or the kinds of request) take; each figure is the median of its rounds'
WARM_SECONDS = 1.0  # each load, on each fresh server, before its round is timed


def fresh_pairs(workers: int, on: Mapping[str, str], off: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """ROUNDS pairs of servers (on, off): one with the `on` settings and one with the `off` ones, each pair started
    afresh for its round, the first to start alternating.

    Two processes of the same code differ by a few hundredths in speed, each its own (their memory's layout, its
    hash seed): a pair kept for every round would put that difference into every ratio.
    """
    return command_pairs(api_command(workers, on), api_command(workers, off))


Command = tuple[list[str], dict[str, str]]


def command_pairs(on: Command, off: Command) -> Iterator[tuple[str, str]]:
    """ROUNDS pairs of servers (on, off) from two commands, as fresh_pairs starts them."""
    for turn in range(ROUNDS):
        first, second = (on, off) if turn % 2 == 0 else (off, on)
        with served(*first) as first_url, served(*second) as second_url:
            yield (first_url, second_url) if turn % 2 == 0 else (second_url, first_url)


@dataclass(frozen=True)
class Turns:
    """Two servers' requests/s under one load: each the median of its rounds', `share`, the median of the
    rounds' on ÷ off, each of two runs seconds apart, and `counted`, the sum over the rounds of what `count`
    grew by on the `on` server during the load."""

    on: float
    off: float
    share: float
    counted: float = 0.0


def in_turns(
    pairs: Iterable[tuple[str, str]],
    seconds: float,
    loads: Sequence[tuple[bytes, int]],
    count: Callable[[str], float] | None = None,
) -> list[Turns]:
    """Requests/s of /predict?model=logistic_regression on each server of each pair (on, off), for each (body,
    connections), after a warm-up.

    Each pair is a round, each server going first in every other round: a neighbour's burst on a shared machine,
    or a slow drift of its speed, hits both sides alike.
    """
    runs: list[list[tuple[float, float]]] = [[] for _ in loads]
    counted = [0.0 for _ in loads]
    for turn, (on, off) in enumerate(pairs):
        for index, ((payload, connections), rounds) in enumerate(zip(loads, runs, strict=True)):
            order = [(True, on), (False, off)][:: 1 if turn % 2 == 0 else -1]
            for _, server in order:
                wrk(server + LOGISTIC, payload, connections, WARM_SECONDS)
            before = count(on) if count else 0.0
            rps = {enabled: wrk(server + LOGISTIC, payload, connections, seconds)["rps"] for enabled, server in order}
            counted[index] += (count(on) - before) if count else 0.0
            rounds.append((rps[True], rps[False]))
    return [
        Turns(
            median(a for a, _ in rounds), median(b for _, b in rounds), median_ratio(*zip(*rounds, strict=True)), total
        )
        for rounds, total in zip(runs, counted, strict=True)
    ]


def median_ratio(figures: Sequence[float], others: Sequence[float]) -> float:
    """The median over rounds of one figure over another taken in the same round, each of two runs seconds apart."""
    return median(figure / other for figure, other in zip(figures, others, strict=True))


def on_and_off(workers: int, setting: str, seconds: float, loads: Sequence[tuple[bytes, int]]) -> list[Turns]:
    """in_turns with the setting on (1) and off (0)."""
    return in_turns(fresh_pairs(workers, {setting: "1"}, {setting: "0"}), seconds, loads)
