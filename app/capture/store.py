"""The capture store: predictions, labels and what they add up to, in SQLite or PostgreSQL through SQLAlchemy Core.

One code path for both: the tables are declared once (schema.py), every statement is built by SQLAlchemy, and
only the upsert's construct is picked per dialect. The app creates the schema at start and upgrades it. This
module writes (batches, labels, pruning) and opens the reads (reads.py). Bulk inserts go to the driver as
statements compiled by SQLAlchemy, many rows in each VALUES list (insert_sizes), with a tuple of parameters per
statement: the same SQL, without building a dict per row or a round trip per row.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter, lt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from app.capture import reads
from app.capture.reads import Joined, Recent, VersionRow, chunks
from app.capture.records import COLUMNS, Label, SeenVersion
from app.capture.schema import (
    OUTCOMES,
    REFERENCE_COLUMNS,
    StoreTooNew,
    batches,
    create_schema,
    engine_for,
    labels,
    outcomes,
    versions,
)
from app.errors import StoreUnavailable

__all__ = ["Joined", "LabelOutcome", "Recent", "Store", "VersionRow", "reason"]
VERSION_COLUMNS = ("model", "version", "classes", "first_at", "last_at", *REFERENCE_COLUMNS)
# The parameters one statement may take: SQLite's default limit (PostgreSQL's is 65,535).
MAX_PARAMETERS = 32_766
# The rows in one INSERT's VALUES list: as many of the biggest as fit, then of the next. The captured batches'
# insert starts with as many rows as MAX_PARAMETERS allows (insert_sizes): a statement of many rows costs no more
# CPU a row than one of 256, and each statement fewer is one chance fewer for the serving thread to take the
# interpreter from the writer (see BulkInsert).
ROWS_PER_INSERT = (256, 32, 4, 1)
LABEL_KEY = itemgetter(0, 1)  # a label's record: its request ID and row
logger = logging.getLogger("app")


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


def reason(error: BaseException) -> str:
    """The driver's own words, first line only: what a log line and a 503 say."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        # The writer's inserts get the biggest statements; a post of labels is written on the serving thread,
        # which has no one to share the interpreter with meanwhile.
        self._insert = BulkInsert.of(self.engine, batches, COLUMNS, insert_sizes(len(COLUMNS)))
        self._insert_label = BulkInsert.of(
            self.engine, labels, ("request_id", "batch_row", "label", "at"), ROWS_PER_INSERT
        )
        self._upsert = self._upsert_version()
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
            create_schema(self.engine)
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

    # --- writes ----------------------------------------------------------------------------------

    def insert(self, rows: Sequence[tuple[Any, ...]], seen: Iterable[SeenVersion]) -> None:
        """Captured batches' rows (records.COLUMNS order) and the versions they came from, in one transaction."""
        self.ensure_ready()
        try:
            with self.engine.begin() as connection:
                if upserts := [_version_values(version) for version in seen]:
                    connection.exec_driver_sql(self._upsert, upserts)
                self._insert.run(connection, rows)
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnavailable(reason(error)) from error

    def compile_batch_inserts(self) -> None:
        """Compiles the batches' insert statements now, before the writer's first round needs them."""
        self._insert.compile_all()

    def compile_label_inserts(self) -> None:
        """Compiles the labels' insert statements now, before the first post of labels, whose request would
        otherwise wait for it."""
        self._insert_label.compile_all()

    def _upsert_version(self) -> str:
        """A version seen, its parameters in VERSION_COLUMNS order: compiled once, not built at every write."""
        statement = (postgresql.insert if self.backend == "postgresql" else sqlite.insert)(versions)
        latest = sa.func.greatest if self.backend == "postgresql" else sa.func.max
        # A version's file never changes, so its reference is the one first stored (kept, or filled if missing).
        kept = {name: sa.func.coalesce(versions.c[name], statement.excluded[name]) for name in REFERENCE_COLUMNS}
        upsert = statement.on_conflict_do_update(
            index_elements=[versions.c.model, versions.c.version],
            set_={"last_at": latest(versions.c.last_at, statement.excluded.last_at), **kept},
        )
        return _compiled(self.engine, upsert, VERSION_COLUMNS, VERSION_COLUMNS)

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
        keys = list(map(LABEL_KEY, posted))
        kept = self._stored_labels(connection, sorted({request_id for request_id, _ in keys}))
        outcome = LabelOutcome()
        new = dict(zip(keys, posted, strict=True))
        if kept or len(new) < len(posted):
            new = _sorted_out(posted, keys, kept, outcome)
        request_ids = list(map(itemgetter(0), new))
        captured = reads.captured_records(connection, sorted(set(request_ids)))
        # A label joins when its row is within its request's batch.
        outcome.matched = sum(map(lt, map(itemgetter(1), new), map(captured.get, request_ids, repeat(0))))
        outcome.unknown = len(new) - outcome.matched
        if new:
            # A label is the row's first columns (request_id, batch_row, label): the time received ends it.
            self._insert_label.run(connection, list(map(tuple.__add__, new.values(), repeat((now,)))))
        for name, count in outcome.counts().items():
            if count:
                connection.execute(
                    outcomes.update().where(outcomes.c.outcome == name).values(labels=outcomes.c.labels + count)
                )
        return outcome

    def _stored_labels(self, connection: Connection, request_ids: Sequence[str]) -> dict[tuple[str, int], str]:
        found: dict[tuple[str, int], str] = {}
        for chunk in chunks(request_ids):
            query = sa.select(labels.c.request_id, labels.c.batch_row, labels.c.label).where(
                labels.c.request_id.in_(chunk)
            )
            found.update(((request_id, row), label) for request_id, row, label in connection.execute(query).all())
        return found

    def prune(self, now: float, days: int, max_rows: int) -> int:
        """Drops what is older than the retention, then the oldest batches beyond the cap on records (and the
        oldest labels beyond as many labels); the records dropped."""
        self.ensure_ready()
        cutoff = now - days * 86_400
        try:
            with self.engine.begin() as connection:
                dropped = self._drop_batches(connection, batches.c.at < cutoff)
                connection.execute(labels.delete().where(labels.c.at < cutoff))
                connection.execute(versions.delete().where(versions.c.last_at < cutoff))
                # A batch is beyond the cap when it and the newer ones hold more than max_rows records.
                running = sa.func.sum(batches.c.records).over(order_by=batches.c.id.desc())
                newest = sa.select(batches.c.id, running.label("records")).subquery()
                beyond = sa.select(sa.func.max(newest.c.id)).where(newest.c.records > max_rows)
                threshold = connection.execute(beyond).scalar()
                if threshold is not None:
                    dropped += self._drop_batches(connection, batches.c.id <= threshold)
                self._cap_labels(connection, max_rows)
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnavailable(reason(error)) from error
        return dropped

    def _drop_batches(self, connection: Connection, which: sa.ColumnElement[bool]) -> int:
        records = connection.execute(sa.select(sa.func.coalesce(sa.func.sum(batches.c.records), 0)).where(which))
        dropped = int(records.scalar_one())
        connection.execute(batches.delete().where(which))
        return dropped

    def _cap_labels(self, connection: Connection, max_rows: int) -> None:
        order = labels.c.at
        threshold = connection.execute(sa.select(order).order_by(order.desc()).offset(max_rows).limit(1)).scalar()
        if threshold is not None:
            connection.execute(labels.delete().where(order <= threshold))

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
        result: list[VersionRow] = self.read(lambda connection: reads.versions_of(connection, models, newest))
        return result

    def window(
        self, model: str, version: str, size: int, shadow: bool = False, classes: Sequence[str] | None = None
    ) -> list[Joined]:
        """The version's last `size` answered predictions (shadow: as a route's shadow) that have a label, newest
        first; classes: the version's, for one that may only have shadowed."""
        result: list[Joined] = self.read(
            lambda connection: reads.window(connection, model, version, size, shadow, classes)
        )
        return result

    def recent(self, model: str, version: str, size: int, shadow: bool = False) -> Recent:
        """Of the version's last `size` answered predictions (shadow: as a route's shadow): how many have a label,
        how many there are, and the mean of their confidences (those that have one)."""
        result: Recent = self.read(lambda connection: reads.recent(connection, model, version, size, shadow))
        return result

    def span(self, model: str, version: str, shadow: bool) -> tuple[float, float] | None:
        """When the version's first and last stored answers (shadow: as a route's shadow) were captured, or None."""
        result: tuple[float, float] | None = self.read(
            lambda connection: reads.span(connection, model, version, shadow)
        )
        return result

    def coverage(self, model: str, version: str, size: int) -> tuple[int, int]:
        """Of the version's last `size` answered predictions: how many have a label, and how many there are."""
        recent = self.recent(model, version, size)
        return recent.labelled, recent.total

    def outcome_counts(self) -> dict[str, int]:
        result: dict[str, int] = self.read(reads.outcome_counts)
        return result


