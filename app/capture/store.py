"""The capture store: predictions, labels and what they add up to, in SQLite or PostgreSQL through SQLAlchemy Core.

One code path for both: the tables are declared once, every statement is built by SQLAlchemy, and only the
upsert's construct is picked per dialect. The app creates the schema at start and upgrades it (MIGRATIONS).
Bulk inserts go to the driver as one statement compiled by SQLAlchemy with a tuple per row: the same SQL,
without building a dict per row.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from app.capture.records import COLUMNS, FEATURE_COLUMNS, Label, SeenVersion
from app.errors import StoreUnavailable
from app.features import CATEGORICAL

SCHEMA_VERSION = 1
# Each step takes a store from the version it is keyed by to the next, in one transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}
OUTCOMES = ("matched", "unknown", "unchanged", "conflicting")
# Seconds a writer waits for another's lock (SQLite) or for a connection (PostgreSQL) before it gives up.
BUSY_SECONDS = 5
CONNECT_SECONDS = 3
# Keys per IN (...): within every backend's limit on bound parameters.
CHUNK = 500
logger = logging.getLogger("app")

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
    sa.Column("confidence", sa.Float),  # the calibrated probability of the predicted class; NULL until computed
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
versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("classes", sa.Text, nullable=False),  # a JSON list
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
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


@dataclass
class LabelOutcome:
    """What happened to each label of one post."""

    matched: int = 0
    unknown: int = 0
    unchanged: int = 0
    conflicting: int = 0
    conflicts: list[tuple[Label, str]] = field(default_factory=list)  # the label sent, and the one kept

    def counts(self) -> dict[str, int]:
        return {outcome: getattr(self, outcome) for outcome in OUTCOMES}


@dataclass(frozen=True)
class VersionRow:
    model: str
    version: str
    classes: tuple[str, ...]
    first_at: float
    last_at: float


@dataclass(frozen=True)
class Joined:
    """A labelled prediction of a window: what the model said, the truth, and when each was known."""

    predicted: str
    label: str
    predicted_at: float
    labelled_at: float


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


def reason(error: BaseException) -> str:
    """The driver's own words, first line only: what a log line and a 503 say."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self._insert = _compiled(self.engine, predictions.insert(), COLUMNS)
        self._insert_label = _compiled(self.engine, labels.insert(), ("request_id", "batch_row", "label", "at"))
        self._ready = False
        self._schema_lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def ensure_ready(self) -> None:
        """Creates or upgrades the schema once; raises StoreUnavailable while the store cannot be reached."""
        if self._ready:
            return
        with self._schema_lock:
            self._make_ready()

    def _make_ready(self) -> None:
        if self._ready:
            return
        try:
            self._make_folder()
            self._create_schema()
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnavailable(reason(error)) from error
        except OSError as error:
            raise StoreUnavailable(f"{error.strerror or error}: {error.filename}") from error
        except StoreTooNew as error:
            raise StoreUnavailable(str(error)) from error
        self._ready = True

    def _make_folder(self) -> None:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)

    def _create_schema(self) -> None:
        # Several workers start at once: one creates the tables and the rows, the others find them made.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                self._upgrade()
                return
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def _upgrade(self) -> None:
        with self.engine.begin() as connection:
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

    # --- writes ----------------------------------------------------------------------------------

    def insert(self, rows: Sequence[tuple[Any, ...]], seen: Iterable[SeenVersion]) -> None:
        """Captured rows (records.COLUMNS order) and the versions they came from, in one transaction."""
        self.ensure_ready()
        try:
            with self.engine.begin() as connection:
                for version in seen:
                    connection.execute(self._upsert_version(version))
                if rows:
                    connection.exec_driver_sql(self._insert, list(rows))
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnavailable(reason(error)) from error

    def _upsert_version(self, seen: SeenVersion) -> sa.Executable:
        insert = postgresql.insert if self.backend == "postgresql" else sqlite.insert
        statement = insert(versions).values(
            model=seen.model, version=seen.version, classes=json.dumps(list(seen.classes)), first_at=seen.at,
            last_at=seen.at,
        )  # fmt: skip
        return statement.on_conflict_do_update(
            index_elements=[versions.c.model, versions.c.version],
            set_={"last_at": sa.func.greatest(versions.c.last_at, statement.excluded.last_at)}
            if self.backend == "postgresql"
            else {"last_at": sa.func.max(versions.c.last_at, statement.excluded.last_at)},
        )

    def add_labels(self, posted: Sequence[Label], now: float) -> LabelOutcome:
        """Stores the labels not stored yet, in one transaction, and says what happened to each."""
        self.ensure_ready()
        for attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    return self._add_labels(connection, posted, now)
            except sa.exc.IntegrityError:
                # Another worker stored one of these keys meanwhile: read again, and the label is unchanged or not.
                if attempt == 2:
                    raise
            except sa.exc.SQLAlchemyError as error:
                raise StoreUnavailable(reason(error)) from error
        raise AssertionError("unreachable")

    def _add_labels(self, connection: Connection, posted: Sequence[Label], now: float) -> LabelOutcome:
        request_ids = sorted({label.request_id for label in posted})
        kept = self._stored_labels(connection, request_ids)
        outcome = LabelOutcome()
        new: dict[tuple[str, int], Label] = {}
        for label in posted:
            key = (label.request_id, label.row)
            existing = kept.get(key) or (new[key].label if key in new else None)
            if existing is None:
                new[key] = label
            elif existing == label.label:
                outcome.unchanged += 1
            else:
                outcome.conflicting += 1
                outcome.conflicts.append((label, existing))
        captured = self._captured_keys(connection, sorted({key[0] for key in new}))
        outcome.matched = sum(1 for key in new if key in captured)
        outcome.unknown = len(new) - outcome.matched
        if new:
            rows = [(label.request_id, label.row, label.label, now) for label in new.values()]
            connection.exec_driver_sql(self._insert_label, rows)
        for name, count in outcome.counts().items():
            if count:
                connection.execute(
                    outcomes.update().where(outcomes.c.outcome == name).values(labels=outcomes.c.labels + count)
                )
        return outcome

    def _stored_labels(self, connection: Connection, request_ids: Sequence[str]) -> dict[tuple[str, int], str]:
        found: dict[tuple[str, int], str] = {}
        for chunk in _chunks(request_ids):
            query = sa.select(labels.c.request_id, labels.c.batch_row, labels.c.label).where(
                labels.c.request_id.in_(chunk)
            )
            found.update(((request_id, row), label) for request_id, row, label in connection.execute(query))
        return found

    def _captured_keys(self, connection: Connection, request_ids: Sequence[str]) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for chunk in _chunks(request_ids):
            query = (
                sa.select(predictions.c.request_id, predictions.c.batch_row)
                .where(predictions.c.request_id.in_(chunk))
                .distinct()
            )
            found.update((request_id, row) for request_id, row in connection.execute(query))
        return found

    def prune(self, now: float, days: int, max_rows: int) -> int:
        """Drops what is older than the retention, then the oldest beyond the row cap; the rows dropped."""
        self.ensure_ready()
        cutoff = now - days * 86_400
        try:
            with self.engine.begin() as connection:
                dropped = connection.execute(predictions.delete().where(predictions.c.at < cutoff)).rowcount
                connection.execute(labels.delete().where(labels.c.at < cutoff))
                connection.execute(versions.delete().where(versions.c.last_at < cutoff))
                dropped += self._cap(connection, predictions, predictions.c.id, max_rows)
                self._cap(connection, labels, labels.c.at, max_rows)
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnavailable(reason(error)) from error
        return int(dropped)

    def _cap(self, connection: Connection, table: sa.Table, order: sa.Column[Any], max_rows: int) -> int:
        threshold = connection.execute(sa.select(order).order_by(order.desc()).offset(max_rows).limit(1)).scalar()
        if threshold is None:
            return 0
        return int(connection.execute(table.delete().where(order <= threshold)).rowcount)

    # --- reads -----------------------------------------------------------------------------------

    def read(self, query: Callable[[Connection], Any]) -> Any:
        self.ensure_ready()
        try:
            with self.engine.connect() as connection:
                return query(connection)
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnavailable(reason(error)) from error

    def versions_of(self, models: Sequence[str], newest: int) -> list[VersionRow]:
        """Each model's versions in the store, newest first, at most `newest` each."""

        def query(connection: Connection) -> list[VersionRow]:
            statement = sa.select(versions).where(versions.c.model.in_(models)).order_by(versions.c.last_at.desc())
            rows = [
                VersionRow(row.model, row.version, tuple(json.loads(row.classes)), row.first_at, row.last_at)
                for row in connection.execute(statement)
            ]
            return _newest(rows, newest)

        result: list[VersionRow] = self.read(query)
        return result

    def window(self, model: str, version: str, size: int) -> list[Joined]:
        """The version's last `size` answered predictions that have a label, newest first."""

        def query(connection: Connection) -> list[Joined]:
            statement = (
                sa.select(predictions.c.predicted, labels.c.label, predictions.c.at, labels.c.at.label("labelled_at"))
                .join(
                    labels,
                    sa.and_(
                        labels.c.request_id == predictions.c.request_id,
                        labels.c.batch_row == predictions.c.batch_row,
                    ),
                )
                .where(_answered_by(model, version))
                .order_by(predictions.c.id.desc())
                .limit(size)
            )
            return [Joined(*row) for row in connection.execute(statement)]

        result: list[Joined] = self.read(query)
        return result

    def coverage(self, model: str, version: str, size: int) -> tuple[int, int]:
        """Of the version's last `size` answered predictions: how many have a label, and how many there are."""

        def query(connection: Connection) -> tuple[int, int]:
            recent = (
                sa.select(predictions.c.request_id, predictions.c.batch_row)
                .where(_answered_by(model, version))
                .order_by(predictions.c.id.desc())
                .limit(size)
                .subquery()
            )
            statement = sa.select(sa.func.count(labels.c.label), sa.func.count()).select_from(
                recent.outerjoin(
                    labels,
                    sa.and_(labels.c.request_id == recent.c.request_id, labels.c.batch_row == recent.c.batch_row),
                )
            )
            labelled, total = connection.execute(statement).one()
            return int(labelled), int(total)

        result: tuple[int, int] = self.read(query)
        return result

    def outcome_counts(self) -> dict[str, int]:
        def query(connection: Connection) -> dict[str, int]:
            return {outcome: int(count) for outcome, count in connection.execute(sa.select(outcomes))}

        result: dict[str, int] = self.read(query)
        return result


def _newest(rows: Sequence[VersionRow], newest: int) -> list[VersionRow]:
    """At most `newest` rows per model, in the order given (newest first)."""
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        taken[row.model] = taken.get(row.model, 0) + 1
        if taken[row.model] <= newest:
            kept.append(row)
    return kept


def _answered_by(model: str, version: str) -> sa.ColumnElement[bool]:
    return sa.and_(predictions.c.model == model, predictions.c.version == version, predictions.c.shadow.is_(False))


def _compiled(engine: Engine, statement: sa.Insert, columns: Sequence[str]) -> str:
    """The insert as the engine's dialect writes it, its positional parameters in the order of columns."""
    compiled = statement.compile(dialect=engine.dialect, column_keys=list(columns))
    order = compiled.positiontup
    assert order is not None and list(order) == list(columns), (order, columns)
    return str(compiled)


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
