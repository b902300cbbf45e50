"""Measure the API against its physical floors: `make bench` (see app/README.md, Performance).

Starts the API with uvicorn as the API image does (`python -m app`), on a free loopback port,
loads it with wrk, and measures in the same run the floors it cannot beat:
- HTTP floor: a minimal Starlette endpoint that parses the same JSON body, same uvicorn settings;
- model floor: the loaded model's final estimator on the already-encoded rows, in process;
- in-process path: the whole app for one request (ASGI call), minus the HTTP server;
- the metrics' cost: the same requests with metrics on and off (METRICS=0), like every on/off row below in five
  rounds, each on a fresh pair of servers (scripts/bench_tools.py, fresh_pairs);
- the drift monitoring's cost: one record at 8 connections and 10,000-record batches, on and off (DRIFT_MONITORING=0);
- the capture's cost (scripts/bench_capture.py): the same two loads with capture on and off (CAPTURE=0), and
  posting a 10,000-record batch's labels against predicting it;
- the routes' cost (scripts/bench_routes.py): one record at 8 connections through a route at 100 % and through
  a route with a shadow, against the model asked by name.
Every other row runs with the capture off (CAPTURE=0), in process too: they measure the serving path, as before
the capture existed, and write no capture store.
The Open Inference Protocol (V2) is measured beside /predict: JSON and Triton's binary tensors, and, when
an `mlserver` executable is given (--mlserver; MLServer 1.7.1 with mlserver-sklearn, which `make bench`
installs from scripts/mlserver.lock), MLServer serving the same model and the same 10,000-record JSON body,
taking turns with ours: V2 JSON and binary over MLServer's JSON, as ratios.
Prints one table and writes it as JSON (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import joblib
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
# Run as a script from anywhere: the shared helpers in scripts/ and the app package importable.
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]
from bench_capture import capture_cost_rows, labels_row
from bench_routes import route_rows
from bench_tools import Row, api_command, body, command_pairs, in_turns, on_and_off, served, wrk
from penguins import FEATURES, MODEL_NAMES, resolve_dir

from app.main import create_app
from app.original.schemas import EXAMPLE_RECORD as RECORD
from app.v2.types import EXAMPLE_REQUEST
from tests.live import free_port

BATCH_MODELS = ["logistic_regression", "random_forest"]
BATCH_SIZES = [1_000, 10_000]


# --- the HTTP floor: what any Starlette endpoint costs for this body --------------------------


async def _floor_endpoint(request: Request) -> Response:
    await request.json()
    return Response(b'{"predictions":["Adelie"]}', media_type="application/json")


floor_app = Starlette(routes=[Route("/predict", _floor_endpoint, methods=["POST"])])


# --- servers ---------------------------------------------------------------------------------


def floor_command(workers: int) -> tuple[list[str], dict[str, str]]:
    # Same entry point and uvicorn settings as the API, only the app differs.
    serve_floor = "from app.__main__ import serve; serve('benchmark:floor_app')"
    return [sys.executable, "-c", serve_floor], {"WEB_CONCURRENCY": str(workers), "PYTHONPATH": str(ROOT / "scripts")}


# --- bodies -----------------------------------------------------------------------------------


def v2_plain_body() -> bytes:
    """One record in the specification's plain form, the inputs of the /docs example: shape [1], no parameters."""
    return json.dumps({"inputs": EXAMPLE_REQUEST["inputs"]}).encode()


def v2_body(records: int = 1) -> bytes:
    """The columns as MLServer's pandas codec sends them: [N, 1] each, content types on."""
    inputs = [
        {"name": name, "shape": [records, 1], "datatype": "BYTES" if isinstance(value, str) else "FP64",
         **({"parameters": {"content_type": "str"}} if isinstance(value, str) else {}), "data": [value] * records}
        for name, value in RECORD.items()
    ]  # fmt: skip
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def v2_binary_body(records: int) -> tuple[bytes, int]:
    """Triton's binary tensors, as tritonclient sends them: JSON header, then each column's raw bytes."""
    inputs, chunks = [], []
    for name, value in RECORD.items():
        if isinstance(value, str):
            chunk, datatype = (struct.pack("<I", len(value)) + value.encode()) * records, "BYTES"
        else:
            chunk, datatype = struct.pack("<d", value) * records, "FP64"
        inputs.append({"name": name, "shape": [records], "datatype": datatype,
                       "parameters": {"binary_data_size": len(chunk)}})  # fmt: skip
        chunks.append(chunk)
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(chunks), len(header)


