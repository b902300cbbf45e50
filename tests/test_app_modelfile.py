"""app/modelfile.py: the three model-file shapes unpacked into one form, and the estimator's name."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler

from app.modelfile import NotAModel, estimator_name, unpack


def test_the_projects_bundle_is_unpacked_with_its_metadata(trained_models_dir: Path) -> None:
    bundle = joblib.load(trained_models_dir / "svc.pkl")
    unpacked = unpack(bundle)
    assert unpacked.format == "bundle"
    assert (unpacked.model, unpacked.label_encoder) == (bundle["model"], bundle["label_encoder"])
    assert unpacked.metadata is not None and unpacked.metadata["name"] == "svc"


def test_a_bundle_without_metadata_is_the_original_services_shape() -> None:
    model, labels = LogisticRegression(), LabelEncoder()
    unpacked = unpack({"model": model, "label_encoder": labels})
    assert (unpacked.format, unpacked.model, unpacked.label_encoder, unpacked.metadata) == (
        "legacy_bundle", model, labels, None,
    )  # fmt: skip


def test_metadata_that_is_not_a_mapping_is_no_metadata() -> None:
    unpacked = unpack({"model": LogisticRegression(), "metadata": "trained on Tuesday"})
    assert (unpacked.format, unpacked.metadata) == ("legacy_bundle", None)


def test_anything_else_is_taken_as_a_bare_estimator() -> None:
    model = LogisticRegression()
    unpacked = unpack(model)
    assert (unpacked.format, unpacked.model, unpacked.label_encoder, unpacked.metadata) == (
        "estimator", model, None, None,
    )  # fmt: skip


def test_a_dict_without_model_is_not_a_model_and_its_keys_are_named() -> None:
    with pytest.raises(NotAModel, match=r"keys \['bias', 'weights'\], not a 'model' bundle"):
        unpack({"weights": [1, 2], "bias": 0})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param({"model": LogisticRegression(), "metadata": {"estimator": "Tuned"}}, "Tuned", id="metadata"),
        pytest.param({"model": LogisticRegression(), "metadata": {"estimator": ""}}, "LogisticRegression", id="blank"),
        pytest.param(Pipeline([("scale", StandardScaler()), ("fit", LogisticRegression())]), "LogisticRegression",
                     id="pipeline-final-step"),
        pytest.param(LogisticRegression(), "LogisticRegression", id="bare"),
    ],
)  # fmt: skip
def test_the_estimators_name_comes_from_the_metadata_else_the_final_step(content: object, expected: str) -> None:
    assert estimator_name(unpack(content)) == expected
