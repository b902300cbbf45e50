"""What the store's figures read, each a function of one connection: a version's window of labelled records, its
recent predictions, the records a label can join.

A version's figures read its own answers (shadow false); with shadow=True, the answers it gave as a route's shadow.

A record is a row of a batch (schema.batches): a label joins it when a batch of its request ID has more records
than the label's row. The joins read the batches' small columns only; the packed values (a class's index, a
confidence) are fetched once per batch afterwards, however many of its records a figure counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.capture.records import FLOAT, INDEX, Reference, unpack
from app.capture.schema import REFERENCE_COLUMNS, batches, labels, outcomes, versions

# Keys per IN (...): within every backend's limit on bound parameters.
CHUNK = 500
T = TypeVar("T")


@dataclass(frozen=True)
class VersionRow:
    model: str
    version: str
    classes: tuple[str, ...]
    first_at: float
    last_at: float
    reference: Reference | None  # its accuracy from training, when its file has one


@dataclass(frozen=True)
class Recent:
    """A version's last predictions (a window's worth): how many, how many labelled, and their estimate."""

    labelled: int
    total: int
    estimated: float | None  # the mean calibrated confidence; None when none of them has one
    estimated_records: int  # the predictions that have a confidence


@dataclass(frozen=True)
class Joined:
    """A labelled prediction of a window: what the model said, the truth, and when each was known."""

    predicted: str
    label: str
    predicted_at: float
    labelled_at: float


@dataclass(frozen=True)
class Span:
    """Rows first to end - 1 of a batch."""

    id: int
    request_id: str
    first: int
    end: int


def versions_of(connection: Connection, models: Sequence[str], newest: int) -> list[VersionRow]:
    """Each model's versions in the store, newest first, at most `newest` each."""
    statement = sa.select(versions).where(versions.c.model.in_(models)).order_by(versions.c.last_at.desc())
    rows = [
        VersionRow(row.model, row.version, tuple(json.loads(row.classes)), row.first_at, row.last_at, _reference(row))
        for row in connection.execute(statement)
    ]
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        taken[row.model] = taken.get(row.model, 0) + 1
        if taken[row.model] <= newest:
            kept.append(row)
    return kept


def window(
    connection: Connection,
    model: str,
    version: str,
    size: int,
    shadow: bool = False,
    classes: Sequence[str] | None = None,
) -> list[Joined]:
    """The version's last `size` answered predictions that have a label, newest first (by batch, then row).

    classes: the version's, when the caller knows them (a version that only shadowed has no row in versions).
    """
    if classes is None:
        stored = connection.execute(
            sa.select(versions.c.classes).where(versions.c.model == model, versions.c.version == version)
        ).scalar()
        if stored is None:  # a version is stored with its first answered batch: nothing of it is captured yet
            return []
        classes = json.loads(stored)
    statement = (
        sa.select(batches.c.id, labels.c.batch_row, labels.c.label, batches.c.at, labels.c.at.label("labelled_at"))
        .select_from(labels.join(batches, _joins(labels.c.request_id, labels.c.batch_row)))
        .where(_answered_by(model, version, shadow))
        .order_by(batches.c.id.desc(), labels.c.batch_row.desc())
        .limit(size)
    )
    found = connection.execute(statement).all()
    predicted = {
        id: unpack(blob, INDEX) for id, blob in _by_id(connection, batches.c.predicted, {row.id for row in found})
    }
    return [Joined(classes[predicted[id][row]], label, at, labelled_at) for id, row, label, at, labelled_at in found]


