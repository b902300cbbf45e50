"""Export the field's labelled records: `make export-labelled` writes every captured prediction that has a true
label as a row of data/labelled.csv, which `make train` adds to the training split (scripts/train.py --labelled).

It reads the API's capture store (CAPTURE_URL, else the SQLite file the API writes by default:
data/capture/capture.db beside the models folder) through the app's own store module, read-only: an SQLite file
opened in read-only mode, a PostgreSQL transaction marked read only. The CSV has data/penguins.csv's columns, the
label as `species`. A record is written once, however many models answered it (`/predict/compare` captures it
once per model): one row per request ID and position in the batch, its features read from the first batch that
captured it (the store keeps one row per batch, its records' values packed: app/capture/records.py). Records
without a label, and labels whose prediction was never captured, are left out. The file is replaced whole, never
appended to: the store holds every label still retained, so each export is the complete set.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The app's store module lives in the repository's app/, beside this folder (in the API image: /srv/app).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from app.capture.records import FEATURE_COLUMNS, measurements, words
from app.capture.schema import batches, engine_for, labels
from app.capture.store import reason
from app.config import ConfigError, Settings
from app.features import CATEGORICAL, NUMERIC

# data/penguins.csv's columns, in its order: the label first.
COLUMNS = ("species", *FEATURE_COLUMNS)
DEFAULT_OUT = ROOT / "data" / "labelled.csv"
# Batches whose features are read per query.
BATCHES_READ = 200


def store_url(given: str | None) -> str:
    """--store, else the API's own setting: CAPTURE_URL, or its default SQLite file."""
    if given:
        return given
    try:
        return Settings.from_env().capture_store_url
    except ConfigError as error:
        raise SystemExit(str(error)) from None


def read_only(url: str) -> str:
    """An SQLite URL opening its file read-only (it must exist); any other URL as it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    path = Path(parsed.database or "")
    if not parsed.database or not path.is_file():
        raise SystemExit(f"No capture store at {path}: the API writes it once it has predicted (make up).")
    return f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"


def labelled_rows(connection: Connection) -> Iterator[Sequence[Any]]:
    """Each labelled record once, in the order it was captured: its label and its six features."""
    joined = labels.join(
        batches, sa.and_(batches.c.request_id == labels.c.request_id, labels.c.batch_row < batches.c.records)
    )
    first = (
        sa.select(sa.func.min(batches.c.id).label("id"), labels.c.batch_row, labels.c.label)
        .select_from(joined)
        .group_by(labels.c.request_id, labels.c.batch_row, labels.c.label)
        .subquery()
    )
    found = connection.execute(sa.select(first).order_by(first.c.id, first.c.batch_row))
    for group in _batched(itertools.groupby(found, lambda row: row[0]), BATCHES_READ):
        features = _features(connection, [id for id, _ in group])
        for id, records in group:
            for _, row, label in records:
                yield label, *(column[row] for column in features[id])


def _batched(groups: Iterator[tuple[int, Any]], size: int) -> Iterator[list[tuple[int, list[Any]]]]:
    while chunk := [(id, list(records)) for id, records in itertools.islice(groups, size)]:
        yield chunk


def _features(connection: Connection, ids: Sequence[int]) -> dict[int, list[list[Any]]]:
    """These batches' features: for each, its records' values by column, in FEATURE_COLUMNS order."""
    codes = [batches.c[name] for name in CATEGORICAL]
    statement = sa.select(batches.c.id, batches.c.measurements, batches.c.words, *codes).where(batches.c.id.in_(ids))
    found = {}
    for id, blob, sent, *coded in connection.execute(statement):
        columns = {**dict(zip(NUMERIC, measurements(blob).T.tolist(), strict=True)), **words(coded, sent)}
        found[id] = [columns[name] for name in FEATURE_COLUMNS]
    return found


def export(url: str, out: Path) -> int:
    """Writes the labelled records to out (replacing it once complete); the number written."""
    engine = engine_for(read_only(url))
    partial = out.with_name(f".{out.name}.partial")
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection = connection.execution_options(postgresql_readonly=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(COLUMNS)
                written = 0
                for row in labelled_rows(connection):
                    writer.writerow(row)
                    written += 1
    except sa.exc.SQLAlchemyError as error:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"The capture store cannot be read: {reason(error)}.") from None
    finally:
        engine.dispose()
    partial.replace(out)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="the capture store's URL (default: CAPTURE_URL, else the API's SQLite file)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the CSV written (default data/labelled.csv)")
    args = parser.parse_args()
    out = args.out if args.out.is_absolute() else Path(os.getcwd()) / args.out
    written = export(store_url(args.store), out)
    print(f"wrote {written} labelled records to {out}")


if __name__ == "__main__":
    main()
