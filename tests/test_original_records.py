"""The original dialect's column reader: the same Batch as pydantic's record-by-record reading, or it steps aside."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from app.features import Batch
from app.original.records import read_columns
from app.original.schemas import PenguinRecord
from tests.helpers import RECORD, odd_records

RECORDS = TypeAdapter(list[PenguinRecord])


def by_pydantic(records: list[dict[str, Any]]) -> Batch:
    return Batch.from_records(RECORDS.validate_python(records))


def test_plainly_valid_records_read_as_pydantic_reads_them() -> None:
    records = odd_records(500)
    read = read_columns(records, 1_000)
    expected = by_pydantic(records)
    assert read is not None
    assert read.categorical == expected.categorical
    assert read.numeric.tolist() == expected.numeric.tolist()


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([{**RECORD, "body_mass_g": "3750"}], id="a-number-as-a-string"),
        pytest.param([{**RECORD, "bill_length_mm": True}], id="a-boolean"),
        pytest.param([{key: value for key, value in RECORD.items() if key != "sex"}], id="a-field-missing"),
        pytest.param([{**RECORD, "island": "Atlantis"}], id="an-unknown-island"),
        pytest.param([RECORD, "not a record"], id="not-an-object"),
        pytest.param([], id="no-record"),
        pytest.param([RECORD] * 3, id="beyond-max-records"),
    ],
)
def test_anything_not_plainly_valid_is_left_to_pydantic(records: list[Any]) -> None:
    assert read_columns(records, 2) is None
