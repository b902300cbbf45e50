"""The capture store's schema: its tables, declared once for SQLite and PostgreSQL, the engine for a URL, and the
steps that create the schema or upgrade an older one (MIGRATIONS), run by the app at start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.schema import CreateColumn

from app.capture.records import FEATURE_COLUMNS
from app.features import CATEGORICAL

SCHEMA_VERSION = 2
OUTCOMES = ("matched", "unknown", "unchanged", "conflicting")
# Seconds a writer waits for another's lock (SQLite) or for a connection (PostgreSQL) before it gives up.
BUSY_SECONDS = 5
CONNECT_SECONDS = 3

metadata = sa.MetaData()
# SQLite's autoincrementing key must be its INTEGER rowid; PostgreSQL gets 64 bits.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _feature_columns() -> list[sa.Column[Any]]:
    return [sa.Column(name, sa.String(16) if name in CATEGORICAL else sa.Float) for name in FEATURE_COLUMNS]


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(128), nullable=False),  # X-Request-ID, the client's or the server's
    sa.Column("client_id", sa.String(256)),  # a V2 request's own "id", when it sent one
    sa.Column("batch_row", sa.Integer, nullable=False),  # the record's position in its request
    sa.Column("at", sa.Float, nullable=False),  # seconds since the epoch
    sa.Column("model", sa.String(128), nullable=False),  # the file's stem, as the metrics name it
    sa.Column("version", sa.String(64), nullable=False),  # the start of the file's SHA-256
    sa.Column("predicted", sa.String(128), nullable=False),
    sa.Column("probabilities", sa.Text),  # a JSON list in the order of the version's classes; NULL without them
    # The calibrated probability that the predicted class is right (app/calibration.py); NULL without a calibrator.
    sa.Column("confidence", sa.Float),
    sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false()),  # answered by no one
    *_feature_columns(),
    sa.Index("predictions_request", "request_id", "batch_row"),
    sa.Index("predictions_version", "model", "version", "id"),
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


# Each step takes a store from the version it is keyed by to the next, in one transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _reference_columns}


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
    # WAL: readers never block the writer, so several workers and containers share one file.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
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
        found = connection.execute(sa.select(sa.func.max(schema.c.version))).scalar()
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
