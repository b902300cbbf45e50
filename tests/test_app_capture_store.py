"""The capture store against both backends: SQLite, and a real PostgreSQL server the session starts."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from export_labelled import labelled_rows

from app.capture import schema as capture_schema
from app.capture.records import (
    COLUMNS,
    FLOAT,
    INDEX,
    PROBABILITY,
    Captured,
    Label,
    Reference,
    SeenVersion,
    pack,
    rows,
    unpack,
    words,
)
from app.capture.schema import (
    REFERENCE_COLUMNS,
    SCHEMA_VERSION,
    batches,
    engine_for,
    labels,
    metadata,
    predictions_v2,
    schema,
    versions,
)
from app.capture.store import ROWS_PER_INSERT, Recent, Store, insert_sizes
from app.errors import StoreUnavailable
from app.features import Batch
from app.predictors import Prediction
from tests.helpers import RECORD

CLASSES = ("Adelie", "Chinstrap", "Gentoo")


def captured(
    request_id: str, predicted: list[int], model: str = "m", version: str = "v1", at: float = 1000.0
) -> Captured:
    count = len(predicted)
    batch = Batch.from_records([RECORD] * count)
    probabilities = np.eye(3)[predicted]
    return Captured(
        request_id, None, at, model, version, batch, Prediction(CLASSES, np.array(predicted), probabilities)
    )


def write(
    store: Store,
    *items: Captured,
    reference: Reference | None = None,
    confidences: dict[int, list[float | None]] | None = None,
) -> None:
    """The batches stored as the writer stores them; some batches' confidences set by hand (by position), if given."""
    stored = rows(items)
    at = COLUMNS.index("confidences")
    for index, values in (confidences or {}).items():
        stored[index] = (*stored[index][:at], pack(values, FLOAT), *stored[index][at + 1 :])
    store.insert(stored, [SeenVersion(item.model, item.version, CLASSES, item.at, reference) for item in items])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    made = Store(store_url)
    yield made
    made.close()


def test_a_captured_batch_is_one_row_with_its_records_values_packed(store: Store) -> None:
    write(store, captured("r1", [0, 2]))
    with store.engine.connect() as connection:
        (row,) = connection.execute(sa.select(batches)).all()
    assert (row.request_id, row.records, row.model, row.shadow, row.confidences) == ("r1", 2, "m", False, None)
    assert unpack(row.predicted, INDEX).tolist() == [0, 2]
    assert unpack(row.probabilities, PROBABILITY, 3).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert unpack(row.measurements, FLOAT, 4).tolist() == [[39.1, 18.7, 181.0, 3750.0]] * 2
    assert words([row.island, row.sex], row.words) == {"island": ["Torgersen"] * 2, "sex": ["Male"] * 2}


def test_batches_and_labels_beyond_one_insert_statement_keep_every_row_in_order(store: Store) -> None:
    # Two VALUES lists of each size, then one more row: every statement of the cascade, and its boundaries.
    count = sum(2 * size for size in insert_sizes(len(COLUMNS))) + 1
    write(store, *(captured(f"r{index}", [index % 3]) for index in range(count)))
    label_count = sum(2 * size for size in ROWS_PER_INSERT) + 1
    store.add_labels([Label("r0", row, CLASSES[row % 2]) for row in range(label_count)], 2000.0)
    with store.engine.connect() as connection:
        found = connection.execute(sa.select(batches.c.request_id, batches.c.predicted).order_by(batches.c.id)).all()
        labelled = connection.execute(sa.select(labels.c.batch_row, labels.c.label).order_by(labels.c.batch_row))
    assert [(request_id, unpack(predicted, INDEX).tolist()) for request_id, predicted in found] == [
        (f"r{index}", [index % 3]) for index in range(count)
    ]
    assert [tuple(row) for row in labelled] == [(row, CLASSES[row % 2]) for row in range(label_count)]


