"""The training/serving contract, stated once on each side (scripts/penguins.py, app/features.py), agrees."""

from __future__ import annotations

from pathlib import Path

import joblib
import pandas as pd
import penguins

from app import calibration, features
from app.original.schemas import PenguinRecord
from tests.helpers import ROOT


def test_the_scripts_and_the_app_name_the_same_features_in_the_same_order() -> None:
    assert tuple(penguins.FEATURES) == features.FEATURES
    assert tuple(penguins.CATEGORICAL) == features.CATEGORICAL
    assert tuple(penguins.NUMERIC) == features.NUMERIC


def test_the_scripts_and_the_app_name_the_calibrator_scores_alike() -> None:
    assert (penguins.TOP_PROBABILITY, penguins.DECISION_MARGIN) == (
        calibration.TOP_PROBABILITY,
        calibration.DECISION_MARGIN,
    )
    assert (sorted(penguins.ISLANDS), sorted(penguins.SEXES)) == (sorted(features.ISLANDS), sorted(features.SEXES))


def test_the_request_schema_has_a_field_per_feature() -> None:
    assert set(PenguinRecord.__annotations__) == set(features.FEATURES)


def test_the_data_holds_exactly_the_categories_the_app_accepts() -> None:
    data = pd.read_csv(ROOT / "data" / "penguins.csv").dropna()
    assert sorted(data["island"].unique()) == sorted(features.ISLANDS)
    assert sorted(data["sex"].map(features.canonical_sex).unique()) == sorted(features.SEXES)


def test_a_trained_bundle_takes_the_app_features(trained_models_dir: Path) -> None:
    for name in penguins.MODEL_NAMES:
        bundle = joblib.load(trained_models_dir / f"{name}.pkl")
        assert tuple(bundle["metadata"]["features"]) == features.FEATURES
        assert tuple(bundle["model"].feature_names_in_) == features.FEATURES