def recent(connection: Connection, model: str, version: str, size: int, shadow: bool = False) -> Recent:
    """Of the version's last `size` answered predictions: how many have a label, how many there are, and the
    mean of their confidences (those that have one)."""
    found = _oldest(connection, model, version, size, shadow)
    if found is None:
        return Recent(0, 0, None, 0)
    oldest, total = found
    # Every batch newer than the oldest counts whole; the oldest, the rows it counts by.
    newer = labels.join(batches, _joins(labels.c.request_id, labels.c.batch_row))
    labelled = connection.execute(
        sa.select(sa.func.count())
        .select_from(newer)
        .where(_answered_by(model, version, shadow), batches.c.id > oldest.id)
    ).scalar_one()
    labelled += connection.execute(
        sa.select(sa.func.count()).where(
            labels.c.request_id == oldest.request_id,
            labels.c.batch_row >= oldest.first,
            labels.c.batch_row < oldest.end,
        )
    ).scalar_one()
    rated = sa.select(batches.c.id, batches.c.confidences).where(
        _answered_by(model, version, shadow), batches.c.id >= oldest.id, batches.c.confidences.is_not(None)
    )
    summed, count = 0.0, 0
    for id, blob in connection.execute(rated):
        values = unpack(blob, FLOAT)[oldest.first if id == oldest.id else 0 :]
        known = values[~np.isnan(values)]  # NaN: a record without a confidence
        summed += float(known.sum())
        count += len(known)
    return Recent(int(labelled), total, summed / count if count else None, count)


def _oldest(connection: Connection, model: str, version: str, size: int, shadow: bool) -> tuple[Span, int] | None:
    """The oldest batch of the version's last `size` records and the rows of it they take (its last ones), with
    how many records they are; None when the version has none."""
    statement = (
        sa.select(batches.c.id, batches.c.request_id, batches.c.records)
        .where(_answered_by(model, version, shadow))
        .order_by(batches.c.id.desc())
        .limit(size)  # each batch holds at least one record
    )
    oldest = None
    left = size
    for id, request_id, records in connection.execute(statement):
        taken = min(records, left)
        oldest = Span(id, request_id, records - taken, records)
        left -= taken
        if not left:
            break
    return None if oldest is None else (oldest, size - left)


def span(connection: Connection, model: str, version: str, shadow: bool) -> tuple[float, float] | None:
    """When the version's first and last answers (or shadow answers) still stored were captured; None: none is."""
    statement = sa.select(sa.func.min(batches.c.at), sa.func.max(batches.c.at)).where(
        _answered_by(model, version, shadow)
    )
    first, last = connection.execute(statement).one()
    return None if first is None else (float(first), float(last))


def captured_records(connection: Connection, request_ids: Sequence[str]) -> dict[str, int]:
    """Of these requests, the captured ones and their largest batch: its rows are the records a label joins."""
    found: dict[str, int] = {}
    for chunk in chunks(request_ids):
        query = (
            sa.select(batches.c.request_id, sa.func.max(batches.c.records))
            .where(batches.c.request_id.in_(chunk))
            .group_by(batches.c.request_id)
        )
        found.update((request_id, int(records)) for request_id, records in connection.execute(query))
    return found


def outcome_counts(connection: Connection) -> dict[str, int]:
    return {outcome: int(count) for outcome, count in connection.execute(sa.select(outcomes))}


def _joins(request_id: sa.ColumnElement[Any], row: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """A record's batch: one of its request whose rows reach it."""
    return sa.and_(batches.c.request_id == request_id, row < batches.c.records)


def _by_id(connection: Connection, column: sa.Column[Any], ids: Iterable[int]) -> list[tuple[int, Any]]:
    """One packed column of these batches, fetched once each."""
    found: list[tuple[int, Any]] = []
    for chunk in chunks(sorted(ids)):
        found.extend(connection.execute(sa.select(batches.c.id, column).where(batches.c.id.in_(chunk))))
    return found


def _reference(row: sa.Row[Any]) -> Reference | None:
    values = [row._mapping[name] for name in REFERENCE_COLUMNS]
    return None if any(value is None for value in values) else Reference(*values)


def _answered_by(model: str, version: str, shadow: bool = False) -> sa.ColumnElement[bool]:
    return sa.and_(batches.c.model == model, batches.c.version == version, batches.c.shadow.is_(shadow))


def chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