def test_labels_are_counted_by_outcome(store: Store) -> None:
    write(store, captured("r1", [0, 1]))
    first = store.add_labels([Label("r1", 0, "Adelie"), Label("r1", 1, "Gentoo"), Label("nope", 0, "Adelie")], 2000.0)
    assert first.counts() == {"matched": 2, "unknown": 1, "unchanged": 0, "conflicting": 0}
    again = store.add_labels([Label("r1", 0, "Adelie"), Label("r1", 1, "Chinstrap")], 2001.0)
    assert again.counts() == {"matched": 0, "unknown": 0, "unchanged": 1, "conflicting": 1}
    assert again.conflicts == [(Label("r1", 1, "Chinstrap"), "Gentoo")]
    assert store.outcome_counts() == {"matched": 2, "unknown": 1, "unchanged": 1, "conflicting": 1}


def test_the_same_key_twice_in_one_post_is_stored_once(store: Store) -> None:
    write(store, captured("r1", [0]))
    outcome = store.add_labels([Label("r1", 0, "Adelie"), Label("r1", 0, "Adelie"), Label("r1", 0, "Gentoo")], 1.0)
    assert outcome.counts() == {"matched": 1, "unknown": 0, "unchanged": 1, "conflicting": 1}


def test_a_label_sent_before_its_prediction_is_written_joins_it_later(store: Store) -> None:
    assert store.add_labels([Label("early", 0, "Gentoo")], 999.0).unknown == 1
    write(store, captured("early", [2]))
    (joined,) = store.window("m", "v1", 10)
    assert (joined.predicted, joined.label) == ("Gentoo", "Gentoo")


def test_a_label_scores_every_model_that_answered_the_request(store: Store) -> None:
    write(store, captured("both", [0], model="a"), captured("both", [1], model="b"))
    assert store.add_labels([Label("both", 0, "Adelie")], 2000.0).matched == 1
    assert [joined.predicted for joined in store.window("a", "v1", 10)] == ["Adelie"]
    assert [joined.predicted for joined in store.window("b", "v1", 10)] == ["Chinstrap"]


def test_the_window_holds_the_newest_labelled_predictions_of_one_version(store: Store) -> None:
    write(store, *(captured(f"r{i}", [i % 3]) for i in range(6)), captured("other", [0], version="v2"))
    store.add_labels([Label(f"r{i}", 0, "Adelie") for i in range(5)] + [Label("other", 0, "Adelie")], 2000.0)
    window = store.window("m", "v1", 3)
    assert [joined.predicted for joined in window] == ["Chinstrap", "Adelie", "Gentoo"]  # r4, r3, r2
    assert store.coverage("m", "v1", 3) == (2, 3)  # r5 has no label
    assert store.coverage("m", "v2", 10) == (1, 1)


def test_a_window_drawn_from_one_big_batch_reads_each_labelled_records_class(store: Store) -> None:
    write(store, captured("big", [index % 3 for index in range(10_000)]))
    store.add_labels([Label("big", 3, "Gentoo"), Label("big", 9998, "Chinstrap")], 2000.0)
    assert [(joined.predicted, joined.label) for joined in store.window("m", "v1", 1000)] == [
        ("Gentoo", "Chinstrap"),  # row 9998 (9998 % 3 == 2), the newest
        ("Adelie", "Gentoo"),  # row 3
    ]


def test_recent_counts_only_the_last_rows_of_a_batch_it_takes_in_part(store: Store) -> None:
    write(store, captured("older", [0] * 10), captured("newer", [0] * 3),
          confidences={0: [float(row) / 10 for row in range(10)]})  # fmt: skip
    store.add_labels([Label("older", 0, "Adelie"), Label("older", 8, "Adelie"), Label("newer", 1, "Adelie")], 1.0)
    recent = store.recent("m", "v1", 5)  # newer's 3 records, and older's last 2: rows 8 and 9
    assert (recent.labelled, recent.total, recent.estimated_records) == (2, 5, 2)
    assert recent.estimated == pytest.approx(0.85)