# --- in-process measurements -----------------------------------------------------------------


def p50_ms(call: Callable[[], object], seconds: float) -> float:
    """Median wall time of call, repeated for about `seconds` after a warm-up."""
    for _ in range(20):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 50:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


def model_floor(path: Path, records: int, seconds: float) -> float:
    """Final estimator on already-encoded rows: nothing in Python can be faster than this."""
    pipeline = joblib.load(path)["model"]
    encoded = pipeline[:-1].transform(pd.DataFrame([RECORD] * records, columns=FEATURES))
    estimator = pipeline[-1]
    method = estimator.predict_proba if hasattr(estimator, "predict_proba") else estimator.predict
    return p50_ms(lambda: method(encoded), seconds)


def in_process_path(models_dir: Path, model: str, seconds: float) -> float:
    """The app's own work for one /predict, called as ASGI: no sockets, no HTTP parsing."""
    os.environ["MODELS_DIR"] = str(models_dir)  # read when the app starts, below
    os.environ["CAPTURE"] = "0"  # the serving path alone, and no store written beside the models
    application = create_app()
    loop = asyncio.new_event_loop()
    payload = body()

    async def call() -> int:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            status = message.get("status", status)

        scope = {
            "type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "root_path": "",
            "query_string": f"model={model}".encode(), "headers": [(b"content-type", b"application/json")],
            "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
            "asgi": {"version": "3.0"}, "state": lifespan_state,
        }  # fmt: skip
        await application(scope, receive, send)
        return status

    lifespan_state: dict[str, Any] = {}
    context = application.router.lifespan_context(application)
    started: Mapping[str, Any] | None = loop.run_until_complete(context.__aenter__())
    lifespan_state.update(started or {})
    try:
        assert loop.run_until_complete(call()) == 200
        return p50_ms(lambda: loop.run_until_complete(call()), seconds)
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


# --- the run -----------------------------------------------------------------------------------


def ensure_models(models_dir: Path) -> None:
    if not list(models_dir.glob("*.pkl")):
        print(f"no models in {models_dir}: training them first", flush=True)
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train.py"), "--models-dir", str(models_dir)], check=True
        )


def machine() -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}  # fmt: skip


# Targets from app/README.md's Performance section.
MIN_REQUESTS_PER_SECOND = {"logistic_regression": 3000, "random_forest": 200}
# logistic_regression's one record at 8 connections over the HTTP floor's, the two in turns.
MIN_FLOOR_SHARE = 0.34
MIN_RECORDS_PER_SECOND = {("logistic_regression", 10_000): 150_000}
V2_MODEL, V2_RECORDS = "logistic_regression", 10_000
V2_OVER_PREDICT_MS = 0.05
MIN_V2_RECORDS_PER_SECOND = {"JSON": 600_000, "binary": 1_000_000}
MIN_METRICS_ON_SHARE = 0.9
MIN_DRIFT_ON_SHARE = {1: 0.95, 10_000: 0.95}  # by records per request
# Records/s of ours over MLServer's on the same 10,000-record batch, V2 JSON or binary against its JSON.
MIN_OVER_MLSERVER = {"JSON": 2.0, "binary": 2.5}


def single_record_rows(url: str, name: str, model_ms: float, http: dict[str, float], seconds: float) -> list[Row]:
    one = wrk(f"{url}/predict?model={name}", body(), 1, seconds)
    eight = wrk(f"{url}/predict?model={name}", body(), 8, seconds)
    floor, over = http["p50_ms"] + model_ms, one["p50_ms"] - http["p50_ms"] - model_ms
    minimum = MIN_REQUESTS_PER_SECOND.get(name)
    return [
        Row(f"model floor {name}, 1 record, p50", model_ms, "ms"),
        Row(f"/predict {name}, 1 connection, p50", one["p50_ms"], "ms", floor, f"{over:+.2f} ms",
            "<= floors + 0.3 ms", over <= 0.3),
        Row(f"/predict {name}, 1 connection, p99", one["p99_ms"], "ms"),
        Row(f"/predict {name}, 8 connections", eight["rps"], "req/s", http["rps_8"],
            f"{eight['rps'] / http['rps_8']:.2f} x floor, apart",
            f">= {minimum} req/s" if minimum else "", eight["rps"] >= minimum if minimum else None),
    ]  # fmt: skip


