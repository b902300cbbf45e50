"""The capture store's schema: its tables, declared once for SQLite and PostgreSQL, the engine for a URL, and the
steps that create the schema or upgrade an older one (MIGRATIONS), run by the app at start.

Schema 1 had no reference accuracy; schema 2 added it; schema 3 stores one row per captured batch (`batches`)
instead of one per record (`predictions`, converted and dropped by the upgrade).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.schema import CreateColumn

from app.capture.records import CODE, COLUMNS, FEATURE_COLUMNS, FLOAT, INDEX, PROBABILITY, pack, sent_words
from app.features import CATEGORICAL, NUMERIC, category_codes

SCHEMA_VERSION = 3
OUTCOMES = ("matched", "unknown", "unchanged", "conflicting")
# Seconds a writer waits for another's lock (SQLite) or for a connection (PostgreSQL) before it gives up.
BUSY_SECONDS = 5
CONNECT_SECONDS = 3

metadata = sa.MetaData()
# SQLite's autoincrementing key must be its INTEGER rowid; PostgreSQL gets 64 bits.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# One row per captured batch: a record is a batch's row, 0 to records - 1; its values are packed per column
# (records.py: little-endian arrays, JSON lists of words), so a batch of 10,000 records is one insert.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),  # the order of capture
    sa.Column("request_id", sa.String(128), nullable=False),  # X-Request-ID, the client's or the server's
    sa.Column("client_id", sa.String(256)),  # a V2 request's own "id", when it sent one
    sa.Column("at", sa.Float, nullable=False),  # seconds since the epoch
    sa.Column("model", sa.String(128), nullable=False),  # the file's stem, as the metrics name it
    sa.Column("version", sa.String(64), nullable=False),  # the start of the file's SHA-256
    sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false()),  # answered by no one
    sa.Column("records", sa.Integer, nullable=False),  # the batch's size
    # Per record, its predicted class's index in the version's classes (model_versions): '<u2'.
    sa.Column("predicted", sa.LargeBinary, nullable=False),
    sa.Column("probabilities", sa.LargeBinary),  # '<f4', records x classes row by row; NULL without them
    # The calibrated probability that the predicted class is right (app/calibration.py), '<f8' per record;
    # NULL when the batch has none (a shadow answer, a file without a calibrator).
    sa.Column("confidences", sa.LargeBinary),
    sa.Column("measurements", sa.LargeBinary, nullable=False),  # '<f8', records x 4 in NUMERIC order
    # Per record, the word's code (its position in features.CATEGORIES[name]): 'u1'.
    *(sa.Column(name, sa.LargeBinary, nullable=False) for name in CATEGORICAL),
    # NULL, unless a word is no known category: then the word columns as sent, a JSON object of lists.
    sa.Column("words", sa.Text),
    sa.Index("batches_request", "request_id"),  # the labels' join
    sa.Index("batches_version", "model", "version", "id"),  # a version's newest batches
    # No index on `at`: each insert would pay for it, and only the pruning, every few minutes, reads by time.
)
labels = sa.Table(
    "labels",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("batch_row", sa.Integer, primary_key=True),
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("labels_at", "at"),
)
# The version's reference accuracy from training (app/reference_accuracy.py), NULL when its file has none:
# stored so that every worker and replica exports the same figures, whichever models it has loaded.
REFERENCE_COLUMNS = ("reference_mean", "reference_lower", "reference_upper")
versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("classes", sa.Text, nullable=False),  # a JSON list
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
    *(sa.Column(name, sa.Float) for name in REFERENCE_COLUMNS),
)
outcomes = sa.Table(
    "feedback_outcomes",
    metadata,
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("labels", sa.BigInteger, nullable=False),
)
schema = sa.Table("capture_schema", metadata, sa.Column("version", sa.Integer, primary_key=True))


class StoreTooNew(Exception):
    """The store was written by a newer release, whose schema this one does not know."""


def _add_columns(connection: Connection, table: sa.Table, names: tuple[str, ...]) -> None:
    # SQLAlchemy Core has no ADD COLUMN construct: the table's name and each column's definition are SQLAlchemy's
    # own renderings of the declarations above, never outside input.
    preparer = connection.dialect.identifier_preparer
    for name in names:
        column = str(CreateColumn(table.c[name]).compile(dialect=connection.dialect))
        connection.execute(sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {column}"))


def _reference_columns(connection: Connection) -> None:
    _add_columns(connection, versions, REFERENCE_COLUMNS)


# Schema 2's table of one row per record, as the upgrade to 3 reads it (then drops it).
predictions_v2 = sa.Table(
    "predictions",
    sa.MetaData(),
    sa.Column("id", RowId, primary_key=True),
    *(sa.Column(name, sa.String) for name in ("request_id", "client_id", "model", "version", "predicted")),
    sa.Column("batch_row", sa.Integer),
    sa.Column("at", sa.Float),
    sa.Column("probabilities", sa.Text),
    sa.Column("confidence", sa.Float),
    sa.Column("shadow", sa.Boolean),
    *(sa.Column(name, sa.String if name in CATEGORICAL else sa.Float) for name in FEATURE_COLUMNS),
)
# Batches inserted per statement by the upgrade to schema 3.
UPGRADE_CHUNK = 1000
logger = logging.getLogger("app")


def _batch_rows(connection: Connection) -> None:
    """Schema 2 to 3: each request's records of one model version (its rows 0 to n - 1, by the old id) become
    one batch row, with the old id of its first record, so the batches keep the order of capture."""
    classes = _v2_classes(connection)
    old = predictions_v2.c
    key = (old.request_id, old.model, old.version, old.shadow)
    found = connection.execute(
        sa.select(predictions_v2).order_by(*key, old.id).execution_options(yield_per=UPGRADE_CHUNK)
    )
    groups = itertools.groupby(found, lambda row: (row.request_id, row.model, row.version, row.shadow))
    runs = (run for _, group in groups for run in _runs(group))
    dropped = 0
    while chunk := list(itertools.islice(runs, UPGRADE_CHUNK)):
        converted = [_batch_of(run, classes) for run in chunk if run[0].batch_row == 0]
        dropped += sum(len(run) for run in chunk if run[0].batch_row != 0)
        if converted:
            connection.execute(batches.insert(), converted)
    if connection.dialect.name == "postgresql":  # the explicit ids passed the sequence: it goes on after them
        newest = sa.select(sa.func.max(batches.c.id)).scalar_subquery()
        connection.execute(sa.select(sa.func.setval(sa.func.pg_get_serial_sequence(batches.name, "id"), newest)))
    predictions_v2.drop(connection)
    if dropped:
        logger.warning("capture store upgrade: %d records left of batches the row cap had begun to prune, dropped",
                       dropped)  # fmt: skip


def _runs(group: Iterable[sa.Row[Any]]) -> Iterator[list[sa.Row[Any]]]:
    """A request's records of one version, cut into batches: rows 0, 1, 2... each time (the same request ID may
    come twice). A run that does not start at row 0 is what the row cap left of a batch."""
    run: list[sa.Row[Any]] = []
    for row in group:
        if row.batch_row == 0 or row.batch_row != len(run):
            if run:
                yield run
            run = [row]
        else:
            run.append(row)
    if run:
        yield run


def _batch_of(run: Sequence[sa.Row[Any]], classes: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    first = run[0]
    index = {name: position for position, name in enumerate(classes[first.model, first.version])}
    probabilities = [row.probabilities for row in run]
    confidences = [row.confidence for row in run]
    categorical = {name: [row._mapping[name] for row in run] for name in CATEGORICAL}
    codes = [pack(category_codes(name, values), CODE) for name, values in categorical.items()]
    values = (
        first.request_id, first.client_id, first.at, first.model, first.version, bool(first.shadow), len(run),
        pack([index[row.predicted] for row in run], INDEX),
        None if None in probabilities else pack([json.loads(text) for text in probabilities], PROBABILITY),
        None if all(value is None for value in confidences) else pack(confidences, FLOAT),
        pack([[row._mapping[name] for name in NUMERIC] for row in run], FLOAT),
        *codes,
        sent_words(categorical, codes),
    )  # fmt: skip
    return {"id": first.id, **dict(zip(COLUMNS, values, strict=True))}


def _v2_classes(connection: Connection) -> dict[tuple[str, str], list[str]]:
    """Each version's classes, as model_versions holds them; a version it lacks (never seen answering: only shadow
    records) is added with the classes its records predicted, so every record converts."""
    known = {
        (model, version): json.loads(classes)
        for model, version, classes in connection.execute(sa.select(versions.c.model, versions.c.version,
                                                                    versions.c.classes))
    }  # fmt: skip
    old = predictions_v2.c
    predicted = sa.select(old.model, old.version, old.predicted, sa.func.min(old.at), sa.func.max(old.at)).group_by(
        old.model, old.version, old.predicted
    )
    for model, version, name, first_at, last_at in connection.execute(predicted):
        classes = known.setdefault((model, version), [])
        if name not in classes:
            new = not classes
            classes.append(name)
            row = {"classes": json.dumps(classes), "first_at": first_at, "last_at": last_at}
            if new:
                connection.execute(versions.insert().values(model=model, version=version, **row))
            else:
                connection.execute(
                    versions.update()
                    .where(versions.c.model == model, versions.c.version == version)
                    .values(classes=row["classes"])
                )
    return known


# Each step takes a store from the version it is keyed by to the next, in one transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _reference_columns, 2: _batch_rows}


def engine_for(url: str) -> Engine:
    """An engine for the URL: SQLite in WAL mode with a busy timeout, or PostgreSQL through psycopg 3."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_SECONDS, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # psycopg 3 whichever way the URL names PostgreSQL; positional parameters, so bulk rows go as tuples.
    parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(
        parsed,
        paramstyle="format",
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        pool_timeout=BUSY_SECONDS,
        connect_args={"connect_timeout": CONNECT_SECONDS},
    )


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    # WAL: readers never block the writer, so several workers and containers share one file. Temporary storage in
    # memory: a many-row INSERT keeps its statement journal there, not in a file written page by page.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def create_schema(engine: Engine) -> None:
    """The tables made, or upgraded to SCHEMA_VERSION; StoreTooNew for a store of a newer release."""
    # Several workers start at once: one creates the tables and the rows (or upgrades them), the others find
    # them made, or fail on what the first just made and read again.
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            _upgrade(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            if attempt == 2:
                raise
            time.sleep(0.2)


def _upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        # Locked (PostgreSQL): a second worker starting at once waits, then finds the schema upgraded.
        found = max(connection.execute(sa.select(schema.c.version).with_for_update()).scalars(), default=None)
        if found is None:
            connection.execute(schema.insert().values(version=SCHEMA_VERSION))
        elif found > SCHEMA_VERSION:
            raise StoreTooNew(f"the capture store has schema {found}; this release knows up to {SCHEMA_VERSION}")
        else:
            for version in range(found, SCHEMA_VERSION):
                MIGRATIONS[version](connection)
            connection.execute(schema.update().values(version=SCHEMA_VERSION))
        known = set(connection.execute(sa.select(outcomes.c.outcome)).scalars())
        missing = [{"outcome": outcome, "labels": 0} for outcome in OUTCOMES if outcome not in known]
        if missing:
            connection.execute(outcomes.insert(), missing)
