"""The capture store against both backends: SQLite, and a real PostgreSQL server the session starts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa

from app.capture.records import Captured, Label, Reference, SeenVersion, rows
from app.capture.schema import REFERENCE_COLUMNS, SCHEMA_VERSION, schema
from app.capture.store import ROWS_PER_INSERT, Recent, Store
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


def write(store: Store, *items: Captured, reference: Reference | None = None) -> None:
    store.insert(
        rows(items),
        [SeenVersion(item.model, item.version, CLASSES, item.at, reference) for item in items],
    )


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    made = Store(store_url)
    yield made
    made.close()


def test_a_captured_batch_is_one_row_per_record_with_its_features(store: Store) -> None:
    write(store, captured("r1", [0, 2]))
    with store.engine.connect() as connection:
        found = connection.execute(sa.text("SELECT batch_row, predicted, island, body_mass_g, sex, shadow, confidence "
                                           "FROM predictions ORDER BY batch_row")).all()  # fmt: skip
    assert [tuple(row) for row in found] == [
        (0, "Adelie", "Torgersen", 3750.0, "Male", False, None),
        (1, "Gentoo", "Torgersen", 3750.0, "Male", False, None),
    ]


def test_a_batch_beyond_one_insert_statement_keeps_every_row_in_order(store: Store) -> None:
    count = 2 * ROWS_PER_INSERT + 5  # two full VALUES lists, then five rows one at a time
    write(store, captured("r1", [row % 3 for row in range(count)]))
    store.add_labels([Label("r1", row, CLASSES[row % 2]) for row in range(count)], 2000.0)
    with store.engine.connect() as connection:
        found = connection.execute(sa.text("SELECT batch_row, predicted FROM predictions ORDER BY id")).all()
        labelled = connection.execute(sa.text("SELECT batch_row, label FROM labels ORDER BY batch_row")).all()
    assert [tuple(row) for row in found] == [(row, CLASSES[row % 3]) for row in range(count)]
    assert [tuple(row) for row in labelled] == [(row, CLASSES[row % 2]) for row in range(count)]


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


def test_shadow_predictions_stay_out_of_the_answering_figures(store: Store) -> None:
    shadow = captured("s", [1])
    shadow.shadow = True
    write(store, captured("s", [0]), shadow)
    store.add_labels([Label("s", 0, "Adelie")], 2000.0)
    assert [joined.predicted for joined in store.window("m", "v1", 10)] == ["Adelie"]


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
    assert dropped == 1 + 2
    with store.engine.connect() as connection:
        left = connection.execute(sa.text("SELECT DISTINCT request_id FROM predictions ORDER BY request_id")).scalars()
        assert list(left) == ["r1", "r2"]
        assert connection.execute(sa.text("SELECT COUNT(*) FROM labels")).scalar() == 0


def test_a_versions_reference_is_the_one_first_stored(store: Store) -> None:
    write(store, captured("a", [0]), reference=Reference(0.97, 0.95, 0.99))
    write(store, captured("b", [0], at=2000.0), reference=Reference(0.5, 0.4, 0.6))
    write(store, captured("c", [0], version="bare"))
    found = {row.version: row for row in store.versions_of(["m"], 5)}
    assert found["v1"].reference == Reference(0.97, 0.95, 0.99) and found["v1"].last_at == 2000.0
    assert found["bare"].reference is None


def test_the_estimate_is_the_mean_confidence_of_the_recent_predictions(store: Store) -> None:
    # The confidences as the writer fills them (app/calibration.py), here set by hand.
    write(store, *(captured(f"r{i}", [0]) for i in range(5)), captured("unrated", [0], version="v2"))
    with store.engine.begin() as connection:
        for index, value in enumerate([0.2, 0.6, 0.8, 0.9, 1.0]):
            connection.execute(
                sa.text("UPDATE predictions SET confidence = :value WHERE request_id = :id"),
                {"value": value, "id": f"r{index}"},
            )
    store.add_labels([Label("r4", 0, "Adelie")], 2000.0)
    newest, every = store.recent("m", "v1", 3), store.recent("m", "v1", 10)
    assert (newest.labelled, newest.total, newest.estimated_records) == (1, 3, 3)  # r4, r3, r2
    assert newest.estimated == pytest.approx(0.9)
    assert (every.labelled, every.total, every.estimated_records) == (1, 5, 5)
    assert every.estimated == pytest.approx(0.7)
    assert store.recent("m", "v2", 10) == Recent(0, 1, None, 0)


def test_a_store_of_schema_1_is_upgraded_and_keeps_its_rows(store: Store, store_url: str) -> None:
    write(store, captured("old", [0]))
    # Schema 1, as the previous release made it: model_versions without the reference columns.
    with store.engine.begin() as connection:
        for name in REFERENCE_COLUMNS:
            connection.execute(sa.text(f"ALTER TABLE model_versions DROP COLUMN {name}"))  # a test's fixed names
        connection.execute(schema.update().values(version=1))
    store.close()
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
