"""batchpilot.db against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchpilot.db import AsyncTransactionId, Database, TransactionId, is_transient_error
from batchpilot.errors import ClosedError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with Database(db_url, retry_delay=0.0) as database:
        database.create_table("molecules", {"name": str, "weight": float})
        yield database


def rows(db: Database, table: str = "molecules") -> list[tuple[Any, ...]]:
    """Committed rows, read over a separate connection."""
    with db.engine.connect() as connection:
        return [
            tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))
        ]


# -- inserting ---------------------------------------------------------------------------


def test_batch_insert_returns_ids_in_record_order_and_writes_the_rows(db: Database) -> None:
    first = db.batch_insert("molecules", [{"name": "water", "weight": 18.0}, {"name": "salt"}])
    second = db.batch_insert("molecules", [{"name": "sugar", "weight": 342.3}])

    assert first == [1, 2]
    assert second == [3]
    assert rows(db) == [(1, "water", 18.0), (2, "salt", None), (3, "sugar", 342.3)]


def test_records_with_different_keys_keep_their_order_and_column_defaults(db_url: str) -> None:
    with Database(db_url) as db:
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE tagged (id INTEGER PRIMARY KEY, name TEXT, "
                    "tag TEXT NOT NULL DEFAULT 'none')"
                )
            )
        ids = db.batch_insert(
            "tagged",
            [
                {"id": 10, "name": "a", "tag": "x"},
                {"id": 11, "name": "b"},
                {"id": 12, "name": "c"},
                {"id": 13, "tag": "y"},
            ],
        )
        assert ids == [10, 11, 12, 13]
        assert rows(db, "tagged") == [
            (10, "a", "x"),
            (11, "b", "none"),
            (12, "c", "none"),
            (13, None, "y"),
        ]


def test_composite_and_missing_primary_keys(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE pairs (a INTEGER, b INTEGER, PRIMARY KEY (a, b))"))
        connection.execute(sa.text("CREATE TABLE log (message TEXT)"))

    assert db.batch_insert("pairs", [{"a": 1, "b": 2}, {"a": 1, "b": 3}]) == [(1, 2), (1, 3)]
    assert db.batch_insert("log", [{"message": "hi"}, {"message": "there"}]) == [None, None]
    assert rows(db, "log") == [("hi",), ("there",)]


def test_ids_without_executemany_returning_fall_back_to_one_insert_per_record(
    sqlite_url: str,
) -> None:
    with Database(sqlite_url) as db:
        db.create_table("items", {"label": str})
        db.engine.dialect.insert_executemany_returning = False
        db.engine.dialect.insert_executemany_returning_sort_by_parameter_order = False

        assert db.batch_insert("items", [{"label": "a"}, {"label": "b"}]) == [1, 2]
        assert rows(db, "items") == [(1, "a"), (2, "b")]


def by_id(db: Database, table: str = "molecules") -> dict[Any, str]:
    with db.engine.connect() as connection:
        return {
            key: name for key, name in connection.execute(sa.text(f"SELECT id, name FROM {table}"))
        }


def test_ids_match_their_records_in_large_multi_statement_batches(db: Database) -> None:
    db.batch_insert("molecules", [{"name": "first"}])
    names = [f"m{i}" for i in range(2500)]  # several statements on either database

    ids = db.batch_insert("molecules", [{"name": name} for name in names])

    stored = by_id(db)
    assert [stored[i] for i in ids] == names
    assert len(set(ids)) == 2500


def test_generated_non_integer_keys_come_back_in_record_order(db_url: str) -> None:
    with Database(db_url) as db:
        random_text = {
            "sqlite": "lower(hex(randomblob(8)))",
            "postgresql": "md5(random()::text)",
        }[db.dialect]
        metadata = sa.MetaData()
        sa.Table(
            "coded",
            metadata,
            sa.Column("id", sa.Text, primary_key=True, server_default=sa.text(random_text)),
            sa.Column("name", sa.Text),
        )
        metadata.create_all(db.engine)
        names = [f"m{i}" for i in range(50)]

        ids = db.batch_insert("coded", [{"name": name} for name in names])

        stored = by_id(db, "coded")
        assert [stored[i] for i in ids] == names


def test_keys_given_for_some_records_only_still_map_in_order(sqlite_url: str) -> None:
    with Database(sqlite_url) as db:
        db.create_table("molecules", {"name": str})
        db.batch_insert("molecules", [{"id": 9, "name": "nine"}])

        ids = db.batch_insert(
            "molecules", [{"id": None, "name": "next"}, {"id": 5, "name": "five"}]
        )

        assert ids == [10, 5]
        assert by_id(db) == {9: "nine", 10: "next", 5: "five"}


def test_create_table_leaves_an_existing_table_alone(db: Database) -> None:
    db.batch_insert("molecules", [{"name": "water"}])
    db.create_table("molecules", {"other": int})
    assert rows(db) == [(1, "water", None)]


def test_parallel_transactions_from_many_threads_share_the_pool(db: Database) -> None:
    start = threading.Barrier(8)
    inserted: list[list[Any]] = []

    names: dict[Any, str] = {}

    def insert_batch(worker: int) -> None:
        batch = [f"w{worker}-{i}" for i in range(25)]
        start.wait()
        with db.transaction() as tx:
            ids = db.batch_insert("molecules", [{"name": name} for name in batch], tx)
        names.update(zip(ids, batch, strict=True))
        inserted.append(ids)

    threads = [threading.Thread(target=insert_batch, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    all_ids = sorted(i for ids in inserted for i in ids)
    assert all_ids == list(range(1, 201))
    assert by_id(db) == names  # every id names its own record
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# -- transactions --------------------------------------------------------------------------


def test_transaction_commits_all_batches_together(db: Database) -> None:
    with db.transaction() as tx:
        assert isinstance(tx, TransactionId)
        db.batch_insert("molecules", [{"name": "a"}, {"name": "b"}], transaction_id=tx)
        db.batch_insert("molecules", [{"name": "c"}], transaction_id=tx)
        assert rows(db) == []  # not visible to others before the commit
    assert [name for _, name, _ in rows(db)] == ["a", "b", "c"]


def test_an_exception_in_a_transaction_leaves_no_rows(db: Database) -> None:
    with pytest.raises(RuntimeError, match="processing failed"), db.transaction() as tx:
        db.batch_insert("molecules", [{"name": "a"}, {"name": "b"}], transaction_id=tx)
        raise RuntimeError("processing failed")

    assert rows(db) == []
    assert db.get_metrics()["transaction"]["rollbacks"] == 1
    assert db.get_metrics()["transaction"]["rows"] == 0


def test_a_failing_insert_rolls_back_the_earlier_batches_of_its_transaction(db: Database) -> None:
    db.batch_insert("molecules", [{"id": 7, "name": "existing"}])
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as tx:
        db.batch_insert("molecules", [{"name": "a"}], transaction_id=tx)
        db.batch_insert("molecules", [{"id": 7, "name": "duplicate"}], transaction_id=tx)

    assert rows(db) == [(7, "existing", None)]


def test_a_finished_transaction_id_is_rejected(db: Database) -> None:
    with db.transaction() as tx:
        pass
    with pytest.raises(ValueError, match="unknown transaction id"):
        db.batch_insert("molecules", [{"name": "late"}], transaction_id=tx)
    with pytest.raises(ValueError, match="unknown transaction id"):
        db.batch_insert("molecules", [{"name": "x"}], transaction_id=TransactionId("nope"))


def test_close_rolls_back_open_transactions(db: Database) -> None:
    with pytest.raises(ClosedError, match="rolled back"), db.transaction() as tx:
        db.batch_insert("molecules", [{"name": "a"}], transaction_id=tx)
        db.close()
    with pytest.raises(ClosedError):
        db.batch_insert("molecules", [{"name": "b"}])
    db.close()  # idempotent

    assert db.get_metrics()["transaction"]["rollbacks"] == 1
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with Database(str(db.engine.url.render_as_string(hide_password=False))) as reopened:
        assert rows(reopened) == []


# -- async -----------------------------------------------------------------------------------


async def batch_db_insert(db, table, records):  # type: ignore[no-untyped-def]
    # Seed 004, "Integration with Database Operations", verbatim.
    async with db.transaction_async() as tx_id:
        inserted_ids = await db.batch_insert(table=table, records=records, transaction_id=tx_id)
        return inserted_ids


@pytest.mark.asyncio
async def test_the_seed_async_example_inserts_atomically(db: Database) -> None:
    inserted_ids = await batch_db_insert(db, "molecules", [{"name": "a"}, {"name": "b"}])

    assert inserted_ids == [1, 2]
    assert rows(db) == [(1, "a", None), (2, "b", None)]


@pytest.mark.asyncio
async def test_async_transaction_rolls_back_on_exception(db: Database) -> None:
    with pytest.raises(KeyError):
        async with db.transaction_async() as tx_id:
            assert isinstance(tx_id, AsyncTransactionId)
            await db.batch_insert("molecules", [{"name": "a"}], transaction_id=tx_id)
            await db.abatch_insert("molecules", [{"name": "b"}], transaction_id=tx_id)
            raise KeyError("boom")

    assert rows(db) == []
    await db.abatch_insert("molecules", [{"name": "c"}])
    assert [name for _, name, _ in rows(db)] == ["c"]


# -- retries on real transient errors ---------------------------------------------------------


class LockedSqlite:
    """Another process-level writer holding the SQLite write lock until released."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.connection.execute("COMMIT")


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[str, Database, LockedSqlite]]:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    with Database(url) as setup:
        setup.create_table("molecules", {"name": str})
    lock = LockedSqlite(tmp_path / "locked.db")
    clock = FakeClock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            lock.release()
        clock.sleep(seconds)

    # timeout=0: SQLite reports "database is locked" at once instead of busy-waiting.
    db = Database(
        url,
        retry_delay=0.5,
        clock=clock,
        sleep=sleep,
        engine_options={"connect_args": {"timeout": 0}},
    )
    db.waits = waits  # type: ignore[attr-defined]
    yield url, db, lock
    db.close()
    lock.connection.close()


