"""scripts/evaluate.py, run for real on models trained for the test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from penguins import MODEL_NAMES

from tests.helpers import run_script

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(trained_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The session's trained models, evaluated in a copy: (models folder, printed output)."""
    models = tmp_path_factory.mktemp("evaluated") / "models"
    shutil.copytree(trained_models_dir, models)
    result = run_script("evaluate.py", "--models-dir", models)
    assert result.returncode == 0, result.stderr
    return models, result.stdout


def test_writes_metrics_for_every_model(evaluated: tuple[Path, str]) -> None:
    metrics = json.loads((evaluated[0] / "evaluation" / "metrics.json").read_text())
    assert sorted(metrics) == MODEL_NAMES
    for result in metrics.values():
        assert 0.9 <= result["accuracy"] <= 1.0
        assert 0.9 <= result["macro_f1"] <= 1.0
        assert sum(map(sum, result["confusion_matrix"])) == result["test_rows"] == 67


def test_draws_a_confusion_matrix_per_model_and_a_comparison(evaluated: tuple[Path, str]) -> None:
    expected = {f"confusion_{name}.png" for name in MODEL_NAMES} | {"comparison.png"}
    charts = {path.name: path for path in (evaluated[0] / "evaluation").glob("*.png")}
    assert set(charts) == expected
    assert all(path.read_bytes().startswith(PNG_SIGNATURE) for path in charts.values())


def test_prints_reports_and_one_comparison_table(evaluated: tuple[Path, str]) -> None:
    output = evaluated[1]
    assert output.count("macro avg") == len(MODEL_NAMES)
    assert "accuracy  macro_f1" in output


def test_skips_files_that_are_not_training_bundles(evaluated: tuple[Path, str], tmp_path: Path) -> None:
    (tmp_path / "svc.pkl").write_bytes((evaluated[0] / "svc.pkl").read_bytes())
    (tmp_path / "notes.pkl").write_bytes(b"not a pickle at all")
    result = run_script("evaluate.py", "--models-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipping notes.pkl" in result.stdout
    assert list(json.loads((tmp_path / "evaluation" / "metrics.json").read_text())) == ["svc"]


def test_without_models_exits_non_zero_saying_to_train_first(tmp_path: Path) -> None:
    result = run_script("evaluate.py", "--models-dir", tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "run make train first" in result.stderr
