"""app/encoders.py: the compiled encoders against scikit-learn's and pandas' own preprocessing, bit for bit.

What the predictor does with them (the fast path it chooses) is in tests/test_app_predictors.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from app.encoders import compile_column_transformer, compile_dummies, probe_batch
from app.features import CATEGORICAL, FEW_RECORDS, NUMERIC, Batch
from app.modelfile import NotAModel


@pytest.fixture(scope="module")
def trained_transformer(trained_models_dir: Path) -> ColumnTransformer:
    """train.py's fitted ColumnTransformer: one-hot words, scaled measurements."""
    transformer: ColumnTransformer = joblib.load(trained_models_dir / "logistic_regression.pkl")["model"][0]
    return transformer


@pytest.mark.parametrize(
    "records", [pytest.param(FEW_RECORDS // 2, id="few-records"), pytest.param(None, id="many-records")]
)
def test_the_compiled_transformer_equals_sklearns(trained_transformer: ColumnTransformer, records: int | None) -> None:
    batch = probe_batch() if records is None else probe_batch().head(records)
    encoder = compile_column_transformer(trained_transformer)
    assert encoder is not None
    np.testing.assert_array_equal(encoder(batch), trained_transformer.transform(batch.frame()))


def test_an_unknown_category_sets_no_column_as_sklearn_ignores_it(trained_transformer: ColumnTransformer) -> None:
    # Past validation no such value reaches an encoder; the encoder agrees with scikit-learn all the same.
    known = probe_batch().head(1)
    unknown = Batch({"island": ["Atlantis"], "sex": known.categorical["sex"]}, known.numeric)
    encoder = compile_column_transformer(trained_transformer)
    assert encoder is not None
    np.testing.assert_array_equal(encoder(unknown), trained_transformer.transform(unknown.frame()))


def fitted(categorical_step: Any, numeric_step: Any) -> ColumnTransformer:
    transformer = ColumnTransformer(
        [("words", categorical_step, list(CATEGORICAL)), ("numbers", numeric_step, NUMERIC)]
    )
    return transformer.fit(probe_batch().frame())


@pytest.mark.parametrize(
    ("categorical_step", "numeric_step"),
    [
        pytest.param(OneHotEncoder(handle_unknown="ignore"), MinMaxScaler(), id="another-scaler"),
        pytest.param(OneHotEncoder(handle_unknown="error"), StandardScaler(), id="unknown-categories-refused"),
        pytest.param(OneHotEncoder(handle_unknown="ignore", drop="first"), StandardScaler(), id="first-dropped"),
    ],
)
def test_steps_it_cannot_reproduce_exactly_are_not_compiled(categorical_step: Any, numeric_step: Any) -> None:
    assert compile_column_transformer(fitted(categorical_step, numeric_step)) is None


def test_passthrough_measurements_are_copied_as_they_are() -> None:
    transformer = fitted(OneHotEncoder(handle_unknown="ignore", sparse_output=False), "passthrough")
    encoder = compile_column_transformer(transformer)
    assert encoder is not None
    np.testing.assert_array_equal(encoder(probe_batch()), transformer.transform(probe_batch().frame()))


def test_the_dummies_encoder_builds_exactly_pandas_columns() -> None:
    batch = probe_batch()
    expected = pd.get_dummies(batch.frame(), drop_first=True).astype(np.float64)
    encoded = compile_dummies(list(expected.columns))(batch)
    assert list(encoded.columns) == list(expected.columns)
    np.testing.assert_array_equal(encoded.to_numpy(), expected.to_numpy())


def test_a_dummy_column_no_record_can_fill_is_not_a_model() -> None:
    with pytest.raises(NotAModel, match="takes a column 'colour_Blue'"):
        compile_dummies(["bill_length_mm", "colour_Blue"])


def test_the_probe_batch_holds_every_island_and_sex() -> None:
    batch = probe_batch()
    assert {name: set(values) for name, values in batch.categorical.items()} == {
        "island": {"Biscoe", "Dream", "Torgersen"}, "sex": {"Male", "Female"},
    }  # fmt: skip
    assert len(batch) > FEW_RECORDS  # the numpy path of every encoder runs on it too