def test_a_locked_sqlite_database_is_retried_until_the_lock_is_released(
    locked_sqlite: tuple[str, Database, LockedSqlite],
) -> None:
    _, db, _ = locked_sqlite

    assert db.batch_insert("molecules", [{"name": "a"}]) == [1]

    assert db.waits == [0.5, 1.0]  # type: ignore[attr-defined]
    metrics = db.get_metrics()["batch_insert"]
    assert metrics["retries"] == 2
    assert metrics["errors"] == 0
    assert metrics["total_duration"] == 1.5  # the fake clock advanced only by the waits


def test_beginning_a_transaction_is_retried_while_the_database_is_locked(
    locked_sqlite: tuple[str, Database, LockedSqlite],
) -> None:
    _, db, _ = locked_sqlite

    with db.transaction() as tx:
        assert db.batch_insert("molecules", [{"name": "a"}], transaction_id=tx) == [1]

    assert db.get_metrics()["transaction"]["retries"] == 2
    assert rows(db) == [(1, "a")]


def test_retries_give_up_after_max_retries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    with Database(url) as setup:
        setup.create_table("molecules", {"name": str})
    lock = LockedSqlite(tmp_path / "locked.db")
    waits: list[float] = []
    with Database(
        url,
        max_retries=3,
        retry_delay=0.1,
        sleep=waits.append,
        engine_options={"connect_args": {"timeout": 0}},
    ) as db:
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            db.batch_insert("molecules", [{"name": "a"}])

        assert waits == [0.1, 0.2, 0.4]
        metrics = db.get_metrics()["batch_insert"]
        assert (metrics["calls"], metrics["errors"], metrics["retries"]) == (1, 1, 3)
        assert metrics["error_types"] == {"OperationalError": 1}
    lock.connection.close()