def test_the_estimate_leaves_out_the_records_without_a_confidence(store: Store) -> None:
    write(store, captured("r", [0, 0, 0, 0]), confidences={0: [0.5, None, 1.0, float("nan")]})
    assert store.recent("m", "v1", 10) == Recent(0, 4, 0.75, 2)


def test_shadow_predictions_stay_out_of_the_answering_figures(store: Store) -> None:
    shadow = captured("s", [1])
    shadow.shadow = True
    write(store, captured("s", [0]), shadow)
    store.add_labels([Label("s", 0, "Adelie")], 2000.0)
    assert [joined.predicted for joined in store.window("m", "v1", 10)] == ["Adelie"]


def test_a_versions_shadow_answers_are_read_apart_from_its_own(store: Store) -> None:
    shadow = captured("s", [2, 1], model="shadowing", version="v9", at=1500.0)
    shadow.shadow = True
    write(store, captured("s", [0, 0]), captured("own", [0], model="shadowing", version="v9"))
    store.insert(rows([shadow]), [])  # as the writer does: a shadow answer stores no version row
    store.add_labels([Label("s", 0, "Gentoo"), Label("s", 1, "Adelie"), Label("own", 0, "Adelie")], 2000.0)
    window = store.window("shadowing", "v9", 10, shadow=True, classes=CLASSES)
    assert [(joined.predicted, joined.label) for joined in window] == [("Chinstrap", "Adelie"), ("Gentoo", "Gentoo")]
    assert [joined.predicted for joined in store.window("shadowing", "v9", 10)] == ["Adelie"]
    assert store.recent("shadowing", "v9", 10, shadow=True) == Recent(2, 2, None, 0)
    assert store.span("shadowing", "v9", shadow=True) == (1500.0, 1500.0)
    assert store.span("m", "v1", shadow=True) is None


def test_versions_are_listed_newest_first(store: Store) -> None:
    write(store, captured("a", [0], version="old", at=10.0), captured("b", [0], version="new", at=20.0))
    assert [row.version for row in store.versions_of(["m"], 5)] == ["new", "old"]
    assert [row.version for row in store.versions_of(["m"], 1)] == ["new"]
    assert store.versions_of(["m"], 1)[0].classes == CLASSES


def test_pruning_drops_what_is_too_old_then_the_oldest_beyond_the_cap(store: Store) -> None:
    day = 86_400.0
    write(store, captured("old", [0], at=0.0), *(captured(f"r{i}", [0, 0], at=10 * day + i) for i in range(3)))
    store.add_labels([Label("old", 0, "Adelie")], 1.0)
    dropped = store.prune(now=11 * day, days=5, max_rows=4)
    assert dropped == 1 + 2  # records
    with store.engine.connect() as connection:
        left = connection.execute(sa.select(batches.c.request_id).order_by(batches.c.request_id)).scalars()
        assert list(left) == ["r1", "r2"]
        assert connection.execute(sa.select(sa.func.count()).select_from(labels)).scalar() == 0


@pytest.mark.parametrize(
    ("cap", "kept", "dropped"),
    [pytest.param(5, ["b", "c"], 5, id="at-the-cap"), pytest.param(4, ["c"], 8, id="a-batch-across-it")],
)
def test_the_row_cap_counts_records_and_drops_whole_batches(
    store: Store, cap: int, kept: list[str], dropped: int
) -> None:
    write(store, captured("a", [0] * 5), captured("b", [0] * 3), captured("c", [0] * 2))
    assert store.prune(now=1000.0, days=5, max_rows=cap) == dropped
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(batches.c.request_id).order_by(batches.c.id)).scalars().all() == kept


def test_a_versions_reference_is_the_one_first_stored(store: Store) -> None:
    write(store, captured("a", [0]), reference=Reference(0.97, 0.95, 0.99))
    write(store, captured("b", [0], at=2000.0), reference=Reference(0.5, 0.4, 0.6))
    write(store, captured("c", [0], version="bare"))
    found = {row.version: row for row in store.versions_of(["m"], 5)}
    assert found["v1"].reference == Reference(0.97, 0.95, 0.99) and found["v1"].last_at == 2000.0
    assert found["bare"].reference is None


