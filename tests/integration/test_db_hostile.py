"""batchpilot.db under hostile conditions: exhausted rowids, locks, bad arguments, replays."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchpilot.buffer import BatchStateManager, BufferedEntry
from batchpilot.db import Database
from batchpilot.errors import ConfigError

pytestmark = pytest.mark.timeout(60)


def names_by_id(db: Database, table: str) -> dict[int, str]:
    with db.engine.connect() as connection:
        return dict(connection.execute(sa.text(f"SELECT id, name FROM {table}")).all())


# -- ids in record order once SQLite picks random rowids ---------------------------------


def test_ids_match_their_records_after_the_largest_rowid_is_taken(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        db.create_table("molecules", {"name": str})
        assert db.batch_insert("molecules", [{"id": 2**63 - 1, "name": "last"}]) == [2**63 - 1]
        records = [{"name": f"n{i}"} for i in range(60)]
        ids = db.batch_insert("molecules", records)
        stored = names_by_id(db, "molecules")
    assert len(set(ids)) == 60
    assert [stored[row_id] for row_id in ids] == [record["name"] for record in records]


def test_ids_near_the_largest_rowid_stay_in_order(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        db.create_table("molecules", {"name": str})
        db.batch_insert("molecules", [{"id": 2**63 - 10, "name": "near"}])
        ids = db.batch_insert("molecules", [{"name": f"n{i}"} for i in range(20)])
        stored = names_by_id(db, "molecules")
    assert [stored[row_id] for row_id in ids] == [f"n{i}" for i in range(20)]


# -- a locked SQLite database: the configured waits, attempt by attempt ------------------


def test_a_locked_database_waits_the_configured_busy_timeout_per_attempt(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    with Database(url) as setup:
        setup.create_table("molecules", {"name": str})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    holder.execute("INSERT INTO molecules (name) VALUES ('held')")
    waits: list[float] = []
    try:
        with Database(
            url, max_retries=2, retry_delay=0.01, sqlite_busy_timeout=0.05, sleep=waits.append
        ) as db:
            with db.engine.connect() as connection:
                busy_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                db.batch_insert("molecules", [{"name": "a"}])
            elapsed = time.monotonic() - started
            metrics = db.get_metrics()["batch_insert"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert busy_ms == 50  # each attempt's wait inside the driver
    # the docs' arithmetic, measured: 3 attempts x 50 ms in the driver (back-off not slept);
    # the driver's 5 s default would take 15 s
    assert 3 * 0.05 <= elapsed < 3.0
    assert waits == [0.01, 0.02]  # the back-off between the 3 attempts
    assert (metrics["retries"], metrics["errors"]) == (2, 1)


def test_the_default_busy_timeout_is_the_documented_five_seconds(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        assert db.sqlite_busy_timeout == 5.0
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert list(db.retry_policy.delays()) == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pool_size", True),
        ("pool_size", 2.5),
        ("pool_size", 0),
        ("max_overflow", -1),
        ("pool_timeout", float("nan")),
        ("sqlite_busy_timeout", float("inf")),
        ("sqlite_busy_timeout", "5"),
        ("max_retries", 2.5),
        ("retry_delay", float("nan")),
    ],
)
def test_bad_options_are_config_errors_naming_them(
    sqlite_url: str, option: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=option):
        Database(sqlite_url, **{option: value})  # type: ignore[arg-type]


# -- idempotent inserts and the buffer sink ----------------------------------------------


@pytest.fixture
def events(db_url: str) -> Any:
    with Database(db_url) as db:
        db.create_table("events", {"entry_id": str, "n": int, "tag": str}, primary_key="entry_id")
        yield db


def stored(db: Database) -> list[tuple[Any, ...]]:
    with db.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(sa.text("SELECT entry_id, n FROM events ORDER BY n"))
        ]


def test_insert_idempotent_skips_records_already_stored(events: Database) -> None:
    first = [{"entry_id": f"e{n}", "n": n} for n in range(5)]
    assert events.insert_idempotent("events", first, key="entry_id") == [f"e{n}" for n in range(5)]
    replay = [{"entry_id": f"e{n}", "n": n} for n in range(3, 8)]
    assert events.insert_idempotent("events", replay, key="entry_id") == ["e5", "e6", "e7"]
    assert events.insert_idempotent("events", replay, key="entry_id") == []
    assert stored(events) == [(f"e{n}", n) for n in range(8)]
    assert events.get_metrics()["insert_idempotent"]["rows"] == 8


def test_insert_idempotent_joins_a_transaction(events: Database) -> None:
    with pytest.raises(KeyError), events.transaction() as tx:
        events.insert_idempotent("events", [{"entry_id": "a", "n": 1}], "entry_id", tx)
        raise KeyError("boom")
    assert stored(events) == []


def test_insert_idempotent_needs_the_key_in_every_record(events: Database) -> None:
    with pytest.raises(ValueError, match="record 1 has no value for the key"):
        events.insert_idempotent("events", [{"entry_id": "a", "n": 1}, {"n": 2}], "entry_id")
    with pytest.raises(ValueError, match="neither its primary key nor unique"):
        events.insert_idempotent("events", [{"entry_id": "a", "n": 1}], "n")


def test_a_buffer_flushing_twice_through_the_sink_stores_each_entry_once(
    events: Database, tmp_path: Path
) -> None:
    sink = events.sink("events", to_record=lambda item: {"n": item.entry["n"]})
    batch = [BufferedEntry({"n": n}, "src", f"e{n}", 0, 0.0, 0.0) for n in range(4)]
    assert sink(batch) == ["e0", "e1", "e2", "e3"]
    assert sink(batch) == []  # a replay after a crash
    journal = tmp_path / "j.db"
    with BatchStateManager(
        flush_callback=sink, journal_path=journal, memory_reader=lambda: 10.0
    ) as manager:
        for n in range(2, 6):  # e2, e3 were delivered before "the crash"
            manager.queue_entry({"n": n}, "src", f"e{n}")
    assert stored(events) == [(f"e{n}", n) for n in range(6)]


def test_the_default_record_is_the_entry_dict(events: Database) -> None:
    sink = events.sink("events")
    sink([BufferedEntry({"n": 7, "tag": "x"}, "src", "e7", 0, 0.0, 0.0)])
    assert stored(events) == [("e7", 7)]
