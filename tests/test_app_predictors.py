"""app/predictors.py: the three model-file shapes, and the compiled encoder against sklearn's own pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from starlette.testclient import TestClient

from app.features import FEATURES, FEW_RECORDS, Batch
from app.modelfile import NotAModel, unpack
from app.original.schemas import PenguinRecord
from app.predictors import Prediction, Predictor, build_predictor
from tests.helpers import RECORD, ROOT

RECORD_ADAPTER = TypeAdapter(PenguinRecord)
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    """The shipped data as the raw file has it: sex in capitals (MALE, FEMALE)."""
    return pd.read_csv(ROOT / "data" / "penguins.csv").dropna().reset_index(drop=True)


def records_of(frame: pd.DataFrame) -> list[PenguinRecord]:
    return [RECORD_ADAPTER.validate_python(row) for row in frame[list(FEATURES)].to_dict("records")]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """What the pipeline was trained on: seaborn's title-cased sex."""
    return frame.assign(sex=frame["sex"].str.title())[list(FEATURES)]


def load_predictor(folder: Path, name: str) -> tuple[Predictor, dict[str, Any]]:
    bundle = joblib.load(folder / f"{name}.pkl")
    return build_predictor(unpack(bundle)), bundle


@pytest.mark.parametrize("name", ["logistic_regression", "random_forest", "svc"])
def test_the_trained_bundles_get_the_fast_path(trained_models_dir: Path, name: str) -> None:
    assert load_predictor(trained_models_dir, name)[0].fast_path


@pytest.mark.parametrize("name", ["logistic_regression", "random_forest"])
def test_fast_path_equals_the_pipeline_on_the_whole_data_set(
    trained_models_dir: Path, penguins: pd.DataFrame, name: str
) -> None:
    predictor, bundle = load_predictor(trained_models_dir, name)
    answer = predictor.predict(Batch.from_records(records_of(penguins)))
    expected = bundle["model"].predict_proba(canonical(penguins))
    np.testing.assert_array_equal(answer.probabilities, expected)
    assert answer.labels() == list(bundle["label_encoder"].inverse_transform(expected.argmax(axis=1)))


def test_svc_predictions_equal_the_pipeline(trained_models_dir: Path, penguins: pd.DataFrame) -> None:
    predictor, bundle = load_predictor(trained_models_dir, "svc")
    answer = predictor.predict(Batch.from_records(records_of(penguins)))
    expected = bundle["label_encoder"].inverse_transform(bundle["model"].predict(canonical(penguins)))
    assert answer.labels() == list(expected) and answer.probabilities is None


record_strategy = st.fixed_dictionaries(
    {
        "island": st.sampled_from(["Biscoe", "Dream", "Torgersen"]),
        "sex": st.sampled_from(["Male", "Female"]).flatmap(
            lambda sex: st.lists(st.booleans(), min_size=len(sex), max_size=len(sex)).map(
                lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(sex, upper, strict=True))
            )
        ),
        **{column: st.floats(min_value=1e-3, max_value=1e5, allow_nan=False) for column in NUMERIC},
    }
)


@pytest.fixture(scope="module")
def fast_predictors(trained_models_dir: Path) -> list[tuple[Predictor, dict[str, Any]]]:
    """The models with probabilities, each loaded once for the module."""
    return [load_predictor(trained_models_dir, name) for name in ("logistic_regression", "random_forest")]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(record_strategy, min_size=1, max_size=50))
def test_fast_path_equals_the_pipeline_on_generated_records(
    fast_predictors: list[tuple[Predictor, dict[str, Any]]], rows: list[dict[str, Any]]
) -> None:
    frame = canonical(pd.DataFrame(rows))
    batch = Batch.from_records([RECORD_ADAPTER.validate_python(row) for row in rows])
    for predictor, bundle in fast_predictors:
        got = predictor.predict(batch).probabilities
        expected = bundle["model"].predict_proba(frame)
        np.testing.assert_array_equal(got, expected)


def fit_pipeline(penguins: pd.DataFrame, numeric_step: Any, labels: Any = None) -> Pipeline:
    preprocess = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["island", "sex"]),
            ("numeric", numeric_step, NUMERIC),
        ]
    )
    model = Pipeline([("preprocess", preprocess), ("classifier", LogisticRegression(max_iter=1000))])
    return model.fit(canonical(penguins), penguins["species"] if labels is None else labels)


def test_an_uncompilable_pipeline_takes_the_pandas_path(penguins: pd.DataFrame) -> None:
    model = fit_pipeline(penguins, MinMaxScaler())
    predictor = build_predictor(unpack(model))
    answer = predictor.predict(Batch.from_records(records_of(penguins)))
    assert not predictor.fast_path
    np.testing.assert_array_equal(answer.probabilities, model.predict_proba(canonical(penguins)))


def test_an_unfitted_estimator_is_not_a_model() -> None:
    with pytest.raises(NotAModel, match="not a fitted classifier"):
        build_predictor(unpack(LogisticRegression()))


