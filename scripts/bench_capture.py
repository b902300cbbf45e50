"""The capture's rows of `make bench` (scripts/benchmark.py; see app/README.md, Feedback and live accuracy).

- Its cost on the serving path: the logistic regression with one record at 8 connections and with 10,000
  records a request, capture on (CAPTURE=1) and off (CAPTURE=0), two servers taking turns for five rounds, a
  fresh pair each round, the ratio the median of the rounds' (scripts/bench_tools.py, in_turns);
  with the records the capture-on server dropped (its queue full), which would flatter its figures.
- Labels beside predictions: posting the 10,000 labels of a 10,000-record batch to /feedback, against
  predicting that batch with capture on, both timed by one Python client in turns (wrk sends one body, and each
  round needs a fresh request ID), best of the rounds.
Each capture-on server writes a store of its own, an SQLite file in a temporary folder.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bench_tools import LOGISTIC, Row, api_command, body, fresh_pairs, in_turns, served

from app.capture.writer import FLUSH_SECONDS

MIN_CAPTURE_ON_SHARE = {1: 0.90, 10_000: 0.90}  # by records per request
MIN_LABELS_OVER_PREDICT = 0.5
LABELLED_RECORDS = 10_000
CAPTURE_OFF = {"CAPTURE": "0"}


@contextmanager
def capture_on() -> Iterator[dict[str, str]]:
    """A capture-on server's settings: a fresh store in a temporary folder, never the repository's data/."""
    with tempfile.TemporaryDirectory() as folder:
        yield {"CAPTURE": "1", "CAPTURE_URL": f"sqlite:///{Path(folder) / 'capture.db'}"}


def capture_cost_rows(workers: int, seconds: float) -> list[Row]:
    """The cheapest model, one record at 8 connections and 10,000 records a request, capture on and off.

    A target is met only when the capture-on server captured every record: one that drops batches (its queue
    full, the writer behind) does less work than capture costs.
    """
    rows = []
    sizes = list(MIN_CAPTURE_ON_SHARE)
    loads = [(body(size), 8 if size == 1 else 1) for size in sizes]
    with capture_on() as settings:
        every = in_turns(fresh_pairs(workers, settings, CAPTURE_OFF), seconds, loads, dropped_records)
    for size, turns in zip(sizes, every, strict=True):
        share, dropped, wanted = turns.share, turns.counted, MIN_CAPTURE_ON_SHARE[size]
        case = "8 connections" if size == 1 else f"{size:,} records"
        unit, scale = ("req/s", 1) if size == 1 else ("records/s", size)
        comparison = f"{share:.2f} x capture off" + (f", {dropped:,.0f} records dropped" if dropped else "")
        met = share >= wanted and dropped == 0
        rows.append(Row(f"logistic_regression, {case}, capture on", turns.on * scale, unit, turns.off * scale,
                        comparison, f">= {wanted:.2f} x, none dropped", met))  # fmt: skip
    return rows


def dropped_records(url: str) -> float:
    """penguins_capture_dropped_total as the server's /metrics shows it (all its workers)."""
    with http_connection(url) as connection:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    lines = [line for line in text.splitlines() if line.startswith("penguins_capture_dropped_total ")]
    return float(lines[0].split()[1]) if lines else math.nan


def labels_row(workers: int, seconds: float) -> Row:
    """Records/s of posting a 10,000-record batch's labels, against predicting the batch, capture on."""
    predicted, labelled = math.inf, math.inf
    batch = body(LABELLED_RECORDS)
    with capture_on() as settings, served(*api_command(workers, settings)) as url, http_connection(url) as connection:
        deadline, rounds = time.perf_counter() + 2 * seconds, 0
        while rounds < 3 or time.perf_counter() < deadline:
            request_id = os.urandom(16).hex()
            predicted = min(predicted, timed_post(connection, LOGISTIC, batch, {"X-Request-ID": request_id})[0])
            # The writer's queue written meanwhile: the post then times the labels alone, as a day later.
            time.sleep(3 * FLUSH_SECONDS)
            took, answer = timed_post(connection, "/feedback", labels(request_id))
            if answer.get("matched") != LABELLED_RECORDS:
                raise SystemExit(f"/feedback matched {answer.get('matched')} of {LABELLED_RECORDS:,} labels: {answer}")
            labelled = min(labelled, took)
            rounds += 1
    label_rate, predict_rate = LABELLED_RECORDS / labelled, LABELLED_RECORDS / predicted
    ratio = label_rate / predict_rate
    return Row(f"POST /feedback, the {LABELLED_RECORDS:,} labels of a batch, capture on", label_rate, "records/s",
               predict_rate, f"{ratio:.2f} x predicting the batch", f">= {MIN_LABELS_OVER_PREDICT:.2f} x",
               ratio >= MIN_LABELS_OVER_PREDICT)  # fmt: skip


def labels(request_id: str) -> bytes:
    records = [{"request_id": request_id, "row": row, "label": "Adelie"} for row in range(LABELLED_RECORDS)]
    return json.dumps(records).encode()


@contextmanager
def http_connection(url: str) -> Iterator[http.client.HTTPConnection]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        yield connection
    finally:
        connection.close()


def timed_post(
    connection: http.client.HTTPConnection, path: str, payload: bytes, headers: Mapping[str, str] | None = None
) -> tuple[float, dict[str, object]]:
    """Seconds from sending the POST to reading its whole answer, and the answer (a JSON object)."""
    started = time.perf_counter()
    connection.request("POST", path, payload, {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    answer = response.read()
    took = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"POST {path} answered {response.status}: {answer[:200]!r}")
    found = json.loads(answer)
    return took, found if isinstance(found, dict) else {}
