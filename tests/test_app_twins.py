"""app/twins.py: each numpy twin answers exactly as its estimator's own predict_proba."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from app.features import FEATURES
from app.modelfile import unpack
from app.predictors import build_predictor
from app.twins import SMALL_BATCH, CompiledForest, CompiledSoftmax, compile_twin
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def encoded_penguins(trained_models_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every penguin, encoded by the trained forest's own preprocessing, and its species."""
    penguins = pd.read_csv(ROOT / "data" / "penguins.csv").dropna()
    penguins["sex"] = penguins["sex"].str.title()
    preprocess = joblib.load(trained_models_dir / "random_forest.pkl")["model"][:-1]
    return preprocess.transform(penguins[list(FEATURES)]), penguins["species"].to_numpy()


ESTIMATORS = [
    pytest.param(lambda: RandomForestClassifier(n_estimators=30, random_state=0), id="random-forest"),
    pytest.param(lambda: RandomForestClassifier(n_estimators=10, max_depth=2, random_state=0), id="shallow"),
    pytest.param(lambda: ExtraTreesClassifier(n_estimators=20, random_state=0), id="extra-trees"),
    pytest.param(lambda: LogisticRegression(max_iter=5000), id="logistic-regression"),
    pytest.param(lambda: LogisticRegression(C=0.01, max_iter=5000), id="logistic-regression-weak"),
]


@pytest.mark.parametrize("make", ESTIMATORS)
def test_matches_predict_proba_bit_for_bit_on_every_penguin(
    make: Callable[[], Any], encoded_penguins: tuple[np.ndarray, np.ndarray]
) -> None:
    features, species = encoded_penguins
    features = StandardScaler().fit_transform(features)  # what the served pipelines feed them
    estimator = make().fit(features, species)
    compiled = compile_twin(estimator, features[:24])
    assert isinstance(compiled, CompiledForest | CompiledSoftmax)
    for size in (1, 5, SMALL_BATCH, SMALL_BATCH + 1, 150):
        for start in range(0, len(features) - size, 3):
            rows = features[start : start + size]
            assert np.array_equal(compiled.predict_proba(rows), estimator.predict_proba(rows))


def test_matches_on_measurements_far_outside_the_data(encoded_penguins: tuple[np.ndarray, np.ndarray]) -> None:
    features, species = encoded_penguins
    forest = RandomForestClassifier(n_estimators=15, random_state=1).fit(features, species)
    compiled = compile_twin(forest, features[:24])
    assert compiled is not None
    odd = np.random.default_rng(0).uniform(-1e6, 1e6, size=(2 * SMALL_BATCH, features.shape[1]))
    for rows in (odd[:SMALL_BATCH], odd):  # the stacked trees, then each tree's own call
        assert np.array_equal(compiled.predict_proba(rows), forest.predict_proba(rows))


def test_a_big_batch_through_the_forest_reads_no_warning_filters(
    encoded_penguins: tuple[np.ndarray, np.ndarray],
) -> None:
    """The forest's joblib wrapper warns when the process's filters are empty as it starts, which they are for a
    moment while it runs in another thread: a server predicting two big batches at once warned now and then."""
    features, species = encoded_penguins
    forest = RandomForestClassifier(n_estimators=5, random_state=1).fit(features, species)
    compiled = compile_twin(forest, features[:24])
    assert compiled is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # as the wrapper leaves them, for a moment, in another thread
        compiled.predict_proba(features[: SMALL_BATCH + 1])
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.parametrize("scale", [1.0, 50.0, 1e4])
def test_a_big_batch_s_softmax_by_class_matches_bit_for_bit(
    encoded_penguins: tuple[np.ndarray, np.ndarray], scale: float
) -> None:
    """Above SMALL_BATCH the twin takes the softmax class by class: the same bits, also where exp under- or
    overflows for some classes (measurements far outside the data)."""
    features, species = encoded_penguins
    features = StandardScaler().fit_transform(features)
    regression = LogisticRegression(max_iter=5000).fit(features, species)
    compiled = compile_twin(regression, features[:24])
    assert isinstance(compiled, CompiledSoftmax)
    rows = np.random.default_rng(int(scale)).normal(size=(20_000, features.shape[1])) * scale
    for batch in (features, rows, rows[: SMALL_BATCH + 1]):
        assert np.array_equal(compiled.predict_proba(batch), regression.predict_proba(batch))


def test_big_batches_go_to_the_forest_itself(encoded_penguins: tuple[np.ndarray, np.ndarray]) -> None:
    features, species = encoded_penguins
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(features, species)
    compiled = compile_twin(forest, features[:24])
    assert compiled is not None
    assert np.array_equal(compiled.predict_proba(features), forest.predict_proba(features))


def test_other_estimators_are_left_alone(encoded_penguins: tuple[np.ndarray, np.ndarray]) -> None:
    features, species = encoded_penguins
    boosted = GradientBoostingClassifier(n_estimators=5).fit(features, species)
    assert compile_twin(boosted, features[:24]) is None
    two_classes = species != "Chinstrap"  # a binary logistic regression has another formula
    binary = LogisticRegression(max_iter=5000).fit(features[two_classes], species[two_classes])
    assert compile_twin(binary, features[:24]) is None


@pytest.mark.parametrize(
    ("name", "twin"), [("random_forest", CompiledForest), ("logistic_regression", CompiledSoftmax)]
)
def test_the_served_models_use_their_twins(trained_models_dir: Path, name: str, twin: type) -> None:
    predictor = build_predictor(unpack(joblib.load(trained_models_dir / f"{name}.pkl")))
    assert isinstance(predictor.estimator, twin)
