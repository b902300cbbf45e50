"""Prometheus metrics: GET /metrics, the middleware that counts HTTP requests, and the core's observer.

Several workers (`python -m app` with WEB_CONCURRENCY > 1) run prometheus_client in multiprocess mode: each
worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (app/multiprocess.py) and a scrape on any of
them sums every worker's. A worker that exits takes its live gauges with it.
Every label value is bounded: a route template, one of a few methods, a status code, or a model file that
exists. METRICS=0 turns all of it off.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.capture import Reference
from app.errors import ServingError
from app.feedback_metrics import add_reference, reference_families
from app.http import Endpoint, data_plane, route_template
from app.logs import current_request
from app.monitoring.figures import DriftReport
from app.multiprocess import shared_folder
from app.observer import Comparison, Observer
from app.registry import LoadedModel

# From 100 µs (a cached answer) to 10 s (a large batch through a forest).
REQUEST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# A linear model predicts one record in tens of microseconds.
PREDICT_BUCKETS = (0.00001, 0.000025, 0.00005, *REQUEST_BUCKETS)
LOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Any other method a client makes up is counted as "other", not as a new series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


@dataclass(frozen=True)
class ModelSeries:
    """One model's series, looked up once."""

    successes: Any
    failures: Any
    records: Any
    seconds: Any