def test_the_estimate_is_the_mean_confidence_of_the_recent_predictions(store: Store) -> None:
    # The confidences as the writer fills them (app/calibration.py), here set by hand.
    rated: dict[int, list[float | None]] = {index: [value] for index, value in enumerate([0.2, 0.6, 0.8, 0.9, 1.0])}
    write(store, *(captured(f"r{i}", [0]) for i in range(5)), captured("unrated", [0], version="v2"),
          confidences=rated)  # fmt: skip
    store.add_labels([Label("r4", 0, "Adelie")], 2000.0)
    newest, every = store.recent("m", "v1", 3), store.recent("m", "v1", 10)
    assert (newest.labelled, newest.total, newest.estimated_records) == (1, 3, 3)  # r4, r3, r2
    assert newest.estimated == pytest.approx(0.9)
    assert (every.labelled, every.total, every.estimated_records) == (1, 5, 5)
    assert every.estimated == pytest.approx(0.7)
    assert store.recent("m", "v2", 10) == Recent(0, 1, None, 0)


def v2_rows(item: Captured, confidences: Sequence[float | None] | None = None, first: int = 0) -> list[dict[str, Any]]:
    """The batch as schema 2 stored it: one row per record (from row `first` on: what the row cap left of it)."""
    probabilities = item.prediction.probabilities
    assert probabilities is not None
    return [
        {"request_id": item.request_id, "client_id": item.client_id, "batch_row": row, "at": item.at,
         "model": item.model, "version": item.version, "predicted": CLASSES[item.prediction.indices[row]],
         "probabilities": json.dumps(probabilities[row].tolist()), "shadow": item.shadow,
         "confidence": None if confidences is None else confidences[row],
         **{name: values[row] for name, values in item.batch.categorical.items()},
         **dict(zip(("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"),
                    item.batch.numeric[row].tolist(), strict=True))}
        for row in range(first, len(item))
    ]  # fmt: skip


def make_v2_store(url: str, records: Sequence[dict[str, Any]], labelled: Sequence[Label]) -> None:
    """A store as the release of schema 2 left it: per-record rows, labels, versions."""
    database = sa.make_url(url).database
    if url.startswith("sqlite") and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = engine_for(url)
    try:
        with engine.begin() as connection:
            metadata.create_all(connection, tables=[labels, versions, schema, metadata.tables["feedback_outcomes"]])
            predictions_v2.create(connection)
            connection.execute(schema.insert().values(version=2))
            connection.execute(predictions_v2.insert(), [{"id": index + 1, **row} for index, row in enumerate(records)])
            seen = {(row["model"], row["version"]): row["at"] for row in records if not row["shadow"]}
            connection.execute(versions.insert(), [
                {"model": model, "version": version, "classes": json.dumps(CLASSES), "first_at": at, "last_at": at}
                for (model, version), at in seen.items()
            ])  # fmt: skip
            for label in labelled:
                connection.execute(labels.insert().values(request_id=label.request_id, batch_row=label.row,
                                                          label=label.label, at=2000.0))  # fmt: skip
    finally:
        engine.dispose()


def figures(store: Store) -> tuple[Any, ...]:
    store.ensure_ready()
    with store.engine.connect() as connection:
        exported = [tuple(row) for row in labelled_rows(connection)]
    return (
        {model: store.window(model, "v1", 10) for model in ("a", "b")},
        {(model, size): store.recent(model, "v1", size) for model in ("a", "b") for size in (1, 3, 10)},
        exported,
    )