def floor_share_row(workers: int, seconds: float) -> Row:
    """logistic_regression's one record at 8 connections against the HTTP floor, the two servers in turns: a fresh
    pair each round, so that the machine's drift within the run leaves the share alone."""
    [turns] = in_turns(command_pairs(api_command(workers), floor_command(workers)), seconds, [(body(), 8)])
    share = turns.share
    return Row("/predict logistic_regression, 8 connections, in turns", turns.on, "req/s", turns.off,
               f"{share:.2f} x HTTP floor", f">= {MIN_FLOOR_SHARE:.2f} x", share >= MIN_FLOOR_SHARE)  # fmt: skip


def batch_row(url: str, models_dir: Path, name: str, size: int, seconds: float) -> Row:
    figure = wrk(f"{url}/predict?model={name}", body(size), 1, seconds)["rps"] * size
    floor = size / (model_floor(models_dir / f"{name}.pkl", size, seconds / 2) / 1e3)
    wanted = MIN_RECORDS_PER_SECOND.get((name, size))
    return Row(f"/predict {name}, {size:,} records", figure, "records/s", floor, f"{figure / floor:.2f} x model floor",
               f">= {wanted:,} records/s" if wanted else "", figure >= wanted if wanted else None)  # fmt: skip


def compare_row(url: str, single_p50: float, seconds: float) -> Row:
    models = "&".join(f"models={name}" for name in MODEL_NAMES)
    p50 = wrk(f"{url}/predict/compare?{models}", body(), 1, seconds)["p50_ms"]
    return Row("/predict/compare 3 models, 1 connection, p50", p50, "ms", single_p50,
               f"{p50 / single_p50:.2f} x sum of singles", "<= 1.2 x", p50 <= 1.2 * single_p50)  # fmt: skip


