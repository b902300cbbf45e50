"""app/features.py: a batch of valid records as columns, built from records or from any protocol's columns,
and every bad column refused with one sentence naming it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.features import FEATURES, FEW_RECORDS, FLOAT32_MAX, NUMERIC, Batch, canonical_sex
from tests.helpers import RECORD


def columns(count: int, **changed: Any) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """The example record `count` times as columns, with some columns replaced."""
    categorical = {"island": [RECORD["island"]] * count, "sex": [RECORD["sex"]] * count}
    numeric = {name: [float(RECORD[name])] * count for name in NUMERIC}
    for name, values in changed.items():
        (categorical if name in categorical else numeric)[name] = values
    return categorical, numeric


def test_records_and_columns_make_the_same_batch() -> None:
    from_records = Batch.from_records([RECORD, RECORD])
    from_columns = Batch.from_columns(*columns(2))
    assert from_records.categorical == from_columns.categorical == {"island": ["Torgersen"] * 2, "sex": ["Male"] * 2}
    np.testing.assert_array_equal(from_records.numeric, from_columns.numeric)
    assert from_records.numeric.shape == (2, 4) and from_records.numeric.dtype == np.float64
    assert len(from_records) == 2


def test_the_frame_has_the_features_in_training_order() -> None:
    frame = Batch.from_records([RECORD]).frame()
    assert list(frame.columns) == list(FEATURES)
    assert frame.iloc[0].to_dict() == {name: pytest.approx(value) for name, value in RECORD.items()}


def test_head_keeps_the_first_records_of_every_column() -> None:
    batch = Batch.from_columns(*columns(3, island=["Biscoe", "Dream", "Torgersen"], body_mass_g=[1.0, 2.0, 3.0]))
    head = batch.head(2)
    assert head.categorical["island"] == ["Biscoe", "Dream"]
    assert head.numeric[:, NUMERIC.index("body_mass_g")].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("written", ["male", "MALE", "mAlE"])
def test_sex_is_taken_in_any_letter_case(written: str) -> None:
    assert canonical_sex(written) == "Male"
    assert Batch.from_columns(*columns(1, sex=[written])).categorical["sex"] == ["Male"]


def test_a_missing_feature_is_named() -> None:
    categorical, numeric = columns(1)
    del numeric["body_mass_g"]
    with pytest.raises(InvalidInput, match="missing: body_mass_g"):
        Batch.from_columns(categorical, numeric)


def test_columns_of_different_lengths_are_refused_with_their_lengths() -> None:
    with pytest.raises(InvalidInput, match=r"one value per record.*'sex': 1"):
        Batch.from_columns(*columns(2, sex=["Male"]))


def test_columns_without_records_are_refused() -> None:
    with pytest.raises(InvalidInput, match="hold no record"):
        Batch.from_columns(*columns(0))


def test_an_unknown_category_is_named_with_the_values_allowed() -> None:
    with pytest.raises(InvalidInput, match="'island' holds 'Atlantis'; expected one of Biscoe, Dream, Torgersen"):
        Batch.from_columns(*columns(2, island=["Dream", "Atlantis"]))


def test_a_measurement_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(InvalidInput, match="one number per record"):
        Batch.from_columns(*columns(1, bill_depth_mm=["deep"]))


# Below FEW_RECORDS the values are checked one by one, above it by numpy: both name the same value.
@pytest.mark.parametrize("count", [pytest.param(3, id="few"), pytest.param(FEW_RECORDS * 4, id="many")])
@pytest.mark.parametrize(
    "bad", [0.0, -1.0, float("nan"), float("inf"), FLOAT32_MAX * 2], ids=["zero", "negative", "nan", "inf", "huge"]
)
def test_a_bad_measurement_is_named_with_its_column_and_record(count: int, bad: float) -> None:
    values = [3750.0] * count
    values[2] = bad
    with pytest.raises(InvalidInput, match=r"Column 'body_mass_g' holds .* at record 2; a measurement is a finite"):
        Batch.from_columns(*columns(count, body_mass_g=values))


def test_joined_batches_hold_every_record_in_order() -> None:
    first = Batch.from_records([RECORD, {**RECORD, "island": "Dream", "body_mass_g": 4000.0}])
    second = Batch.from_records([{**RECORD, "sex": "Female", "bill_length_mm": 50.0}])
    joined = Batch.joined([first, second])
    assert len(joined) == 3
    assert joined.categorical == {"island": ["Torgersen", "Dream", "Torgersen"], "sex": ["Male", "Male", "Female"]}
    assert joined.numeric.tolist() == [*first.numeric.tolist(), *second.numeric.tolist()]
    assert Batch.joined([first]) is first