class Metrics(Observer):
    """The series, and the observer that moves the model ones as the core works."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "penguins_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=registry
        )
        self.request_seconds = Histogram(
            "penguins_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "penguins_http_requests_in_progress", "Requests being answered now.",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.inferences = Counter(
            "penguins_inference_requests", "Batches given to a model's predictor.", ["model", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.records = Counter("penguins_predicted_records", "Records a model predicted.", ["model"], registry=registry)
        self.predict_seconds = Histogram(
            "penguins_predict_duration_seconds", "Time in the model's predictor alone, per batch.", ["model"],
            buckets=PREDICT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.loads = Counter(
            "penguins_model_loads", "Model files read and checked.", ["model", "outcome"], registry=registry
        )
        self.load_seconds = Histogram(
            "penguins_model_load_duration_seconds", "Time to read, unpack and check a model file.", ["model"],
            buckets=LOAD_BUCKETS, registry=registry,
        )  # fmt: skip
        # Each worker loads its own copy: the sum is the copies held in memory.
        self.loaded_now = Gauge(
            "penguins_models_loaded", "Models loaded now, summed over the workers.",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.files_now = Gauge(
            "penguins_model_files", "Model files in the models folder at its last scan.",
            registry=registry, multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.captures_lost = Counter(
            "penguins_capture_dropped", "Predicted records not captured: the queue was full or the store unwritable.",
            registry=registry,
        )  # fmt: skip
        # Routes: label values are route and model names from routes.json, which a request cannot invent.
        self.route_records = Counter(
            "penguins_route_records", "Records a route's variant answered.", ["route", "variant"], registry=registry
        )
        self.shadow_records = Counter(
            "penguins_shadow_records", "Records a route's shadow predicted after its variant answered.",
            ["route", "variant", "shadow"], registry=registry,
        )  # fmt: skip
        self.shadow_disagreements = Counter(
            "penguins_shadow_disagreements", "Records whose class the shadow predicted differently from the variant.",
            ["route", "variant", "shadow"], registry=registry,
        )  # fmt: skip
        self.shadow_difference = Counter(
            "penguins_shadow_top_probability_difference",
            "Sum over shadowed records with probabilities of |variant's - shadow's probability of its own class|.",
            ["route", "variant", "shadow"], registry=registry,
        )  # fmt: skip
        self.shadow_compared = Counter(
            "penguins_shadow_probability_records",
            "Shadowed records where both models give probabilities: the difference sum's denominator.",
            ["route", "variant", "shadow"], registry=registry,
        )  # fmt: skip
        self.shadows_lost = Counter(
            "penguins_shadow_dropped", "Records a shadow did not predict, once per shadow missed, by reason.",
            ["route", "reason"], registry=registry,
        )  # fmt: skip
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._models: dict[str, ModelSeries] = {}
        self._routes: dict[tuple[str, str], Counter] = {}
        self._collectors: list[Collector] = []

    def export(self, collector: Collector) -> None:
        """Series computed when scraped, from state every worker shares: added to the exposition as they are."""
        self._collectors.append(collector)
        self.registry.register(collector)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else OTHER_METHOD
        key = (method, route, status)
        series = self._http.get(key)
        if series is None:
            series = (self.requests.labels(method, route, str(status)), self.request_seconds.labels(method, route))
            self._http[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def predicted(self, model: str, records: int, seconds: float) -> None:
        series = self._model(model)
        series.successes.inc()
        series.records.inc(records)
        series.seconds.observe(seconds)

    def predict_failed(self, model: str) -> None:
        self._model(model).failures.inc()

    def loaded(self, model: str, seconds: float) -> None:
        self.loads.labels(model, "success").inc()
        self.load_seconds.labels(model).observe(seconds)

    def load_failed(self, model: str, seconds: float) -> None:
        self.loads.labels(model, "failure").inc()
        self.load_seconds.labels(model).observe(seconds)

    def models_loaded(self, count: int) -> None:
        self.loaded_now.set(count)

    def model_files(self, count: int) -> None:
        self.files_now.set(count)

    def captures_dropped(self, records: int) -> None:
        self.captures_lost.inc(records)

    def route_answered(self, route: str, variant: str, records: int) -> None:
        # Each request through a route counts: its series found once, as the models' are.
        series = self._routes.get((route, variant))
        if series is None:
            series = self._routes[(route, variant)] = self.route_records.labels(route, variant)
        series.inc(records)

    def shadowed(self, route: str, variant: str, shadow: str, comparison: Comparison) -> None:
        labels = (route, variant, shadow)
        self.shadow_records.labels(*labels).inc(comparison.records)
        self.shadow_disagreements.labels(*labels).inc(comparison.disagreements)
        if comparison.probability_difference is not None:
            self.shadow_difference.labels(*labels).inc(comparison.probability_difference)
            self.shadow_compared.labels(*labels).inc(comparison.records)

    def shadows_dropped(self, route: str, reason: str, records: int) -> None:
        self.shadows_lost.labels(route, reason).inc(records)

    def shadow_counters(self) -> tuple[Counter, ...]:
        return self.shadow_records, self.shadow_disagreements, self.shadow_compared, self.shadow_difference

    def _model(self, model: str) -> ModelSeries:
        series = self._models.get(model)
        if series is None:
            series = ModelSeries(
                self.inferences.labels(model, "success"),
                self.inferences.labels(model, "failure"),
                self.records.labels(model),
                self.predict_seconds.labels(model),
            )
            self._models[model] = series
        return series

    def exposition_registry(self) -> CollectorRegistry:
        """This process's series, or with several workers every worker's, summed."""
        folder = shared_folder()
        if folder is None:
            return self.registry
        forget_dead_workers(folder)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(folder))
        for collector in self._collectors:
            registry.register(collector)
        return registry

    def process_exiting(self) -> None:
        """Drops this worker's live gauges, so that the totals no longer count it."""
        folder = shared_folder()
        if folder is not None:
            mark_process_dead(os.getpid(), str(folder))