def alternating_p50_ms(url: str, requests: Sequence[tuple[str, bytes]], seconds: float) -> list[float]:
    """The p50 of each POST, sent in turn on one keep-alive connection for about `seconds`.

    Taking turns request by request, they share every slow spell of a busy machine, which two wrk runs a
    few seconds apart do not: those differ by more than the margins compared here.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port))
    samples: list[list[float]] = [[] for _ in requests]

    def post(which: int) -> None:
        path, payload = requests[which]
        started = time.perf_counter()
        connection.request("POST", path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        samples[which].append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"POST {path} answered {response.status}")

    try:
        for _ in range(200):  # warm-up, not counted
            for which in range(len(requests)):
                post(which)
        for times in samples:
            times.clear()
        deadline, turn = time.perf_counter() + seconds, 0
        while time.perf_counter() < deadline:
            # Each goes first every other round: neither always follows the other.
            order = range(len(requests)) if turn % 2 == 0 else reversed(range(len(requests)))
            for which in order:
                post(which)
            turn += 1
    finally:
        connection.close()
    return [statistics.median(times) * 1e3 for times in samples]


def v2_rows(url: str, models_dir: Path, seconds: float) -> list[Row]:
    """One record against /predict, taking turns; 10,000 records as JSON and as binary tensors."""
    infer_path = f"/v2/models/{V2_MODEL}/infer"
    infer = url + infer_path
    turns = [(f"/predict?model={V2_MODEL}", body()), (infer_path, v2_body()), (infer_path, v2_plain_body())]
    predict_p50, pandas, plain = alternating_p50_ms(url, turns, 3 * seconds)
    rows = [
        Row(
            f"V2 JSON {V2_MODEL}, 1 record, p50, turns with /predict",
            pandas,
            "ms",
            predict_p50,
            f"{pandas - predict_p50:+.3f} ms vs /predict",
            f"<= /predict + {V2_OVER_PREDICT_MS} ms",
            pandas - predict_p50 <= V2_OVER_PREDICT_MS,
        ),
        Row(
            f"V2 JSON {V2_MODEL}, 1 record in the plain form, p50",
            plain,
            "ms",
            predict_p50,
            f"{plain - predict_p50:+.3f} ms vs /predict",
        ),
    ]
    floor = V2_RECORDS / (model_floor(models_dir / f"{V2_MODEL}.pkl", V2_RECORDS, seconds / 2) / 1e3)
    binary, header_length = v2_binary_body(V2_RECORDS)
    for kind, payload, length in (("JSON", v2_body(V2_RECORDS), 0), ("binary", binary, header_length)):
        figure = wrk(infer, payload, 1, seconds, length)["rps"] * V2_RECORDS
        wanted = MIN_V2_RECORDS_PER_SECOND[kind]
        rows.append(
            Row(
                f"V2 {kind} {V2_MODEL}, {V2_RECORDS:,} records",
                figure,
                "records/s",
                floor,
                f"{figure / floor:.2f} x model floor",
                f">= {wanted:,} records/s",
                figure >= wanted,
            )
        )
    return rows


@contextmanager
def mlserver_served(executable: str, models_dir: Path) -> Iterator[str]:
    """MLServer with mlserver-sklearn serving the same pipeline, in-process (parallel_workers 0)."""
    with tempfile.TemporaryDirectory() as folder:
        root, model = Path(folder), Path(folder) / V2_MODEL
        model.mkdir()
        joblib.dump(joblib.load(models_dir / f"{V2_MODEL}.pkl")["model"], model / "model.joblib")
        settings = {"name": V2_MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"}}  # fmt: skip
        (model / "model-settings.json").write_text(json.dumps(settings))
        port = free_port()
        server_settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                           "metrics_port": free_port(), "parallel_workers": 0}  # fmt: skip
        (root / "settings.json").write_text(json.dumps(server_settings))
        server = subprocess.Popen([executable, "start", folder], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(f"{url}/v2/models/{V2_MODEL}/ready", server)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def wait_until_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"MLServer exited early: {server.stderr.read().decode()[-2000:] if server.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"MLServer at {url} was not ready within 120 s")


def mlserver_rows(executable: str | None, url: str, models_dir: Path, seconds: float) -> list[Row]:
    """MLServer's JSON against ours, JSON and binary, on the same 10,000-record batch.

    The servers take turns, best of three each: a neighbour's burst on a shared machine hits every side alike.
    """
    if executable is None:
        print("MLServer comparison skipped: no mlserver executable (--mlserver PATH, or mlserver on PATH).")
        return []
    if not executable:
        return []  # the caller said why
    path = f"/v2/models/{V2_MODEL}/infer"
    binary, header_length = v2_binary_body(V2_RECORDS)
    best = {"JSON": 0.0, "binary": 0.0, "MLServer": 0.0}
    with mlserver_served(executable, models_dir) as theirs:
        loads = {"JSON": (url, v2_body(V2_RECORDS), 0), "binary": (url, binary, header_length),
                 "MLServer": (theirs, v2_body(V2_RECORDS), 0)}  # fmt: skip
        for _ in range(3):
            for kind, (server, payload, length) in loads.items():
                best[kind] = max(best[kind], wrk(server + path, payload, 1, seconds, length)["rps"] * V2_RECORDS)
    rows = [Row(f"MLServer JSON {V2_MODEL}, {V2_RECORDS:,} records", best["MLServer"], "records/s")]
    for kind, wanted in MIN_OVER_MLSERVER.items():
        ratio = best[kind] / best["MLServer"]
        rows.append(Row(f"V2 {kind} over MLServer JSON, {V2_RECORDS:,} records, in turns", best[kind], "records/s",
                        best["MLServer"], f"{ratio:.2f} x MLServer JSON", f">= {wanted:.1f} x",
                        ratio >= wanted))  # fmt: skip
    return rows


def metrics_cost_row(workers: int, seconds: float) -> Row:
    """The cheapest model at 8 connections, where the metrics' own work weighs most."""
    (turns,) = on_and_off(workers, "METRICS", seconds, [(body(), 8)])
    target = f">= {MIN_METRICS_ON_SHARE:.2f} x"
    return Row("logistic_regression, 8 connections, metrics on", turns.on, "req/s", turns.off,
               f"{turns.share:.2f} x metrics off", target, turns.share >= MIN_METRICS_ON_SHARE)  # fmt: skip