def test_permanent_errors_are_not_retried(db_url: str) -> None:
    waits: list[float] = []
    with Database(db_url, sleep=waits.append) as db:
        db.create_table("molecules", {"name": str})
        db.batch_insert("molecules", [{"id": 1, "name": "a"}])
        with pytest.raises(sa.exc.IntegrityError) as caught:
            db.batch_insert("molecules", [{"id": 1, "name": "again"}])

    assert not is_transient_error(caught.value)
    assert waits == []
    assert db.get_metrics()["batch_insert"]["retries"] == 0


def test_is_transient_becomes_the_retry_policys_predicate(sqlite_url: str) -> None:
    waits: list[float] = []
    seen: list[BaseException] = []

    def integrity_errors_too(error: BaseException) -> bool:
        seen.append(error)
        return isinstance(error, sa.exc.IntegrityError)

    with Database(
        sqlite_url, max_retries=2, sleep=waits.append, is_transient=integrity_errors_too
    ) as db:
        assert db.retry_policy.retry_on is integrity_errors_too
        db.create_table("molecules", {"name": str})
        db.batch_insert("molecules", [{"id": 1, "name": "a"}])
        with pytest.raises(sa.exc.IntegrityError):
            db.batch_insert("molecules", [{"id": 1, "name": "again"}])

    assert waits == [0.1, 0.2]
    assert len(seen) == 3 and all(isinstance(e, sa.exc.IntegrityError) for e in seen)
    assert db.get_metrics()["batch_insert"]["retries"] == 2


