"""scripts/train.py, run for real on the shipped data."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from penguins import FEATURES, MODEL_NAMES

from tests.helpers import ROOT, run_script

METADATA_KEYS = {
    "name", "estimator", "params", "cv_score", "test_accuracy", "features",
    "classes", "sklearn_version", "trained_at", "data_sha256", "seed",
}  # fmt: skip
DATA_SHA256 = "e07636bd8af74260099ea2f8678e2eabbf35def579940cc76f67061ee16c06c1"
ONE_PER_SPECIES = [
    pytest.param("Adelie", ["Biscoe", 39.1, 18.7, 181, 3750, "Male"], id="adelie"),
    pytest.param("Gentoo", ["Biscoe", 47.5, 15.0, 218, 4950, "Female"], id="gentoo"),
    pytest.param("Chinstrap", ["Dream", 50.9, 19.1, 196, 3550, "Male"], id="chinstrap"),
]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The full grid search, once for the module: (models folder, printed output)."""
    models = tmp_path_factory.mktemp("models")
    result = run_script("train.py", "--models-dir", models)
    assert result.returncode == 0, result.stderr
    return models, result.stdout


def load(models: Path, name: str) -> dict[str, Any]:
    bundle: dict[str, Any] = joblib.load(models / f"{name}.pkl")
    return bundle


def test_writes_three_bundles_with_documented_keys(full_run: tuple[Path, str]) -> None:
    models, _ = full_run
    assert sorted(path.name for path in models.iterdir()) == [f"{name}.pkl" for name in MODEL_NAMES]
    for name in MODEL_NAMES:
        bundle = load(models, name)
        assert set(bundle) == {"model", "label_encoder", "metadata"}
        assert set(bundle["metadata"]) == METADATA_KEYS


def test_metadata_describes_the_model(full_run: tuple[Path, str]) -> None:
    models, _ = full_run
    for name in MODEL_NAMES:
        metadata = load(models, name)["metadata"]
        assert metadata["name"] == name
        assert metadata["features"] == FEATURES
        assert metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
        assert metadata["data_sha256"] == DATA_SHA256
        assert metadata["seed"] == 42
        assert datetime.fromisoformat(metadata["trained_at"]).utcoffset() == timedelta(0)
        assert type(load(models, name)["model"][-1]).__name__ == metadata["estimator"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_test_accuracy_is_at_least_97_percent(full_run: tuple[Path, str], name: str) -> None:
    assert load(full_run[0], name)["metadata"]["test_accuracy"] >= 0.97


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("species", "row"), ONE_PER_SPECIES)
def test_one_record_is_classified_right(full_run: tuple[Path, str], name: str, species: str, row: list[Any]) -> None:
    bundle = load(full_run[0], name)
    record = pd.DataFrame([row], columns=FEATURES)
    assert bundle["label_encoder"].inverse_transform(bundle["model"].predict(record))[0] == species


def test_preprocessing_is_inside_the_pipeline(full_run: tuple[Path, str]) -> None:
    # One record from another island must not be encoded as if it were the first category.
    model = load(full_run[0], "logistic_regression")["model"]
    encoded = model[:-1].transform(pd.DataFrame([["Dream", 50.9, 19.1, 196, 3550, "Male"]], columns=FEATURES))
    names = list(model[:-1].get_feature_names_out())
    assert encoded[0][names.index("categorical__island_Dream")] == 1.0
    assert encoded[0][names.index("categorical__sex_Male")] == 1.0


def test_prints_one_start_and_one_end_line_per_model(full_run: tuple[Path, str]) -> None:
    _, output = full_run
    for name in MODEL_NAMES:
        assert re.search(rf"^{name}: searching \d+ candidates x 5 folds$", output, re.MULTILINE)
        assert re.search(rf"^{name}: best \{{.*\}} cv=0\.\d+ test=[01]\.\d+ in [\d.]+ s$", output, re.MULTILINE)


def test_prints_a_classification_report_per_model(full_run: tuple[Path, str]) -> None:
    assert full_run[1].count("macro avg") == len(MODEL_NAMES)


def test_leaves_no_temporary_files(full_run: tuple[Path, str]) -> None:
    assert not [path for path in full_run[0].iterdir() if path.suffix != ".pkl"]


def test_two_runs_with_the_same_seed_agree(trained_models_dir: Path, tmp_path: Path) -> None:
    # The session's models are the first run (--quick, the default seed); this is the second.
    first, second = trained_models_dir, tmp_path / "second"
    assert run_script("train.py", "--quick", "--models-dir", second).returncode == 0
    rows = pd.read_csv(ROOT / "data" / "penguins.csv").dropna()[FEATURES]
    for name in MODEL_NAMES:
        one, two = load(first, name), load(second, name)
        for key in ("cv_score", "test_accuracy", "params"):
            assert one["metadata"][key] == two["metadata"][key]
        assert (one["model"].predict(rows) == two["model"].predict(rows)).all()


def test_only_trains_the_named_model_into_models_dir_from_environment(tmp_path: Path) -> None:
    result = run_script("train.py", "--quick", "--only", "svc", env={"MODELS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["svc.pkl"]


def test_missing_data_file_fails_with_one_sentence_naming_where_to_put_it(tmp_path: Path) -> None:
    result = run_script("train.py", "--quick", "--data-dir", tmp_path / "empty", "--models-dir", tmp_path / "m")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"copy seaborn-data's penguins.csv into {tmp_path / 'empty'}" in result.stderr


def test_relative_folders_resolve_from_the_project_root(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "data", project / "data")
    shutil.copy(ROOT / "jupytext.toml", project)
    (project / "notebooks").mkdir()
    # Started from notebooks/, as the notebook kernel is: models still land in <root>/out.
    result = run_script("train.py", "--quick", "--only", "svc", "--models-dir", "out", cwd=project / "notebooks")
    assert result.returncode == 0, result.stderr
    assert (project / "out" / "svc.pkl").is_file()