def test_a_model_fitted_without_column_names_is_refused(penguins: pd.DataFrame) -> None:
    model = DecisionTreeClassifier(random_state=0).fit(penguins[NUMERIC].to_numpy(), penguins["species"])
    with pytest.raises(NotAModel, match="fitted without column names"):
        build_predictor(unpack(model))


# The three shapes, served through the API.


def test_the_projects_bundle_is_served_as_a_bundle(client: TestClient) -> None:
    assert client.get("/models/logistic_regression").json()["format"] == "bundle"


def test_a_bare_pipeline_is_served_on_the_fast_path_with_its_own_classes(
    client: TestClient, models_dir: Path, penguins: pd.DataFrame
) -> None:
    model = fit_pipeline(penguins, StandardScaler())  # fitted on species names: classes_ are the names
    joblib.dump(model, models_dir / "bare.pkl")
    info = client.get("/models/bare").json()
    assert (info["format"], info["classes"], info["fast_path"]) == (
        "estimator",
        ["Adelie", "Chinstrap", "Gentoo"],
        True,
    )
    response = client.post("/predict?model=bare", json={"records": [RECORD]})
    assert response.status_code == 200
    expected = model.predict_proba(pd.DataFrame([RECORD])[list(FEATURES)])[0]
    assert list(response.json()["probabilities"][0].values()) == list(expected)
    assert response.json()["predictions"] == list(model.predict(pd.DataFrame([RECORD])))


def legacy_bundle(penguins: pd.DataFrame) -> tuple[dict[str, Any], list[str]]:
    """As the original service's notebook saved it: a model fitted on pd.get_dummies(drop_first=True) columns."""
    dummies = pd.get_dummies(canonical(penguins), drop_first=True)
    label_encoder = LabelEncoder().fit(penguins["species"])
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(
        dummies, label_encoder.transform(penguins["species"])
    )
    return {"model": model, "label_encoder": label_encoder}, list(dummies.columns)


def test_a_legacy_bundle_is_served_with_its_dummy_columns(
    client: TestClient, models_dir: Path, penguins: pd.DataFrame
) -> None:
    bundle, columns = legacy_bundle(penguins)
    assert {"island_Dream", "island_Torgersen", "sex_Male"} <= set(columns)
    joblib.dump(bundle, models_dir / "seed.pkl")
    info = client.get("/models/seed").json()
    assert (info["format"], info["features"], info["classes"]) == (
        "legacy_bundle",
        columns,
        ["Adelie", "Chinstrap", "Gentoo"],
    )

    rows = canonical(penguins.sample(40, random_state=0))
    response = client.post("/predict?model=seed", json={"records": rows.to_dict("records")})
    assert response.status_code == 200
    # The request encoded to exactly the training columns, whatever subset of islands it holds.
    encoded = pd.get_dummies(rows).reindex(columns=columns, fill_value=False)
    expected = bundle["model"].predict_proba(encoded)
    np.testing.assert_allclose([list(row.values()) for row in response.json()["probabilities"]], expected, rtol=1e-12)
    assert response.json()["predictions"] == list(bundle["label_encoder"].inverse_transform(expected.argmax(axis=1)))


def test_legacy_bundle_with_one_record_of_a_dropped_category(
    make_client: Callable[..., TestClient], models_dir: Path, penguins: pd.DataFrame
) -> None:
    # Biscoe and Female are the dropped first levels: every dummy column is zero.
    bundle, _ = legacy_bundle(penguins)
    joblib.dump(bundle, models_dir / "seed.pkl")
    record = {**RECORD, "island": "Biscoe", "sex": "FEMALE"}
    response = make_client().post("/predict?model=seed", json={"records": [record]})
    assert response.status_code == 200
    assert response.json()["predictions"] in (["Adelie"], ["Chinstrap"], ["Gentoo"])


def test_joined_predictions_cut_back_into_their_parts() -> None:
    classes = ("Adelie", "Chinstrap", "Gentoo")
    first = Prediction(classes, np.array([0, 2]), np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]))
    second = Prediction(classes, np.array([1]), np.array([[0.2, 0.7, 0.1]]))
    joined = Prediction.joined([first, second])
    assert joined.labels() == ["Adelie", "Gentoo", "Chinstrap"]
    back = joined.part(2, 3)
    assert back.labels() == second.labels() and back.probabilities is not None
    assert back.probabilities.tolist() == [[0.2, 0.7, 0.1]]
    # Probabilities only when every part has them.
    assert Prediction.joined([first, Prediction(classes, np.array([1]), None)]).probabilities is None


@pytest.mark.parametrize("records", [1, FEW_RECORDS, FEW_RECORDS + 1, 1000])
def test_labels_name_each_records_class_by_lookup_or_by_numpy(records: int) -> None:
    classes = ("Adelie", "Chinstrap", "Gentoo")
    indices = np.random.default_rng(records).integers(0, len(classes), records)
    labels = Prediction(classes, indices, None).labels()
    assert labels == [classes[index] for index in indices]
    assert all(type(label) is str for label in labels)  # Python strings either way, as the answers write them
