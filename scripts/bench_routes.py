"""The routes' rows of `make bench` (scripts/benchmark.py; see app/README.md, Routes, shadows and promotion).

One server whose models folder (a copy of the benchmark's, in a temporary folder) holds a routes file with two
routes of the logistic regression at 100 %: `penguins`, and `penguins-shadowed`, which the SVC shadows. One record
at 8 connections, in turns, best of three each: the model asked by name, through the route, and through the
shadowed route, whose shadow's work shares the same cores after each answer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_tools import Row, api_command, body, served, wrk

from app.routes import ROUTES_FILE

MIN_ROUTE_SHARE = 0.97  # through a route at 100 %, of the model asked by name
MIN_SHADOWED_SHARE = 0.75  # through a route with one shadow, of the model asked by name
MAX_SHADOWED_P50 = 1.10  # the shadowed route's p50, of the route's without a shadow
ROUTES = {
    "routes": {
        "penguins": {"variants": {"logistic_regression": 100}},
        "penguins-shadowed": {"variants": {"logistic_regression": 100}, "shadows": ["svc"]},
    }
}
ASKED = {
    "by name": "/predict?model=logistic_regression",
    "route": "/predict?model=penguins",
    "shadowed": "/predict?model=penguins-shadowed",
}


@contextmanager
def routed_models(models_dir: Path) -> Iterator[Path]:
    """The benchmark's model files in a temporary folder, with the routes file beside them."""
    with tempfile.TemporaryDirectory() as folder:
        copied = Path(folder)
        for model in models_dir.glob("*.pkl"):
            shutil.copy2(model, copied / model.name)
        (copied / ROUTES_FILE).write_text(json.dumps(ROUTES))
        yield copied


def route_rows(models_dir: Path, workers: int, seconds: float) -> list[Row]:
    """The logistic regression asked by name, through a route at 100 %, and through a route with a shadow."""
    best = {kind: {"rps": 0.0, "p50_ms": 0.0} for kind in ASKED}
    with routed_models(models_dir) as folder:
        command, env = api_command(workers, {"MODELS_DIR": str(folder)})
        with served(command, env) as url:
            for _ in range(3):
                for kind, path in ASKED.items():
                    run = wrk(url + path, body(), 8, seconds)
                    if run["rps"] > best[kind]["rps"]:
                        best[kind] = {"rps": run["rps"], "p50_ms": run["p50_ms"]}
    by_name, route, shadowed = (best[kind] for kind in ASKED)
    route_share, shadowed_share = route["rps"] / by_name["rps"], shadowed["rps"] / by_name["rps"]
    p50_ratio = shadowed["p50_ms"] / route["p50_ms"]
    return [
        Row("logistic_regression through a route at 100 %, 8 connections", route["rps"], "req/s", by_name["rps"],
            f"{route_share:.2f} x asked by name", f">= {MIN_ROUTE_SHARE:.2f} x", route_share >= MIN_ROUTE_SHARE),
        Row("the same route with the svc as its shadow, 8 connections", shadowed["rps"], "req/s", by_name["rps"],
            f"{shadowed_share:.2f} x asked by name", f">= {MIN_SHADOWED_SHARE:.2f} x",
            shadowed_share >= MIN_SHADOWED_SHARE),
        Row("the shadowed route's p50, 8 connections", shadowed["p50_ms"], "ms", route["p50_ms"],
            f"{p50_ratio:.2f} x the route's without a shadow", f"<= {MAX_SHADOWED_P50:.2f} x",
            p50_ratio <= MAX_SHADOWED_P50),
    ]  # fmt: skip