def test_a_store_of_schema_2_becomes_one_row_per_batch_with_the_same_figures(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_schema, "UPGRADE_CHUNK", 2)  # batches written while the old rows are still read
    shadow = captured("compared", [1, 1], model="b")
    shadow.shadow = True
    kept = [
        captured("compared", [0, 2, 1], model="a"), captured("compared", [2, 2, 0], model="b"), shadow,
        captured("single", [1], model="a"), captured("again", [0], model="a"), captured("again", [2, 1], model="a"),
    ]  # fmt: skip
    rated: dict[int, list[float | None]] = {0: [0.5, None, 1.0], 3: [0.25]}
    labelled = [Label("compared", 0, "Adelie"), Label("compared", 2, "Gentoo"), Label("single", 0, "Adelie"),
                Label("again", 1, "Chinstrap"), Label("nowhere", 0, "Adelie")]  # fmt: skip
    cut = captured("cut", [0, 0, 0], model="a", at=999.0)  # its first row pruned by schema 2's row cap
    records = [row for index, item in enumerate(kept) for row in v2_rows(item, rated.get(index))]
    make_v2_store(store_url, v2_rows(cut, first=1) + records, labelled)
    upgraded = Store(store_url)
    expected = Store(f"sqlite:///{tmp_path / 'expected.db'}")
    try:
        write(expected, *kept, confidences=rated)
        expected.add_labels(labelled, 2000.0)
        assert figures(upgraded) == figures(expected)
        with upgraded.engine.connect() as connection:
            assert connection.execute(sa.select(schema.c.version)).scalars().all() == [SCHEMA_VERSION]
            assert not sa.inspect(connection).has_table("predictions")
            assert connection.execute(sa.select(sa.func.sum(batches.c.records))).scalar() == 12
        write(upgraded, captured("later", [0], model="a"))  # new ids go on after the converted ones
        assert upgraded.recent("a", "v1", 1) == Recent(0, 1, None, 0)
    finally:
        upgraded.close()
        expected.close()


def test_a_store_of_schema_1_is_upgraded_and_keeps_its_rows(store_url: str) -> None:
    make_v2_store(store_url, v2_rows(captured("old", [0])), [])
    # Schema 1, as the release before made it: model_versions without the reference columns.
    engine = engine_for(store_url)
    with engine.begin() as connection:
        for name in REFERENCE_COLUMNS:
            connection.execute(sa.text(f"ALTER TABLE model_versions DROP COLUMN {name}"))  # a test's fixed names
        connection.execute(schema.update().values(version=1))
    engine.dispose()
    upgraded = Store(store_url)
    try:
        assert [row.reference for row in upgraded.versions_of(["m"], 5)] == [None]
        write(upgraded, captured("new", [0]), reference=Reference(0.97, 0.95, 0.99))
        assert [row.reference for row in upgraded.versions_of(["m"], 5)] == [Reference(0.97, 0.95, 0.99)]
        assert upgraded.coverage("m", "v1", 10) == (0, 2)
        with upgraded.engine.connect() as connection:
            assert connection.execute(sa.select(schema.c.version)).scalars().all() == [SCHEMA_VERSION]
    finally:
        upgraded.close()


def test_a_second_store_on_the_same_database_finds_the_schema_made(store: Store, store_url: str) -> None:
    write(store, captured("r", [0]))
    other = Store(store_url)
    try:
        other.ensure_ready()
        assert [row.version for row in other.versions_of(["m"], 5)] == ["v1"]
    finally:
        other.close()


def test_a_store_written_by_a_newer_release_is_refused(store: Store, store_url: str) -> None:
    store.ensure_ready()
    with store.engine.begin() as connection:
        connection.execute(schema.update().values(version=SCHEMA_VERSION + 1))
    newer = Store(store_url)
    try:
        with pytest.raises(StoreUnavailable, match=r"knows up to"):
            newer.ensure_ready()
    finally:
        newer.close()


def test_an_unreachable_postgresql_is_unavailable_not_a_crash() -> None:
    store = Store("postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(StoreUnavailable) as raised:
        store.insert([], [])
    assert "cannot be reached" in raised.value.detail and raised.value.reason


def test_an_sqlite_file_that_cannot_be_made_is_unavailable(tmp_path: object) -> None:
    store = Store("sqlite:////proc/no/such/folder/capture.db")
    with pytest.raises(StoreUnavailable):
        store.ensure_ready()