def drift_cost_rows(workers: int, seconds: float) -> list[Row]:
    """The cheapest model, one record at 8 connections and 10,000 records a request, drift monitoring on and off."""
    sizes = list(MIN_DRIFT_ON_SHARE)
    loads = [(body(size), 8 if size == 1 else 1) for size in sizes]
    rows = []
    for size, turns in zip(sizes, on_and_off(workers, "DRIFT_MONITORING", seconds, loads), strict=True):
        share, wanted = turns.share, MIN_DRIFT_ON_SHARE[size]
        case = "8 connections" if size == 1 else f"{size:,} records"
        unit, scale = ("req/s", 1) if size == 1 else ("records/s", size)
        rows.append(Row(f"logistic_regression, {case}, drift monitoring on", turns.on * scale, unit,
                        turns.off * scale, f"{share:.2f} x monitoring off", f">= {wanted:.2f} x",
                        share >= wanted))  # fmt: skip
    return rows


def measure(models_dir: Path, workers: int, seconds: float, mlserver: str | None = None) -> list[Row]:
    floors_ms = {name: model_floor(models_dir / f"{name}.pkl", 1, seconds) for name in MODEL_NAMES}
    with served(*floor_command(workers)) as url:
        http = wrk(url + "/predict", body(), 1, seconds)
        http["rps_8"] = wrk(url + "/predict", body(), 8, seconds)["rps"]
    rows = [
        Row("HTTP floor, 1 connection, p50", http["p50_ms"], "ms"),
        Row("HTTP floor, 8 connections", http["rps_8"], "req/s"),
    ]
    with served(*api_command(workers)) as url:
        for name in MODEL_NAMES:
            rows += single_record_rows(url, name, floors_ms[name], http, seconds)
        rows += [batch_row(url, models_dir, name, size, seconds) for name in BATCH_MODELS for size in BATCH_SIZES]
        singles = sum(row.figure for row in rows if row.case.endswith("1 connection, p50") and "/predict " in row.case)
        rows.append(compare_row(url, singles, seconds))
        rows += v2_rows(url, models_dir, seconds)
        rows += mlserver_rows(mlserver, url, models_dir, seconds)
    rows.append(floor_share_row(workers, seconds))
    rows.append(metrics_cost_row(workers, seconds))
    rows += drift_cost_rows(workers, seconds)
    rows += capture_cost_rows(workers, seconds)
    rows.append(labels_row(workers, seconds))
    rows += route_rows(models_dir, workers, seconds)
    for name in MODEL_NAMES:
        inside = in_process_path(models_dir, name, seconds)
        over = inside - floors_ms[name]
        rows.append(Row(f"in-process path {name}, 1 record, p50", inside, "ms", floors_ms[name],
                        f"{over:+.2f} ms over model floor"))  # fmt: skip
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'case':<48} {'figure':>12} {'unit':<10} {'floor':>12}  {'comparison':<30} target"]
    for row in rows:
        floor = f"{row.floor:,.2f}" if row.floor is not None else ""
        verdict = {True: "met", False: "MISSED", None: ""}[row.met]
        target = f"{row.target} {verdict}".strip()
        lines.append(f"{row.case:<48} {row.figure:>12,.2f} {row.unit:<10} {floor:>12}  {row.comparison:<30} {target}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", help="models to serve (env MODELS_DIR, default models)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each wrk run (default 3)")
    parser.add_argument("--out", help="JSON report (default <models-dir>/evaluation/bench.json)")
    parser.add_argument(
        "--mlserver",
        default=shutil.which("mlserver"),
        help="MLServer 1.7.1's executable, to measure it beside the API (default: mlserver on PATH; empty: skip "
        "it without a note, the caller having said why)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian, Ubuntu) or `brew install wrk` (macOS).")
    models_dir = resolve_dir(args.models_dir, "MODELS_DIR", "models")
    ensure_models(models_dir)
    os.environ["MODELS_DIR"] = str(models_dir)
    rows = measure(models_dir, args.workers, args.seconds, args.mlserver)
    print(table(rows))
    out = Path(args.out) if args.out else models_dir / "evaluation" / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine(),
        "workers": args.workers,
        "seconds_per_run": args.seconds,
        "rows": [asdict(row) for row in rows],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
