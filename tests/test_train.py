"""scripts/train.py, run for real on the shipped data."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from penguins import (
    CATEGORICAL,
    FEATURES,
    MODEL_NAMES,
    NUMERIC,
    file_sha256,
    load_penguins,
    numeric_profile,
    split,
)

from app.calibration import Calibrator, read_calibrator
from app.modelfile import unpack
from app.monitoring.profile import NoProfile, read_profile
from app.predictors import build_predictor
from app.reference_accuracy import parse_reference_accuracy
from tests.helpers import ROOT, run_script

METADATA_KEYS = {
    "name", "estimator", "params", "cv_score", "test_accuracy", "features",
    "classes", "sklearn_version", "trained_at", "data_sha256", "seed", "reference", "labelled", "reference_accuracy",
}  # fmt: skip
# The module's full run repeats the cross-validation behind the reference accuracy 3 times, not 10: the same code.
CV_REPEATS = 3
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
    result = run_script("train.py", "--models-dir", models, "--cv-repeats", str(CV_REPEATS))
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
        assert set(bundle) == {"model", "label_encoder", "calibrator", "metadata"}
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
        assert metadata["labelled"] is None
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


def plain(value: Any) -> bool:
    """Only what any Python reads back without the project's code or numpy: dicts, lists, str, int, float."""
    if isinstance(value, dict):
        return all(type(key) is str and plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(plain(item) for item in value)
    return type(value) in (str, int, float)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_reference_profile_is_plain_data_the_server_reads(full_run: tuple[Path, str], name: str) -> None:
    bundle = load(full_run[0], name)
    reference = bundle["metadata"]["reference"]
    assert plain(reference)
    profile = read_profile(bundle["metadata"], bundle["metadata"]["classes"], name != "svc")
    assert not isinstance(profile, NoProfile), profile


def test_the_reference_profile_describes_the_training_rows(full_run: tuple[Path, str]) -> None:
    reference = load(full_run[0], "logistic_regression")["metadata"]["reference"]
    X_train, *_ = split(load_penguins(ROOT / "data"))
    assert reference["rows"] == len(X_train) == 266
    for feature in NUMERIC:
        entry, values = reference["numeric"][feature], X_train[feature].to_numpy(dtype=float)
        assert (entry["min"], entry["max"]) == (values.min(), values.max())
        assert len(entry["edges"]) == 9 and entry["edges"] == sorted(set(entry["edges"]))
        assert len(entry["shares"]) == 10 and sum(entry["shares"]) == pytest.approx(1)
        # The first bin holds the rows at or below the first decile: about a tenth of them.
        assert entry["shares"][0] == pytest.approx((values <= entry["edges"][0]).mean())
        assert all(0.05 < share < 0.15 for share in entry["shares"])
    for feature in CATEGORICAL:
        shares = reference["categorical"][feature]
        assert shares == pytest.approx(X_train[feature].value_counts(normalize=True).to_dict())
    predicted = reference["predicted_classes"]
    assert list(predicted) == ["Adelie", "Chinstrap", "Gentoo"] and sum(predicted.values()) == pytest.approx(1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_reference_accuracy_is_an_interval_around_the_cross_validated_mean(
    full_run: tuple[Path, str], name: str
) -> None:
    reference = load(full_run[0], name)["metadata"]["reference_accuracy"]
    assert plain(reference)
    assert (reference["folds"], reference["repeats"], reference["level"]) == (5, CV_REPEATS, 0.95)
    assert 0.9 < reference["lower"] < reference["mean"] <= reference["upper"] <= 1
    assert "Nadeau-Bengio" in reference["method"]
    assert parse_reference_accuracy(reference).mean == reference["mean"]  # what the server reads


def test_prints_the_test_accuracy_beside_the_cross_validated_interval(full_run: tuple[Path, str]) -> None:
    for name in MODEL_NAMES:
        line = re.search(rf"^{name}: test ([01]\.\d+) on 67 rows; cross-validated ([01]\.\d+), 95 % interval "
                         rf"([01]\.\d+) to ([01]\.\d+) \(5 folds x {CV_REPEATS}, fold scores ([01]\.\d+) to "
                         rf"([01]\.\d+)\) in [\d.]+ s$", full_run[1], re.MULTILINE)  # fmt: skip
        assert line, full_run[1]
        _, mean, lower, upper, lowest, highest = map(float, line.groups())
        assert lowest <= lower <= mean <= upper and lowest < highest
        reference = load(full_run[0], name)["metadata"]["reference_accuracy"]
        assert (mean, lower) == (round(reference["mean"], 3), round(reference["lower"], 3))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_calibrator_is_plain_data_fitted_on_every_held_out_row(full_run: tuple[Path, str], name: str) -> None:
    bundle = load(full_run[0], name)
    calibrator = bundle["calibrator"]
    assert plain(calibrator)
    assert calibrator["rows"] == 266 * CV_REPEATS  # each training row held out once per repeat
    assert calibrator["x"] == sorted(calibrator["x"]) and calibrator["y"] == sorted(calibrator["y"])
    assert calibrator["y"][0] >= 0 and calibrator["y"][-1] == 1.0  # the most confident answers were all right
    unpacked = unpack(bundle)
    assert isinstance(read_calibrator(unpacked, build_predictor(unpacked)), Calibrator)


def test_prints_the_mean_calibrated_confidence_beside_the_test_accuracy(full_run: tuple[Path, str]) -> None:
    for name in MODEL_NAMES:
        line = re.search(rf"^{name}: mean calibrated confidence on the test rows ([01]\.\d+), accuracy ([01]\.\d+)$",
                         full_run[1], re.MULTILINE)  # fmt: skip
        assert line, full_run[1]
        confidence, accuracy = map(float, line.groups())
        assert abs(confidence - accuracy) <= 0.03


def test_the_profile_of_many_equal_values_keeps_each_edge_once() -> None:
    # Half the values are 3.0 and a fifth 9.0, the maximum: the deciles are 3, 3, 3, 3, 3, 4, 5, 6 and 9.
    values = np.array([3.0] * 50 + [4.0] * 10 + [5.0] * 10 + [6.0] * 10 + [9.0] * 20)
    profile = numeric_profile(values)
    # 3 once; 9 not at all, as the bin above the maximum would hold nothing.
    assert profile["edges"] == [3.0, 4.0, 5.0, 6.0]
    # (-inf, 3], (3, 4], (4, 5], (5, 6], (6, +inf)
    assert profile["shares"] == [0.5, 0.1, 0.1, 0.1, 0.2]


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


def test_missing_data_file_fails_with_one_sentence_naming_where_to_put_it(tmp_path: Path) -> None:
    result = run_script("train.py", "--quick", "--data-dir", tmp_path / "empty", "--models-dir", tmp_path / "m")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"copy seaborn-data's penguins.csv into {tmp_path / 'empty'}" in result.stderr


def test_only_the_named_model_lands_in_models_dir_taken_from_the_project_root(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "data", project / "data")
    shutil.copy(ROOT / "jupytext.toml", project)
    (project / "notebooks").mkdir()
    # Started from notebooks/, as the notebook kernel is, with MODELS_DIR relative: models land in <root>/out.
    result = run_script("train.py", "--quick", "--only", "svc", cwd=project / "notebooks", env={"MODELS_DIR": "out"})
    assert result.returncode == 0, result.stderr
    assert [path.name for path in (project / "out").iterdir()] == ["svc.pkl"]


# Labelled field records (make export-labelled): they join the training rows, never the test rows.


def labelled_rows(count: int) -> pd.DataFrame:
    """count records taken from the training rows, with their true species, as penguins.csv spells them."""
    X_train, _, y_train, _ = split(load_penguins(ROOT / "data"))
    rows = X_train.iloc[:count].assign(species=y_train.iloc[:count], sex=X_train["sex"].iloc[:count].str.upper())
    return rows[["species", *FEATURES]]


def quick_svc(tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run_script("train.py", "--quick", "--only", "svc", "--models-dir", tmp_path / "models", *args, env=env)
    return result.returncode, result.stdout, result.stderr


def test_labelled_records_join_the_training_rows_only(tmp_path: Path) -> None:
    csv = tmp_path / "field.csv"
    labelled_rows(20).assign(request_id="r-1").to_csv(csv, index=False)  # other columns are ignored
    code, output, error = quick_svc(tmp_path, "--labelled", csv)
    assert code == 0, error
    assert f"added 20 labelled records from {csv}: train: 286 rows" in output
    assert "test: 67 rows" in output
    metadata = load(tmp_path / "models", "svc")["metadata"]
    assert metadata["reference"]["rows"] == 286
    assert metadata["labelled"] == {"file": "field.csv", "rows": 20, "sha256": file_sha256(csv)}
    assert load(tmp_path / "models", "svc")["calibrator"]["rows"] == 2 * 286


def test_labelled_csv_in_the_data_folder_is_used_by_default_and_none_turns_it_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    labelled_rows(5).to_csv(data / "labelled.csv", index=False)
    code, output, error = quick_svc(tmp_path, "--data-dir", data, env={"LABELLED_CSV": ""})
    assert code == 0, error
    assert f"added 5 labelled records from {data / 'labelled.csv'}" in output
    code, output, error = quick_svc(tmp_path, "--data-dir", data, env={"LABELLED_CSV": "none"})
    assert code == 0, error
    assert "labelled records" not in output
    assert load(tmp_path / "models", "svc")["metadata"]["labelled"] is None


@pytest.mark.parametrize(
    ("edit", "sentence"),
    [
        pytest.param(
            lambda rows: rows.drop(columns="sex"), "lacks the column(s) sex: it needs species and", id="column"
        ),
        pytest.param(
            lambda rows: rows.assign(species="Emperor"),
            "has species 'Emperor' on line 2; known: Adelie, Chinstrap, Gentoo.",
            id="species",
        ),
        pytest.param(lambda rows: rows.assign(island="Anvers"), "has island 'Anvers' on line 2", id="island"),
        pytest.param(
            lambda rows: rows.assign(body_mass_g=["heavy", *rows["body_mass_g"][1:]]),
            "has body_mass_g 'heavy' on line 2: measurements must be positive numbers.",
            id="number",
        ),
        pytest.param(
            lambda rows: rows.assign(bill_depth_mm=[*rows["bill_depth_mm"][:2], None]),
            "has a missing value on line 4: every labelled record must be complete.",
            id="missing",
        ),
    ],
)
def test_a_malformed_labelled_csv_stops_training_with_one_sentence(tmp_path: Path, edit: Any, sentence: str) -> None:
    csv = tmp_path / "labelled.csv"
    edit(labelled_rows(3)).to_csv(csv, index=False)
    code, _, error = quick_svc(tmp_path, "--labelled", csv)
    assert code == 1
    assert "Traceback" not in error
    assert error.startswith(f"{csv} {sentence}"), error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "models").exists()


def test_a_labelled_csv_that_does_not_exist_stops_training(tmp_path: Path) -> None:
    code, _, error = quick_svc(tmp_path, env={"LABELLED_CSV": str(tmp_path / "nowhere.csv")})
    assert code == 1
    assert error.strip() == f"{tmp_path / 'nowhere.csv'} does not exist: name a CSV of labelled records, or none."
