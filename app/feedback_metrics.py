"""The capture's and the labels' figures (app/capture/) as Prometheus series, read from the store at a scrape.

The store is the truth every worker and replica shares: whichever is scraped reads the same numbers, cached for a
few seconds (app/capture/recorder.py) so that a scrape stays cheap. That holds for the live accuracy, its estimate
before labels, and the reference accuracy from training, stored with each version when it first answered. Labels
are bounded: the outcomes, the model files in the folder now (a few versions each), and the classes of each version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.capture import OUTCOMES, Figures, Performance, Recorder, Reference
from app.errors import ServingError

logger = logging.getLogger("app")


class FeedbackCollector(Collector):
    def __init__(self, recorder: Recorder, model_files: Callable[[], list[str]]) -> None:
        self.recorder = recorder
        self.model_files = model_files

    def describe(self) -> list[Metric]:
        return []  # the series come and go with the models and their versions

    def collect(self) -> Iterator[Metric]:
        try:
            models = [name.removesuffix(".pkl") for name in self.model_files()]
            figures = self.recorder.figures(models)
        except ServingError as error:
            # The folder or the store is down: the scrape still answers, without these series.
            logger.warning("the live accuracy figures are left out of this scrape: %s", error)
            return
        yield from feedback_families(figures)


def feedback_families(figures: Figures) -> list[Metric]:
    received = CounterMetricFamily(
        "penguins_feedback_labels", "Labels received, by what happened to them.", labels=["outcome"]
    )
    for outcome in OUTCOMES:
        received.add_metric([outcome], figures.outcomes.get(outcome, 0))
    families = version_families()
    for version in figures.versions:
        add_version(families, version)
    return [received, *families.values()]


def version_families() -> dict[str, GaugeMetricFamily]:
    series = ["model", "version"]
    return {
        "labelled": GaugeMetricFamily(
            "penguins_live_labelled_records",
            "Labelled records in the version's window, right or wrong.",
            labels=[*series, "correct"],
        ),
        "confusion": GaugeMetricFamily(
            "penguins_live_confusion_records",
            "Labelled records in the version's window, by true and predicted class.",
            labels=[*series, "label", "predicted"],
        ),
        "accuracy": GaugeMetricFamily(
            "penguins_live_accuracy", "Share of the window's labelled records predicted right.", labels=series
        ),
        "lower": GaugeMetricFamily(
            "penguins_live_accuracy_lower", "Lower bound of the live accuracy's 95 % Wilson interval.", labels=series
        ),
        "upper": GaugeMetricFamily(
            "penguins_live_accuracy_upper", "Upper bound of the live accuracy's 95 % Wilson interval.", labels=series
        ),
        "window": GaugeMetricFamily(
            "penguins_live_window_labels", "Labelled records the live accuracy is computed on.", labels=series
        ),
        "coverage": GaugeMetricFamily(
            "penguins_label_coverage",
            "Share of the version's recent predictions (a window's worth) that have a label.",
            labels=series,
        ),
        "delay": GaugeMetricFamily(
            "penguins_label_delay_seconds",
            "Seconds from prediction to label over the window, by quantile.",
            labels=[*series, "quantile"],
        ),
        "estimated": GaugeMetricFamily(
            "penguins_estimated_accuracy",
            "Mean calibrated confidence of the version's recent predictions, labelled or not: its accuracy "
            "estimated before labels.",
            labels=series,
        ),
        **reference_families(),
    }


def reference_families() -> dict[str, GaugeMetricFamily]:
    """The reference accuracy from training, by model and version: what the live accuracy is compared with."""
    series = ["model", "version"]
    return {
        "reference_mean": GaugeMetricFamily(
            "penguins_reference_accuracy",
            "Mean accuracy of the model's repeated cross-validation at training.",
            labels=series,
        ),
        "reference_lower": GaugeMetricFamily(
            "penguins_reference_accuracy_lower", "Lower bound of that accuracy's 95 % interval.", labels=series
        ),
        "reference_upper": GaugeMetricFamily(
            "penguins_reference_accuracy_upper", "Upper bound of that accuracy's 95 % interval.", labels=series
        ),
    }


def add_reference(families: dict[str, GaugeMetricFamily], series: list[str], reference: Reference) -> None:
    families["reference_mean"].add_metric(series, reference.mean)
    families["reference_lower"].add_metric(series, reference.lower)
    families["reference_upper"].add_metric(series, reference.upper)


def add_version(families: dict[str, GaugeMetricFamily], figures: Performance) -> None:
    series = [figures.model, figures.version]
    families["window"].add_metric(series, figures.window_labels)
    families["labelled"].add_metric([*series, "true"], figures.correct)
    families["labelled"].add_metric([*series, "false"], figures.window_labels - figures.correct)
    for label in figures.classes:
        for predicted in figures.classes:
            families["confusion"].add_metric([*series, label, predicted], figures.confusion.get((label, predicted), 0))
    if figures.accuracy is not None and figures.lower is not None and figures.upper is not None:
        families["accuracy"].add_metric(series, figures.accuracy)
        families["lower"].add_metric(series, figures.lower)
        families["upper"].add_metric(series, figures.upper)
    if figures.coverage is not None:
        families["coverage"].add_metric(series, figures.coverage)
    for quantile, seconds in figures.delays.items():
        families["delay"].add_metric([*series, str(quantile)], seconds)
    if figures.estimated_accuracy is not None:
        families["estimated"].add_metric(series, figures.estimated_accuracy)
    if figures.reference is not None:
        add_reference(families, series, figures.reference)
