"""A route's figures as its counters hold them: records each variant answered, and each shadow beside each variant.

Read from the counters themselves (app/metrics.py), so the figures are the same whichever worker is asked: with
several workers, every worker's values summed from the shared folder, as a scrape sums them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from app.metrics import Metrics
from app.multiprocess import shared_folder
from app.routes import Route

# Counter families read, by the field of ShadowFigures they fill (None: RouteFigures.answered).
ANSWERED = "penguins_route_records"
SHADOW_FIELDS = {
    "penguins_shadow_records": "records",
    "penguins_shadow_disagreements": "disagreements",
    "penguins_shadow_probability_records": "probability_records",
    "penguins_shadow_top_probability_difference": "probability_difference",
}
DROPPED = "penguins_shadow_dropped"


@dataclass
class ShadowFigures:
    """One shadow beside one variant: records both predicted, and how they differ."""

    variant: str
    shadow: str
    records: int = 0
    disagreements: int = 0
    probability_records: int = 0  # of them, records where both models give probabilities
    probability_difference: float = 0.0  # the sum over those of |variant's - shadow's probability of its own class|

    @property
    def disagreement_rate(self) -> float | None:
        return self.disagreements / self.records if self.records else None

    @property
    def mean_probability_difference(self) -> float | None:
        return self.probability_difference / self.probability_records if self.probability_records else None


@dataclass(frozen=True)
class RouteFigures:
    """counted: False when metrics are off (METRICS=0), and every count is then 0."""

    route: Route
    counted: bool
    answered: dict[str, int]
    shadows: list[ShadowFigures]
    dropped: dict[str, int]


def route_figures(metrics: Metrics | None, route: Route) -> RouteFigures:
    """Every variant and shadow of the route now, with the counts their series hold (0 where none yet)."""
    answered = dict.fromkeys(route.spec.variants, 0)
    pairs = {(variant, shadow): ShadowFigures(variant, shadow) for variant in answered for shadow in route.spec.shadows}
    dropped: dict[str, int] = {}
    for family in [] if metrics is None else _families(metrics):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("route") != route.name or not sample.name.endswith("_total"):
                continue
            if family.name == ANSWERED and labels["variant"] in answered:
                answered[labels["variant"]] = int(sample.value)
            elif family.name == DROPPED:
                dropped[labels["reason"]] = int(sample.value)
            elif (figures := pairs.get((labels.get("variant", ""), labels.get("shadow", "")))) is not None:
                field = SHADOW_FIELDS[family.name]
                value = sample.value if field == "probability_difference" else int(sample.value)
                setattr(figures, field, value)
    return RouteFigures(route, metrics is not None, answered, list(pairs.values()), dropped)


def _families(metrics: Metrics) -> Iterable[Metric]:
    """The route and shadow counters: this process's, or every worker's summed."""
    wanted = {ANSWERED, DROPPED, *SHADOW_FIELDS}
    folder = shared_folder()
    if folder is None:
        counters = (metrics.route_records, metrics.shadows_lost, *metrics.shadow_counters())
        families: Iterable[Metric] = (family for counter in counters for family in counter.collect())
    else:
        families = MultiProcessCollector(None, path=str(folder)).collect()
    return (family for family in families if family.name in wanted)