def _sorted_out(
    posted: Sequence[Label], keys: Sequence[tuple[str, int]], kept: dict[tuple[str, int], str], outcome: LabelOutcome
) -> dict[tuple[str, int], Label]:
    """The labels to store, by record: the first for a record without one; the others counted unchanged, or
    conflicting when they differ from the one kept."""
    new: dict[tuple[str, int], Label] = {}
    for key, label in zip(keys, posted, strict=True):
        existing = kept.get(key) or (new[key].label if key in new else None)
        if existing is None:
            new[key] = label
        elif existing == label.label:
            outcome.unchanged += 1
        else:
            outcome.conflicting += 1
            outcome.conflicts.append((label, existing))
    return new


def _version_values(seen: SeenVersion) -> tuple[Any, ...]:
    reference = seen.reference.values() if seen.reference is not None else (None, None, None)
    return (seen.model, seen.version, json.dumps(list(seen.classes)), seen.at, seen.at, *reference)


def insert_sizes(columns: int) -> tuple[int, ...]:
    """The rows a bulk insert's statements take, biggest first, for a table of that many columns."""
    return (MAX_PARAMETERS // columns, *ROWS_PER_INSERT)


@dataclass(frozen=True)
class BulkInsert:
    """An insert of rows given as tuples in the order of its columns, as the engine's dialect writes it: inline(),
    so without RETURNING the generated keys, which nobody reads (PostgreSQL would send them back).

    One statement for each of insert_sizes, biggest first: any number of rows goes in a few statements. Each is
    a call into the driver, which lets go of the interpreter while the database works; the serving thread takes
    it then, and the writer waits up to the interpreter's switch interval to have it back, woken in vain at
    each of the serving thread's system calls meanwhile, which the serving thread pays for too
    (scripts/README.md has the measurements). Each statement is compiled when first needed: the biggest takes
    SQLAlchemy a few tenths of a second, which the capture's writer pays as it starts (compile_batch_inserts), before
    any of its rounds, and a store that is only read never pays.
    """

    engine: Engine
    table: sa.Table
    columns: tuple[str, ...]
    statements: dict[int, str | None]  # by rows a statement, biggest first; None until compiled

    @classmethod
    def of(cls, engine: Engine, table: sa.Table, columns: Sequence[str], sizes: Sequence[int]) -> BulkInsert:
        return cls(engine, table, tuple(columns), dict.fromkeys(sizes))

    def compile_all(self) -> None:
        for size in self.statements:
            self._statement(size)

    def run(self, connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        start = 0
        for size in self.statements:
            end = start + (len(rows) - start) // size * size
            if end > start:
                parts = (rows[first : first + size] for first in range(start, end, size))
                connection.exec_driver_sql(self._statement(size), [tuple(chain.from_iterable(part)) for part in parts])
            start = end

    def _statement(self, size: int) -> str:
        statement = self.statements[size]
        if statement is None:
            # Two threads may compile one at once: both get the same SQL.
            statement = self.statements[size] = self._compile(size)
        return statement

    def _compile(self, size: int) -> str:
        names = [[f"{column}_{row}" for column in self.columns] for row in range(size)]
        rows: list[dict[str, Any]] = [dict(zip(self.columns, map(sa.bindparam, row), strict=True)) for row in names]
        order = list(chain.from_iterable(names))
        return _compiled(self.engine, self.table.insert().inline().values(rows), None, order)


def _compiled(engine: Engine, statement: sa.Insert, keys: Sequence[str] | None, order: Sequence[str]) -> str:
    """The insert as the engine's dialect writes it, checked to take its positional parameters in `order`."""
    compiled = statement.compile(dialect=engine.dialect, column_keys=None if keys is None else list(keys))
    assert compiled.positiontup is not None and list(compiled.positiontup) == list(order), compiled.positiontup
    return str(compiled)
