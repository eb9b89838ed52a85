"""`Database.statistics()`: the shared statistics vocabulary, and `get_metrics()` as its view."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from batchpilot._core.statistics import Statistics
from batchpilot.db import Database, DatabaseStatistics, OperationStatistics
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(60)

METRIC_KEYS = {
    "calls",
    "rows",
    "duplicates",
    "errors",
    "retries",
    "rollbacks",
    "total_duration",
    "avg_duration",
    "max_duration",
    "error_types",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


@pytest.fixture
def db(db_url: str, clock: FakeClock) -> Iterator[Database]:
    with Database(db_url, clock=clock) as database:
        database.create_table("scores", {"name": str, "score": int}, primary_key="name")
        yield database


def test_a_fresh_database_has_counted_nothing(db: Database) -> None:
    stats = db.statistics()
    assert isinstance(stats, DatabaseStatistics)
    assert isinstance(stats, Statistics)
    assert (stats.batches, stats.items, stats.succeeded, stats.failed) == (0, 0, 0, 0)
    assert (stats.current_batch_size, stats.queue_depth, stats.rate) == (0, 0, 0.0)
    assert stats.name == ""
    assert stats.dialect == db.dialect
    assert stats.open_transactions == 0
    assert stats.connections_in_use == 0
    assert stats.closed is False
    assert set(stats.operations) == {"create_table"}


def test_the_snapshot_is_frozen_and_does_not_follow_later_work(db: Database) -> None:
    before = db.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.batches = 5  # type: ignore[misc]
    db.batch_insert("scores", [{"name": "a", "score": 1}])
    assert before.batches == 0
    assert db.statistics().batches == 1


def test_insert_calls_are_batches_and_their_records_items(db: Database, clock: FakeClock) -> None:
    db.batch_insert("scores", [{"name": "a", "score": 1}, {"name": "b", "score": 2}])
    # One record already stored (a), one repeated within the call (c): 4 records given.
    records = [{"name": n, "score": 3} for n in ("a", "c", "c", "d")]
    assert db.insert_idempotent("scores", records, "name") == ["c", "d"]
    with pytest.raises(ValueError, match="no column"):
        db.batch_insert("scores", [{"name": "e", "nope": 1}, {"name": "f", "nope": 2}])
    clock.advance(4.0)

    stats = db.statistics()
    assert stats.batches == 3
    assert stats.items == 8
    assert stats.succeeded == 6
    assert stats.failed == 2
    assert stats.rows == 4
    assert stats.duplicates == 1
    assert stats.rate == pytest.approx(8 / 4.0)
    assert stats.operations["batch_insert"].calls == 2
    assert stats.operations["batch_insert"].errors == 1
    assert stats.operations["insert_idempotent"].rows == 2


def test_transactions_count_open_and_rolled_back(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as tx:
        db.batch_insert("scores", [{"name": "a", "score": 1}], tx)
        assert db.statistics().open_transactions == 1
        assert db.statistics().connections_in_use == 1
        raise RuntimeError("abandon")
    stats = db.statistics()
    assert stats.open_transactions == 0
    assert stats.rollbacks == 1
    assert stats.operations["transaction"].rollbacks == 1
    assert stats.operations["transaction"].rows == 0
    db.close()
    assert db.statistics().closed is True


def test_get_metrics_is_the_per_operation_view_with_every_documented_key(db: Database) -> None:
    db.batch_insert("scores", [{"name": "a", "score": 1}])
    db.insert_idempotent("scores", [{"name": "a", "score": 1}], "name")
    with db.transaction() as tx:
        db.batch_insert("scores", [{"name": "b", "score": 2}], tx)

    metrics = db.get_metrics()
    operations = db.statistics().operations
    assert set(metrics) == {"create_table", "batch_insert", "insert_idempotent", "transaction"}
    assert metrics == {name: op.as_dict() for name, op in operations.items()}
    for name, values in metrics.items():
        assert set(values) == METRIC_KEYS, name
        assert isinstance(operations[name], OperationStatistics)
    assert metrics["transaction"]["rows"] == 1
    assert db.statistics().as_dict()["operations"]["batch_insert"] == metrics["batch_insert"]
