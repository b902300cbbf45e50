"""A route's figures in this dialect: GET /routes/{name} for scripts, and a section per route on /monitor.

The decision in one view: each variant's share and the records it answered, and each shadow's disagreement with
each variant, from the counters every worker adds to (app/route_metrics.py).
"""

from __future__ import annotations

from html import escape
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.http import Endpoint, FastJSONResponse, data_plane
from app.metrics import Metrics
from app.openapi import MODEL_NAME, ErrorDoc, operation, path_parameter
from app.original.schemas import ErrorDetail
from app.route_metrics import RouteFigures, ShadowFigures, route_figures

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


class RouteFiguresBody(BaseModel):
    """A route's figures: its variants' shares and records, each shadow's disagreement with each variant."""

    route: str
    counted: bool = Field(description="False when metrics are off (METRICS=0): every count is then 0.")
    sticky_header: str | None
    variants: dict[str, VariantFigures]
    shadows: list[ShadowComparison]
    shadow_dropped: dict[str, int] = Field(
        description="Records a shadow did not predict, once per shadow, by reason "
        "(queue_full, unavailable, failed, stopping)."
    )


def figures_body(figures: RouteFigures) -> dict[str, Any]:
    """GET /routes/{name}'s answer (RouteFiguresBody)."""
    shares = figures.route.shares()
    return {
        "route": figures.route.name,
        "counted": figures.counted,
        "sticky_header": figures.route.sticky_header,
        "variants": {name: {"share": shares[name], "records": count} for name, count in figures.answered.items()},
        "shadows": [_comparison(shadow) for shadow in figures.shadows],
        "shadow_dropped": figures.dropped,
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
    return FastJSONResponse(figures_body(figures))


# --- the page's sections ----------------------------------------------------------------------------------


def route_sections(all_figures: list[RouteFigures], root_path: str) -> str:
    return "".join(_route_section(figures, root_path) for figures in all_figures)


def _route_section(figures: RouteFigures, root_path: str) -> str:
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
    return f'<section class="route" id="route-{name}">{head}{note}{table}{_shadows_table(figures)}</section>'


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
        "A route's figures: each variant's share and records answered, each shadow's disagreement with each variant",
        RouteFiguresBody,
        ROUTE_ERRORS,
        parameters=[path_parameter("name", MODEL_NAME)],
    ),
)
SCHEMAS = [RouteFiguresBody, VariantFigures, ShadowComparison]