def forget_dead_workers(folder: Path) -> None:
    """The live gauges of workers that died without shutting down (killed, crashed) stop counting."""
    pids = {int(match[1]) for path in folder.iterdir() if (match := LIVE_GAUGE_FILE.fullmatch(path.name))}
    for pid in pids - {os.getpid()}:
        if not _alive(pid):
            mark_process_dead(pid, str(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DriftCollector(Collector):
    """The drift figures (app/monitoring/) as series, read at each scrape from the counts every worker shares.

    A Histogram cannot take a batch of observations without a call per record, and the counts must be the
    ones the window is made of: one mechanism, the shared counts, exported here whichever worker is scraped.
    """

    def __init__(self, reports: Callable[[], list[DriftReport]]) -> None:
        self.reports = reports

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the names are fixed, the series come and go with the models

    def collect(self) -> Iterator[Metric]:
        families = drift_families()
        for report in self.reports():
            add_drift(families, report)
        yield from families.values()


def drift_families() -> dict[str, Any]:
    return {
        "features": GaugeMetricFamily(
            "penguins_feature_drift_psi",
            "Population stability index of a feature over the model's window against its training rows.",
            labels=["model", "feature"],
        ),
        "predictions": GaugeMetricFamily(
            "penguins_prediction_drift_psi",
            "Population stability index of the predicted classes over the window against the training rows.",
            labels=["model"],
        ),
        "window": GaugeMetricFamily(
            "penguins_drift_window_records", "Records in the model's drift window.", labels=["model"]
        ),
        "classes": CounterMetricFamily(
            "penguins_predictions", "Records predicted, by class.", labels=["model", "class"]
        ),
        "confidence": HistogramMetricFamily(
            "penguins_prediction_confidence",
            "The top class probability of each record predicted.",
            labels=["model"],
        ),
        "out_of_range": CounterMetricFamily(
            "penguins_feature_out_of_range",
            "Values outside the feature's training min and max.",
            labels=["model", "feature"],
        ),
    }


def add_drift(families: dict[str, Any], report: DriftReport) -> None:
    model = report.model
    families["window"].add_metric([model], report.window_records)
    for feature in report.features:
        if feature.psi is not None:
            families["features"].add_metric([model, feature.name], feature.psi)
        if feature.out_of_range is not None:
            families["out_of_range"].add_metric([model, feature.name], feature.out_of_range)
    if report.predictions is not None and report.predictions.psi is not None:
        families["predictions"].add_metric([model], report.predictions.psi)
    for name, count in report.predicted:
        families["classes"].add_metric([model, name], count)
    confidence = report.confidence
    if confidence is not None:
        cumulative = list(itertools.accumulate(confidence.counts))
        bounds = [*map(floatToGoString, confidence.buckets), "+Inf"]
        families["confidence"].add_metric([model], list(zip(bounds, cumulative, strict=True)), confidence.total)


class ReferenceAccuracyCollector(Collector):
    """Each loaded model version's reference accuracy from training (app/reference_accuracy.py), from the models
    the scraped process holds: per process, so workers may differ. Only with CAPTURE=0; with capture on, the
    store holds each version's reference and every worker exports the same (app/feedback_metrics.py).
    """

    def __init__(self, models: Callable[[], list[LoadedModel]]) -> None:
        self.models = models

    def describe(self) -> list[Metric]:
        return []  # the series come and go with the models

    def collect(self) -> Iterator[Metric]:
        families = reference_families()
        for model in self.models():
            accuracy = model.reference_accuracy
            if accuracy is not None:
                reference = Reference(accuracy.mean, accuracy.lower, accuracy.upper)
                add_reference(families, [model.stem, model.version], reference)
        yield from families.values()


class MetricsMiddleware:
    """Pure ASGI: counts and times every HTTP request by method, route template and status.

    Inside RequestIdMiddleware, whose answer-side hook notes the status: one hook per request, not two.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics: Metrics | None = scope.get("state", {}).get("metrics") if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.in_progress.dec()
            context = current_request.get()
            # No status yet: the error escaping here is answered with a 500 further out.
            status = context.status if context is not None and context.status else 500
            route = route_template(scope, self.routes)
            metrics.observe_request(scope["method"], route, status, time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics | None = getattr(request.state, "metrics", None)
    if metrics is None:
        raise HTTPException(404, "Metrics are off (METRICS=0).")
    plane = data_plane(request)
    # The folder is scanned at each scrape, so the model-file count is current; an unreadable folder
    # shows in /health, and the scrape still answers.
    with contextlib.suppress(ServingError):
        await run_in_threadpool(plane.available)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = await run_in_threadpool(lambda: encoder(metrics.exposition_registry()))
    return Response(body, headers={"content-type": content_type})


ENDPOINTS = [Endpoint("GET", "/metrics", metrics_endpoint)]
