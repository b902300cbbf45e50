"""The routes' rows of `make bench` (scripts/benchmark.py; see app/README.md, Routes, shadows and promotion).

One server whose models folder (a copy of the benchmark's, in a temporary folder) holds a routes file with two
routes of the logistic regression at 100 %: `penguins`, and `penguins-shadowed`, which the SVC shadows. One record
at 8 connections: the model asked by name, through the route, and through the shadowed route, whose shadow's work
shares the same cores after each answer. The three take turns for five rounds; each ratio is the median of the
rounds' ratios, each of two runs seconds apart, and each figure the median of its runs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

from bench_tools import ROUNDS, Row, api_command, body, median_ratio, served, wrk

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
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in ASKED}
    kinds = list(ASKED)
    with routed_models(models_dir) as folder:
        command, env = api_command(workers, {"MODELS_DIR": str(folder)})
        with served(command, env) as url:
            for turn in range(ROUNDS):
                # Each kind goes first in some round: a shadow's backlog or a neighbour's burst hits all alike.
                for kind in kinds[turn % len(kinds) :] + kinds[: turn % len(kinds)]:
                    runs[kind].append(wrk(url + ASKED[kind], body(), 8, seconds))
    by_name, route, shadowed = (runs[kind] for kind in ASKED)
    route_share = median_ratio(_each(route, "rps"), _each(by_name, "rps"))
    shadowed_share = median_ratio(_each(shadowed, "rps"), _each(by_name, "rps"))
    p50_ratio = median_ratio(_each(shadowed, "p50_ms"), _each(route, "p50_ms"))
    by_name_rps, route_rps, shadowed_rps = (median(run["rps"] for run in runs[kind]) for kind in ASKED)
    shadowed_p50, route_p50 = (median(run["p50_ms"] for run in runs[kind]) for kind in ("shadowed", "route"))
    return [
        Row("logistic_regression through a route at 100 %, 8 connections", route_rps, "req/s", by_name_rps,
            f"{route_share:.2f} x asked by name", f">= {MIN_ROUTE_SHARE:.2f} x", route_share >= MIN_ROUTE_SHARE),
        Row("the same route with the svc as its shadow, 8 connections", shadowed_rps, "req/s", by_name_rps,
            f"{shadowed_share:.2f} x asked by name", f">= {MIN_SHADOWED_SHARE:.2f} x",
            shadowed_share >= MIN_SHADOWED_SHARE),
        Row("the shadowed route's p50, 8 connections", shadowed_p50, "ms", route_p50,
            f"{p50_ratio:.2f} x the route's without a shadow", f"<= {MAX_SHADOWED_P50:.2f} x",
            p50_ratio <= MAX_SHADOWED_P50),
    ]  # fmt: skip


def _each(runs: list[dict[str, float]], figure: str) -> list[float]:
    return [run[figure] for run in runs]