def backend_pid(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres_url: str, pid: int) -> None:
    import psycopg

    conninfo = sa.make_url(postgres_url)
    with psycopg.connect(
        host=conninfo.query["host"], port=conninfo.query["port"], user="postgres", autocommit=True
    ) as admin:
        # With a timeout, PostgreSQL waits until the backend has really exited.
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)


def test_a_terminated_postgres_connection_is_retried_on_a_new_one(postgres_url: str) -> None:
    waits: list[float] = []
    with Database(postgres_url, pool_size=1, pool_pre_ping=False, sleep=waits.append) as db:
        db.create_table("molecules", {"name": str})
        old_pid = backend_pid(db)
        terminate(postgres_url, old_pid)

        assert db.batch_insert("molecules", [{"name": "a"}]) == [1]

        assert waits == [0.1]
        assert db.get_metrics()["batch_insert"]["retries"] == 1
        assert backend_pid(db) != old_pid
        assert rows(db) == [(1, "a")]


def test_pre_ping_replaces_a_terminated_connection_without_an_error(postgres_url: str) -> None:
    with Database(postgres_url, pool_size=1) as db:
        db.create_table("molecules", {"name": str})
        terminate(postgres_url, backend_pid(db))
        with db.transaction() as tx:
            assert db.batch_insert("molecules", [{"name": "a"}], transaction_id=tx) == [1]
        assert db.get_metrics()["transaction"]["errors"] == 0


def test_a_connection_lost_inside_a_transaction_fails_it_without_partial_rows(
    postgres_url: str,
) -> None:
    waits: list[float] = []
    with Database(postgres_url, pool_size=1, sleep=waits.append) as db:
        db.create_table("molecules", {"name": str})
        with pytest.raises(sa.exc.OperationalError), db.transaction() as tx:
            db.batch_insert("molecules", [{"name": "a"}], transaction_id=tx)
            terminate(postgres_url, backend_pid_of_transaction(db, tx))
            db.batch_insert("molecules", [{"name": "b"}], transaction_id=tx)

        assert waits == []  # a broken transaction is not retried statement by statement
        assert rows(db) == []
        assert db.get_metrics()["transaction"]["rollbacks"] == 1


def backend_pid_of_transaction(db: Database, tx: str) -> int:
    # The one pooled connection is busy with the transaction; find it from outside.
    with sa.create_engine(db.engine.url, poolclass=sa.NullPool).connect() as other:
        return int(
            other.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND datname = current_database() AND state LIKE 'idle in transaction%'"
                )
            ).scalar_one()
        )


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_count_calls_rows_errors_and_durations(db_url: str) -> None:
    clock = FakeClock()
    with Database(db_url, clock=clock) as db:
        db.create_table("molecules", {"name": str})
        db.batch_insert("molecules", [{"name": "a"}, {"name": "b"}])
        with db.transaction() as tx:
            db.batch_insert("molecules", [{"name": "c"}], transaction_id=tx)
            clock.advance(2.0)
        with pytest.raises(ValueError):
            db.batch_insert("molecules", [{"colour": "red"}])

        metrics = db.get_metrics()

    assert metrics["create_table"]["calls"] == 1
    assert metrics["batch_insert"] == {
        "calls": 3,
        "rows": 3,
        "duplicates": 0,
        "errors": 1,
        "retries": 0,
        "rollbacks": 0,
        "total_duration": 0.0,
        "avg_duration": 0.0,
        "max_duration": 0.0,
        "error_types": {"ValueError": 1},
    }
    transaction = metrics["transaction"]
    assert (transaction["calls"], transaction["rows"], transaction["rollbacks"]) == (1, 1, 0)
    assert transaction["total_duration"] == 2.0


# -- bad input ---------------------------------------------------------------------------------


def test_a_missing_table_is_a_clear_error(db: Database) -> None:
    with pytest.raises(ValueError, match=r"table .proteins. does not exist.*create_table"):
        db.batch_insert("proteins", [{"name": "a"}])
    with pytest.raises(ValueError, match="does not exist"):
        db.batch_insert("proteins", [])


def test_an_unknown_column_is_a_clear_error(db: Database) -> None:
    with pytest.raises(ValueError, match=r"no column\(s\) \['colour'\]"):
        db.batch_insert("molecules", [{"name": "a"}, {"colour": "red"}])
    assert rows(db) == []


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"name": "a"}, "records must be a list of dicts.*got dict"),
        ("name", "records must be a list of dicts.*got str"),
        (42, "records must be a list of dicts.*got int"),
        ([{"name": "a"}, ("b",)], "record 1 is a tuple"),
    ],
)
def test_records_that_are_not_dicts_are_a_type_error(
    db: Database, records: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        db.batch_insert("molecules", records)
    assert rows(db) == []


def test_an_empty_batch_inserts_nothing_and_returns_no_ids(db: Database) -> None:
    assert db.batch_insert("molecules", []) == []
    with db.transaction() as tx:
        assert db.batch_insert("molecules", iter([]), transaction_id=tx) == []
    assert rows(db) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "expected a database URL"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
    ],
)
def test_bad_urls_are_rejected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Database(url)


def test_create_table_rejects_unknown_column_types(sqlite_url: str) -> None:
    with Database(sqlite_url) as db, pytest.raises(TypeError, match="column 'when'"):
        db.create_table("events", {"when": object})


def test_repr_shows_live_state(sqlite_url: str) -> None:
    with Database(sqlite_url) as db, db.transaction():
        assert "connections_in_use=1, open_transactions=1, closed=False" in repr(db)
    assert "closed=True" in repr(db)


def test_a_postgresql_url_without_a_driver_uses_psycopg(postgres_url: str) -> None:
    with Database(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        assert db.engine.url.drivername == "postgresql+psycopg"
        db.create_table("molecules", {"name": str})
        assert db.batch_insert("molecules", [{"name": "a"}]) == [1]


@pytest.mark.asyncio
async def test_cancelling_transaction_async_while_it_begins_leaks_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    with Database(url) as setup:
        setup.create_table("molecules", {"name": str})
    lock = LockedSqlite(tmp_path / "locked.db")
    waiting, resume = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:
        waiting.set()
        resume.wait(10)
        lock.release()

    with Database(url, sleep=sleep, engine_options={"connect_args": {"timeout": 0}}) as db:

        async def open_transaction() -> None:
            async with db.transaction_async():
                raise AssertionError("the body must not run after cancellation")

        task = asyncio.create_task(open_transaction())
        await asyncio.to_thread(waiting.wait, 10)  # the begin is retrying in its thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        resume.set()
        await asyncio.get_running_loop().shutdown_default_executor()
        for _ in range(100):  # let the loop run the begin's completion callbacks
            if db.get_metrics().get("transaction", {}).get("rollbacks"):
                break
            await asyncio.sleep(0)

        assert "connections_in_use=0, open_transactions=0" in repr(db)
        assert db.get_metrics()["transaction"]["rollbacks"] == 1
    lock.connection.close()
