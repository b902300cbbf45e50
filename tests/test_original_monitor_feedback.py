"""app/original/monitor_feedback.py: the ground truth drawn on /monitor, from figures made here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from app.capture import Performance
from app.original.monitor_feedback import MIN_LABELS, GroundTruth, truth_section
from app.reference_accuracy import ReferenceAccuracy
from app.registry import LoadedModel, Registry

CLASSES = ("Adelie", "Chinstrap", "Gentoo")
REFERENCE = ReferenceAccuracy(0.97, 0.95, 0.99, 0.95, 5, 10, "repeated stratified cross-validation")


@pytest.fixture(scope="module")
def svc(trained_models_dir: Path) -> LoadedModel:
    model = Registry(trained_models_dir).get("svc")
    return dataclasses.replace(model, reference_accuracy=REFERENCE)


def figures(
    model: LoadedModel, correct: int, total: int, lower: float, upper: float, estimate: float | None = None
) -> Performance:
    """Figures of the model's current version: `correct` of `total` labels, the wrong ones true Gentoo."""
    return Performance(
        model=model.stem,
        version=model.version,
        classes=CLASSES,
        first_at=0.0,
        last_at=60.0,
        window_labels=total,
        correct=correct,
        accuracy=correct / total,
        lower=lower,
        upper=upper,
        confusion={("Adelie", "Adelie"): correct, ("Gentoo", "Adelie"): total - correct},
        labelled_recent=total,
        recent=2 * total,
        delays={0.5: 90.0, 0.9: 7_200.0},
        estimated_accuracy=estimate,
        estimated_records=0 if estimate is None else 2 * total,
        reference=None,
    )


def test_the_estimate_is_drawn_where_its_value_lies(svc: LoadedModel) -> None:
    live = figures(svc, 190, 200, 0.91, 0.97, estimate=0.93)
    html = truth_section(svc, GroundTruth((live,), 1000))

    # On the scale from 90 % to 100 %, 93 % lies 30 % along it.
    assert '<span class="estimate" style="left: 30.00%" title="estimated 93.0 %">' in html
    assert "estimated <small>400 records</small>" in html
    assert '<span class="band" style="left: 50.00%; width: 40.00%">' in html


def test_without_an_estimate_no_estimate_is_drawn(svc: LoadedModel) -> None:
    html = truth_section(svc, GroundTruth((figures(svc, 190, 200, 0.91, 0.97),), 1000))
    assert 'class="estimate"' not in html and "estimated" not in html


@pytest.mark.parametrize(
    ("correct", "total", "lower", "upper", "verdict"),
    [
        pytest.param(196, 200, 0.93, 0.99, "consistent with training", id="overlapping"),
        pytest.param(150, 200, 0.68, 0.81, "below the training interval", id="below"),
        pytest.param(10, MIN_LABELS - 1, 0.1, 0.35, f"{MIN_LABELS - 1} labels: too few to judge", id="too-few"),
    ],
)
def test_the_verdict_compares_the_two_intervals(
    svc: LoadedModel, correct: int, total: int, lower: float, upper: float, verdict: str
) -> None:
    html = truth_section(svc, GroundTruth((figures(svc, correct, total, lower, upper),), 1000))
    assert re.search(rf'<span class="verdict \w+">{verdict}</span>', html)


def test_a_low_accuracy_widens_the_scale_to_the_tenth_below_it(svc: LoadedModel) -> None:
    html = truth_section(svc, GroundTruth((figures(svc, 100, 200, 0.43, 0.57),), 1000))
    ticks = re.findall(r'<span style="left: [\d.]+%">(\d+) %</span>', html)
    assert ticks == ["40", "50", "60", "70", "80", "90", "100"]


def test_the_delays_read_in_units_a_person_uses(svc: LoadedModel) -> None:
    html = truth_section(svc, GroundTruth((figures(svc, 190, 200, 0.91, 0.97),), 1000))
    assert "50% of the last 400 predictions labelled; label delay p50 1.5 min, p90 2.0 h." in html


def test_a_model_without_a_reference_shows_its_live_figures_alone(svc: LoadedModel) -> None:
    bare = dataclasses.replace(svc, reference_accuracy=None)
    html = truth_section(bare, GroundTruth((figures(bare, 190, 200, 0.91, 0.97),), 1000))
    assert "holds no reference accuracy" in html
    assert 'class="interval"' in html and 'class="band"' not in html and "verdict" not in html
