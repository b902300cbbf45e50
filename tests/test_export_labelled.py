"""scripts/export_labelled.py end to end: predict, label, export, and train.py adds the exported records.

A live server captures predictions in a store of each backend; labels are posted to it; the export writes each
labelled record once (also when several models answered it), with data/penguins.csv's columns, and leaves the
store as it was.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from penguins import FEATURES, SPECIES

from tests.helpers import ROOT, run_script
from tests.live import start_server

# Three Adelie, a Gentoo and a Chinstrap from data/penguins.csv, as the API takes them.
RECORDS = [
    {"island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181.0,
     "body_mass_g": 3750.0, "sex": "Male"},
    {"island": "Torgersen", "bill_length_mm": 39.5, "bill_depth_mm": 17.4, "flipper_length_mm": 186.0,
     "body_mass_g": 3800.0, "sex": "Female"},
    {"island": "Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2, "flipper_length_mm": 211.0,
     "body_mass_g": 4500.0, "sex": "Female"},
    {"island": "Dream", "bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192.0,
     "body_mass_g": 3500.0, "sex": "Female"},
]  # fmt: skip
# What the biologists confirmed, by request and row: the compared request's rows 0 to 2, the single one's row 0.
TRUTH = {("compared", 0): "Adelie", ("compared", 1): "Adelie", ("compared", 2): "Gentoo", ("single", 0): "Chinstrap"}


@dataclass(frozen=True)
class Captured:
    store: str
    request_ids: dict[str, str]  # "compared", "single": the X-Request-ID each was sent with


@pytest.fixture
def captured(store_url: str, models_dir: Path, tmp_path: Path) -> Iterator[Captured]:
    """Three records answered by every model (/predict/compare), one more by one model, four labels; server stopped."""
    ids = {"compared": uuid.uuid4().hex, "single": uuid.uuid4().hex}
    with start_server(models_dir, tmp_path / "server.log", settings={"CAPTURE_URL": store_url}) as live:
        compared = httpx.post(
            f"{live.url}/predict/compare", json={"records": RECORDS[:3]}, headers={"x-request-id": ids["compared"]}
        )
        single = httpx.post(
            f"{live.url}/predict", json={"records": RECORDS[3:]}, headers={"x-request-id": ids["single"]}
        )
        assert compared.status_code == single.status_code == 200, (compared.text, single.text)
        labels = [{"request_id": ids[name], "row": row, "label": label} for (name, row), label in TRUTH.items()]
        answer = httpx.post(f"{live.url}/feedback", json=labels).json()
        assert answer["matched"] == len(TRUTH), answer
    yield Captured(store_url, ids)


def export(store: str, out: Path) -> list[dict[str, str]]:
    result = run_script("export_labelled.py", "--store", store, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {len(TRUTH)} labelled records to {out}"
    with out.open(newline="") as file:
        return list(csv.DictReader(file))


def test_each_labelled_record_is_exported_once_with_the_data_sets_columns(captured: Captured, tmp_path: Path) -> None:
    rows = export(captured.store, tmp_path / "labelled.csv")

    with (ROOT / "data" / "penguins.csv").open(newline="") as file:
        assert list(csv.DictReader(file).fieldnames or []) == list(
            (tmp_path / "labelled.csv").read_text().split()[0].split(",")
        )
    assert [row["species"] for row in rows] == list(TRUTH.values())  # in the order captured, each once
    assert {row["species"] for row in rows} <= set(SPECIES)
    for row, record in zip(rows, [*RECORDS[:3], RECORDS[3]], strict=True):
        assert {name: row[name] for name in FEATURES} == {name: str(value) for name, value in record.items()}


def test_the_export_leaves_an_sqlite_store_as_it_was(tmp_path: Path, models_dir: Path) -> None:
    database = tmp_path / "capture" / "capture.db"
    store = f"sqlite:///{database}"
    with start_server(models_dir, tmp_path / "server.log", settings={"CAPTURE_URL": store}) as live:
        httpx.post(f"{live.url}/predict", json={"records": RECORDS}, headers={"x-request-id": "kept"})
        httpx.post(f"{live.url}/feedback", json={"request_id": "kept", "label": "Adelie"}).raise_for_status()
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    result = run_script("export_labelled.py", "--store", store, "--out", tmp_path / "labelled.csv")

    assert result.returncode == 0, result.stderr
    # Opened read-only, the file is as it was (SQLite may make its empty WAL index beside it, as any reader does).
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_a_missing_store_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "labelled.csv"
    result = run_script("export_labelled.py", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--out", out)

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"No capture store at {tmp_path / 'none.db'}: the API writes it once it has predicted (make up)."
    )
    assert not out.exists()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_train_adds_the_exported_records_to_its_training_rows(captured: Captured, tmp_path: Path) -> None:
    out = tmp_path / "data" / "labelled.csv"
    export(captured.store, out)

    result = run_script("train.py", "--quick", "--models-dir", tmp_path / "trained", "--labelled", out)

    assert result.returncode == 0, result.stderr
    assert f"added {len(TRUTH)} labelled records from {out}" in result.stdout
