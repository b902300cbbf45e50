"""A route's figures in this dialect: GET /routes/{name} for scripts, and a section per route on /monitor.

The decision in one view: each variant's share and the records it answered, and each shadow's disagreement with
each variant, from the counters every worker adds to (app/route_metrics.py); with labels, each variant's live
accuracy on its own answers and each shadow's on its answers as a shadow, beside the reference from training, from
the capture store (app/capture/).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from html import escape
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.capture import Performance, Reference
from app.dataplane import DataPlane
from app.errors import StoreUnavailable
from app.http import Endpoint, FastJSONResponse, data_plane
from app.metrics import Metrics
from app.openapi import MODEL_NAME, ErrorDoc, operation, path_parameter
from app.original.feedback import ReferenceInterval
from app.original.monitor_feedback import CAPTURE_OFF, STORE_DOWN
from app.original.schemas import ErrorDetail
from app.route_metrics import RouteFigures, ShadowFigures, route_figures
from app.routes import Route

logger = logging.getLogger(__name__)

TAG = "Original API"
METRICS_OFF = "metrics are off (METRICS=0): nothing is counted"
ROUTES_STYLE = """
section.route { border-top: 1px solid #ccc; padding-top: .5rem; margin-top: 1.5rem; }
section.route table { width: auto; } section.route td, section.route th { padding: 1px 10px 1px 0; text-align: left; }
"""


class VariantFigures(BaseModel):
    share: float = Field(description="Its weight over the sum of the route's weights.", examples=[0.9])
    records: int = Field(description="Records it answered through the route, summed over the workers.")


class ShadowComparison(BaseModel):
    """One shadow beside one variant, over the records the variant answered and the shadow predicted."""

    variant: str
    shadow: str
    records: int
    disagreements: int = Field(description="Records whose class the shadow predicted differently.")
    disagreement_rate: float | None = Field(description="disagreements / records; null before any record.")
    mean_top_probability_difference: float | None = Field(
        description="The mean over records where both give probabilities of |the variant's probability of the class "
        "it predicted - the shadow's probability of the class it predicted|; null without such records."
    )


class LiveAccuracy(BaseModel):
    """A model's live accuracy in the route, on the labelled records of the window of its current version's answers:
    a variant's own answers, or a shadow's answers as a shadow."""

    version: str
    window_labels: int = Field(description="Labelled records the figures are computed on (at most FEEDBACK_WINDOW).")
    accuracy: float | None = Field(description="The share right; null without labels.")
    accuracy_lower: float | None = Field(description="The 95 % Wilson interval's lower bound; null without labels.")
    accuracy_upper: float | None
    reference: ReferenceInterval | None = Field(description="The version's accuracy from training; null without one.")


class RouteLive(BaseModel):
    """The live accuracy of the route's variants and shadows, from the labels joined to their captured answers."""

    unavailable: str | None = Field(
        description="Why there are no figures: capture is off (CAPTURE=0) or the store cannot be read; else null."
    )
    variants: dict[str, LiveAccuracy | None] = Field(
        description="Each variant on its own answers; null while nothing it answered is captured (or it does not load)."
    )
    shadows: dict[str, LiveAccuracy | None] = Field(
        description="Each shadow on its answers as the route's shadow; null while none is captured."
    )


class RouteFiguresBody(BaseModel):
    """A route's figures: its variants' shares and records, each shadow's disagreement with each variant, and their
    live accuracy."""

    route: str
    counted: bool = Field(description="False when metrics are off (METRICS=0): every count is then 0.")
    sticky_header: str | None
    variants: dict[str, VariantFigures]
    shadows: list[ShadowComparison]
    shadow_dropped: dict[str, int] = Field(
        description="Records a shadow did not predict, once per shadow, by reason "
        "(queue_full, unavailable, failed, stopping)."
    )
    live: RouteLive


@dataclass(frozen=True)
class Live:
    """The live figures of a route's variants, (name, False), and shadows, (name, True), or why there are none."""

    figures: dict[tuple[str, bool], Performance | None]
    unavailable: str | None = None


def route_live(plane: DataPlane, route: Route) -> Live:
    """Never an error: capture off or a store that cannot be read is said in `unavailable` (blocking)."""
    try:
        figures = plane.route_performance(route)
    except StoreUnavailable as error:
        logger.warning("route %s is shown without the live accuracy: %s", route.name, error)
        return Live({}, STORE_DOWN)
    return Live({}, CAPTURE_OFF) if figures is None else Live(figures)


def figures_body(figures: RouteFigures, live: Live | None = None) -> dict[str, Any]:
    """GET /routes/{name}'s answer (RouteFiguresBody)."""
    shares = figures.route.shares()
    live = live or Live({}, CAPTURE_OFF)
    return {
        "route": figures.route.name,
        "counted": figures.counted,
        "sticky_header": figures.route.sticky_header,
        "variants": {name: {"share": shares[name], "records": count} for name, count in figures.answered.items()},
        "shadows": [_comparison(shadow) for shadow in figures.shadows],
        "shadow_dropped": figures.dropped,
        "live": {
            "unavailable": live.unavailable,
            "variants": {name: _live(live, name, False) for name in figures.route.spec.variants},
            "shadows": {name: _live(live, name, True) for name in figures.route.spec.shadows},
        },
    }


def _live(live: Live, name: str, shadow: bool) -> dict[str, Any] | None:
    figures = live.figures.get((name, shadow))
    if figures is None:
        return None
    return {
        "version": figures.version,
        "window_labels": figures.window_labels,
        "accuracy": figures.accuracy,
        "accuracy_lower": figures.lower,
        "accuracy_upper": figures.upper,
        "reference": None if figures.reference is None else asdict(figures.reference),
    }


def _comparison(figures: ShadowFigures) -> dict[str, Any]:
    return {
        "variant": figures.variant,
        "shadow": figures.shadow,
        "records": figures.records,
        "disagreements": figures.disagreements,
        "disagreement_rate": figures.disagreement_rate,
        "mean_top_probability_difference": figures.mean_probability_difference,
    }


def metrics_of(request: Request) -> Metrics | None:
    metrics: Metrics | None = getattr(request.state, "metrics", None)
    return metrics


async def route_figures_endpoint(request: Request) -> Response:
    plane = data_plane(request)
    name = request.path_params["name"]
    route = next((route for route in await run_in_threadpool(plane.route_list) if route.name == name), None)
    if route is None:
        # No such route, or no folder to read one from: a folder gone is a 503, as on every path that reads it.
        await run_in_threadpool(plane.available)
        raise HTTPException(404, f"No route {name!r} in routes.json.")
    figures = await run_in_threadpool(route_figures, metrics_of(request), route)
    return FastJSONResponse(figures_body(figures, await run_in_threadpool(route_live, plane, route)))


# --- the page's sections ----------------------------------------------------------------------------------


def route_sections(plane: DataPlane, metrics: Metrics | None, root_path: str) -> str:
    """Every route's section (blocking: reads the counters and the capture store)."""
    routes = plane.route_list()
    return "".join(
        route_section(route_figures(metrics, route), root_path, route_live(plane, route)) for route in routes
    )


def route_section(figures: RouteFigures, root_path: str, live: Live) -> str:
    route = figures.route
    name = escape(route.name)
    link = escape(f"{root_path}/routes/{route.name}", quote=True)
    head = f'<h2>Route {name} <small><a href="{link}">route JSON</a></small></h2>'
    note = "" if figures.counted else f'<p class="note">{escape(METRICS_OFF.capitalize())}.</p>'
    shares = route.shares()
    variants = "".join(
        f"<tr><td>{escape(variant)}</td><td>{shares[variant]:.0%}</td><td>{count:,}</td></tr>"
        for variant, count in figures.answered.items()
    )
    table = f"<table><tr><th>variant</th><th>share</th><th>records answered</th></tr>{variants}</table>"
    body = f"{head}{note}{table}{_shadows_table(figures)}{_live_table(route, live)}"
    return f'<section class="route" id="route-{name}">{body}</section>'


def _shadows_table(figures: RouteFigures) -> str:
    if not figures.shadows:
        return '<p class="note">No shadows.</p>'
    rows = "".join(
        f"<tr><td>{escape(shadow.shadow)}</td><td>{escape(shadow.variant)}</td><td>{shadow.records:,}</td>"
        f"<td>{shadow.disagreements:,}</td><td>{_share(shadow.disagreement_rate)}</td>"
        f"<td>{_number(shadow.mean_probability_difference)}</td></tr>"
        for shadow in figures.shadows
    )
    dropped = sum(figures.dropped.values())
    lost = f'<p class="note">{dropped:,} shadow records dropped.</p>' if dropped else ""
    head = (
        "<tr><th>shadow</th><th>beside</th><th>records</th><th>disagreements</th><th>rate</th>"
        "<th>mean top-probability difference</th></tr>"
    )
    return f"<h3>Shadows</h3><table>{head}{rows}</table>{lost}"


def _live_table(route: Route, live: Live) -> str:
    if live.unavailable is not None:
        return f'<h3>Live accuracy</h3><p class="note">{escape(live.unavailable)}</p>'
    answers = [(name, False) for name in route.spec.variants] + [(name, True) for name in route.spec.shadows]
    if not any(figures is not None and figures.window_labels for figures in live.figures.values()):
        return '<h3>Live accuracy</h3><p class="note">No labels yet for the answers of this route\'s models.</p>'
    rows = "".join(_live_row(name, shadow, live.figures.get((name, shadow))) for name, shadow in answers)
    head = (
        "<tr><th>model</th><th>answers</th><th>version</th><th>labels</th><th>live accuracy</th>"
        "<th>95 % interval</th><th>training interval</th></tr>"
    )
    return f"<h3>Live accuracy</h3><table>{head}{rows}</table>"


def _live_row(name: str, shadow: bool, figures: Performance | None) -> str:
    role = "as shadow" if shadow else "own"
    if figures is None:
        return f'<tr><td>{escape(name)}</td><td>{role}</td><td colspan="5">nothing captured yet</td></tr>'
    interval = "-" if figures.lower is None or figures.upper is None else _interval(figures.lower, figures.upper)
    return (
        f"<tr><td>{escape(name)}</td><td>{role}</td><td>{escape(figures.version)}</td><td>{figures.window_labels:,}"
        f"</td><td>{_share(figures.accuracy)}</td><td>{interval}</td><td>{_reference(figures.reference)}</td></tr>"
    )


def _reference(reference: Reference | None) -> str:
    return "-" if reference is None else f"{reference.mean:.1%} ({_interval(reference.lower, reference.upper)})"


def _interval(lower: float, upper: float) -> str:
    return f"{lower:.1%} to {upper:.1%}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


ROUTE_ERRORS: dict[int, ErrorDoc] = {404: (ErrorDetail, "No route of that name in routes.json.")}
ROUTE_ENDPOINT = Endpoint(
    "GET",
    "/routes/{name}",
    route_figures_endpoint,
    operation(
        TAG,
        "A route's figures: each variant's share and records answered, each shadow's disagreement with each variant, "
        "and each one's live accuracy",
        RouteFiguresBody,
        ROUTE_ERRORS,
        parameters=[path_parameter("name", MODEL_NAME)],
    ),
)
SCHEMAS = [RouteFiguresBody, VariantFigures, ShadowComparison, RouteLive, LiveAccuracy]
