"""compose/prometheus/alerts.yml: valid rules, and unit tests (alerts.test.yml) that show each alert fire and not fire.

Debian's promtool (package prometheus, which .ci/run installs) checks and runs them; a deliberately broken copy of
the rules shows the unit tests would catch a change of threshold.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

RULES = ROOT / "compose" / "prometheus"
ALERTS = [
    "PenguinsFeatureDrift", "PenguinsPredictionDrift", "PenguinsLiveAccuracyBelowReference",
    "PenguinsEstimatedAccuracyLow", "PenguinsLabelCoverageLow", "PenguinsHighErrorRate", "PenguinsSlowAnswers",
]  # fmt: skip


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool (Debian package prometheus) is needed: .ci/run installs it"
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", RULES / "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_each_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = promtool("test", "rules", RULES / "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    text = (RULES / "alerts.test.yml").read_text()
    for alert in ALERTS:
        assert text.count(f"alertname: {alert}") >= 2, f"{alert} is not shown both firing and quiet"


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        pytest.param("penguins_feature_drift_psi > 0.25", "penguins_feature_drift_psi > 0.5", id="drift-threshold"),
        pytest.param("penguins_drift_window_records >= 100", "penguins_drift_window_records >= 0", id="min-records"),
        # With replicas, a join on the model alone judges one replica's PSI by another's record count.
        pytest.param(
            "feature_drift_psi > 0.25 and on (job, instance, model)",
            "feature_drift_psi > 0.25 and on (model)",
            id="feature-drift-join-across-replicas",
        ),
        pytest.param(
            "prediction_drift_psi > 0.25 and on (job, instance, model)",
            "prediction_drift_psi > 0.25 and on (model)",
            id="prediction-drift-join-across-replicas",
        ),
        pytest.param("> 0.05", "> 0.2", id="error-rate"),
        pytest.param("penguins_live_window_labels >= 50", "penguins_live_window_labels >= 0", id="min-labels"),
        pytest.param(
            "penguins_live_accuracy_upper < on", "penguins_live_accuracy_upper - 0.05 < on", id="live-vs-reference"
        ),
        pytest.param(
            "penguins_reference_accuracy_lower - 0.05", "penguins_reference_accuracy_lower - 0.1", id="well-below"
        ),
        pytest.param("for: 30m", "for: 5m", id="estimate-duration"),
        pytest.param("penguins_label_coverage < 0.05", "penguins_label_coverage < 0.5", id="coverage"),
        pytest.param("[1h]) > 0", "[1h]) >= 0", id="coverage-needs-traffic"),
        pytest.param("for: 5m", "for: 1m", id="error-rate-duration"),
        pytest.param("\n            > 0.5", "\n            > 2", id="latency-threshold"),
    ],
)
def test_the_unit_tests_catch_a_changed_rule(tmp_path: Path, original: str, broken: str) -> None:
    rules = (RULES / "alerts.yml").read_text()
    assert original in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(original, broken, 1))
    shutil.copy(RULES / "alerts.test.yml", tmp_path)

    tested = promtool("test", "rules", tmp_path / "alerts.test.yml")
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr
