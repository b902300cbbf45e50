"""scripts/feedback_demo.py against a live server: labels follow the predictions, the live accuracy falls below
the reference when the labels change meaning, and the alert's expression turns true.

Why the fall holds by arithmetic (the seeds are fixed anyway): in the held-out split about a fifth of the birds
are Chinstrap, which the model tells apart almost always; labelled Adelie, each of them counts wrong, so a window
of 100 such labels scores about 0.8, whose Wilson upper bound (about 0.87) is far below any reference lower bound
training measures (above 0.95). The realistic phase scores near 1, its interval reaching above that bound.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedback_demo import (
    ALERT_LABELS,
    GAPE_MM,
    Reference,
    from_the_gape,
    held_out,
    reading,
    relabelled,
    resampled,
)
from penguins import FEATURES, SEED

from tests.helpers import ROOT, run_script
from tests.live import LiveServer, start_server

TOKEN = "feedback-demo-0123456789abcdef"
# Small and quick: a window of 100 labels, phases of 100 records, labels 0.2 s late.
FLAGS = ["--records", "100", "--batch", "25", "--delay", "0.2", "--pace", "0.01"]


@pytest.fixture(scope="module")
def live(module_models_dir: Path) -> Iterator[LiveServer]:
    folder = module_models_dir.parent
    settings = {
        "FEEDBACK_WINDOW": "100",
        "API_TOKEN": TOKEN,
        "CAPTURE_URL": f"sqlite:///{folder / 'capture' / 'capture.db'}",
    }
    with start_server(module_models_dir, folder / "server.log", settings=settings) as server:
        yield server


@pytest.fixture(scope="module")
def printed(live: LiveServer) -> list[str]:
    result = run_script("feedback_demo.py", "--url", live.url, *FLAGS, env={"API_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def last_line_of_each_phase(lines: list[str]) -> dict[str, list[str]]:
    """Each phase's last line of figures, split: phase, sent, labels, accuracy, [lower, upper], estimate, ..."""
    last: dict[str, list[str]] = {}
    for text in lines:
        words = text.split()
        if words and words[0] in ("realistic", "concept", "covariate") and words[1].isdigit():
            last[words[0]] = words
    return last


def test_relabelling_changes_only_the_chinstrap_labels() -> None:
    rows = resampled(held_out(ROOT / "data"), 200, random.Random(SEED))
    changed = relabelled(rows)

    assert [record for record, _ in changed] == [record for record, _ in rows]
    assert {(label, new) for (_, label), (_, new) in zip(rows, changed, strict=True) if label != new} == {
        ("Chinstrap", "Adelie")
    }


def test_measuring_from_the_gape_lengthens_only_the_bill() -> None:
    rows = resampled(held_out(ROOT / "data"), 50, random.Random(SEED))
    shifted = from_the_gape(rows)

    assert [label for _, label in shifted] == [label for _, label in rows]
    for (record, _), (moved, _) in zip(rows, shifted, strict=True):
        assert moved["bill_length_mm"] == pytest.approx(record["bill_length_mm"] + GAPE_MM)
        assert {name: moved[name] for name in FEATURES if name != "bill_length_mm"} == {
            name: record[name] for name in FEATURES if name != "bill_length_mm"
        }


@pytest.mark.parametrize(("labels", "upper", "alert"), [(ALERT_LABELS, 0.9, True), (ALERT_LABELS - 1, 0.9, False),
                                                         (ALERT_LABELS, 0.96, False)])  # fmt: skip
def test_the_alert_needs_enough_labels_and_an_upper_bound_below_the_reference(
    labels: int, upper: float, alert: bool
) -> None:
    version = {
        "current": True, "window_labels": labels, "accuracy": upper - 0.1, "accuracy_lower": upper - 0.2,
        "accuracy_upper": upper, "coverage": 1.0,
    }  # fmt: skip
    figures = reading("concept", 100, {"versions": [version]}, Reference(0.98, 0.96, 1.0))

    assert figures.alert is alert


def test_the_live_accuracy_falls_below_the_reference_and_the_alert_turns_true(printed: list[str]) -> None:
    reference_lower = float(printed[0].split("[")[1].split(",")[0])
    last = last_line_of_each_phase(printed)

    realistic, concept = last["realistic"], last["concept"]
    assert realistic[2] == concept[2] == "100"  # every label of the phase arrived, after its delay
    assert realistic[-1] == "false"
    assert concept[-1] == "true"
    assert float(concept[3]) < float(realistic[3])
    assert float(concept[5].rstrip("]")) < reference_lower  # the upper bound, below the reference's lower one
    summary = {words[0]: words[1:] for words in map(str.split, printed) if len(words) == 4}
    assert summary["concept"] == [concept[3], concept[6], "true"]  # the closing table: live, estimate, below
    assert summary["realistic"][2] == "false"


def test_the_labels_arrive_after_their_predictions(printed: list[str]) -> None:
    realistic = [text.split() for text in printed if text.startswith("realistic ") and text.split()[1].isdigit()]

    assert realistic[0][2] == "0"  # the first batch's labels are still on their way
    assert realistic[-1][2] == "100"


def test_the_estimate_falls_under_the_covariate_shift_and_not_under_the_new_labels(printed: list[str]) -> None:
    last = last_line_of_each_phase(printed)
    estimates = {phase: words[6] for phase, words in last.items()}

    realistic, concept, covariate = (float(estimates[phase]) for phase in ("realistic", "concept", "covariate"))
    assert abs(concept - realistic) < 0.005  # the same records: the model is as sure of itself
    # Records nearer its boundaries: it is less sure. The estimate sees the direction, not the whole fall (the
    # model extrapolates with confidence), which app/README.md says.
    assert covariate < realistic - 0.01


def test_the_demo_needs_the_api_token(live: LiveServer) -> None:
    refused = run_script("feedback_demo.py", "--url", live.url, *FLAGS)

    assert refused.returncode == 1 and "answered 401" in refused.stderr
