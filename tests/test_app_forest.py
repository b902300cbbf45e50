"""app/forest.py: the numpy twin answers exactly as the forest's own predict_proba."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from jobs import ROOT
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier

from app.forest import SMALL_BATCH, CompiledForest, compile_forest

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


@pytest.fixture(scope="module")
def encoded_penguins(trained_models_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every penguin, encoded by the trained forest's own preprocessing, and its species."""
    penguins = pd.read_csv(ROOT / "data" / "penguins.csv").dropna()
    penguins["sex"] = penguins["sex"].str.title()
    preprocess = joblib.load(trained_models_dir / "random_forest.pkl")["model"][:-1]
    return preprocess.transform(penguins[FEATURES]), penguins["species"].to_numpy()


FORESTS = [
    pytest.param(lambda: RandomForestClassifier(n_estimators=30, random_state=0), id="random-forest"),
    pytest.param(lambda: RandomForestClassifier(n_estimators=10, max_depth=2, random_state=0), id="shallow"),
    pytest.param(lambda: ExtraTreesClassifier(n_estimators=20, random_state=0), id="extra-trees"),
]


@pytest.mark.parametrize("make", FORESTS)
def test_matches_predict_proba_bit_for_bit_on_every_penguin(
    make: Callable[[], Any], encoded_penguins: tuple[np.ndarray, np.ndarray]
) -> None:
    features, species = encoded_penguins
    forest = make().fit(features, species)
    compiled = compile_forest(forest, features[:24])
    assert isinstance(compiled, CompiledForest)
    for size in (1, 5, SMALL_BATCH):
        for start in range(0, len(features) - size, 3):
            rows = features[start : start + size]
            assert np.array_equal(compiled.predict_proba(rows), forest.predict_proba(rows))


def test_matches_on_measurements_far_outside_the_data(encoded_penguins: tuple[np.ndarray, np.ndarray]) -> None:
    features, species = encoded_penguins
    forest = RandomForestClassifier(n_estimators=15, random_state=1).fit(features, species)
    compiled = compile_forest(forest, features[:24])
    odd = np.random.default_rng(0).uniform(-1e6, 1e6, size=(SMALL_BATCH, features.shape[1]))
    assert np.array_equal(compiled.predict_proba(odd), forest.predict_proba(odd))


def test_big_batches_go_to_the_forest_itself(encoded_penguins: tuple[np.ndarray, np.ndarray]) -> None:
    features, species = encoded_penguins
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(features, species)
    compiled = compile_forest(forest, features[:24])
    assert np.array_equal(compiled.predict_proba(features), forest.predict_proba(features))


def test_other_estimators_are_left_alone(encoded_penguins: tuple[np.ndarray, np.ndarray]) -> None:
    features, species = encoded_penguins
    boosted = GradientBoostingClassifier(n_estimators=5).fit(features, species)
    assert compile_forest(boosted, features[:24]) is None


def test_the_served_forest_uses_the_twin(trained_models_dir: Path) -> None:
    from app.predictors import build_predictor, unpack

    predictor = build_predictor(unpack(joblib.load(trained_models_dir / "random_forest.pkl")))
    assert isinstance(predictor.estimator, CompiledForest)
