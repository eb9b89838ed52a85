"""`Database.bulk_writer`: a bulk job's results stored exactly once, on SQLite and PostgreSQL.

The SIGKILL test is tests/integration/test_bulk_exactly_once.py; here the crash
window is made by hand: a chunk written before the job file knew it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchpilot.bulk import ItemFailure, map_batches
from batchpilot.db import Database
from batchpilot.errors import BatchFailedError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with Database(db_url) as database:
        database.create_table("squares", {"item_id": int, "result": int}, primary_key="item_id")
        yield database


def rows(db: Database, table: str = "squares") -> list[tuple[Any, ...]]:
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table}"))]


def square(numbers: list[int]) -> list[int]:
    return [n * n for n in numbers]


def test_each_item_is_stored_under_its_input_index(db: Database, tmp_path: Path) -> None:
    writer = db.bulk_writer("squares", square)
    run = map_batches(writer, enumerate(range(10, 40)), batch_size=7, job=str(tmp_path / "j"))
    assert list(run) == list(range(30))  # the run yields each item's id
    assert sorted(rows(db)) == [(i, (10 + i) ** 2) for i in range(30)]


def test_a_chunk_committed_before_the_crash_is_not_stored_twice(
    db: Database, tmp_path: Path
) -> None:
    writer = db.bulk_writer("squares", square)
    # The crash window: rows 7..13 committed, the process killed before the job
    # file recorded their chunk. The rerun runs that chunk again.
    assert writer([(i, 10 + i) for i in range(7, 14)]) == list(range(7, 14))
    run = map_batches(writer, enumerate(range(10, 40)), batch_size=7, job=str(tmp_path / "j"))
    assert list(run) == list(range(30))
    assert run.failures == []
    assert sorted(rows(db)) == [(i, (10 + i) ** 2) for i in range(30)]
    assert db.get_metrics()["insert_idempotent"]["rows"] == 30  # 7 + the 23 new ones


def test_a_resumed_job_writes_only_the_chunks_it_runs(db: Database, tmp_path: Path) -> None:
    calls: list[list[int]] = []

    def counted(numbers: list[int]) -> list[int]:
        calls.append(numbers)
        return square(numbers)

    job = str(tmp_path / "j")
    writer = db.bulk_writer("squares", counted)
    assert list(map_batches(writer, enumerate(range(20)), batch_size=5, job=job)) == list(range(20))
    assert list(map_batches(writer, enumerate(range(20)), batch_size=5, job=job)) == list(range(20))
    assert len(calls) == 4  # the rerun took every chunk from the job file
    assert len(rows(db)) == 20


def test_key_of_takes_the_id_from_a_field_of_each_item(db_url: str, tmp_path: Path) -> None:
    with Database(db_url) as db:
        db.create_table("people", {"name": str, "length": int}, primary_key="name")
        writer = db.bulk_writer(
            "people",
            lambda people: [len(person["name"]) for person in people],
            key="name",
            key_of=lambda person: person["name"],
            to_record=lambda person, length: {"length": length},
        )
        people = [{"name": name} for name in ["ada", "grace", "barbara", "ada"]]
        assert list(map_batches(writer, people, batch_size=3)) == ["ada", "grace", "barbara", "ada"]
        # The second "ada" is skipped like a replay: ids must be unique.
        assert sorted(rows(db, "people")) == [("ada", 3), ("barbara", 7), ("grace", 5)]


def test_without_fn_the_items_are_the_records(db: Database) -> None:
    records = [{"result": n} for n in range(5)]
    assert list(map_batches(db.bulk_writer("squares"), enumerate(records))) == list(range(5))
    assert sorted(rows(db)) == [(n, n) for n in range(5)]


def test_a_result_that_is_not_a_dict_goes_into_the_result_column(db: Database) -> None:
    writer = db.bulk_writer("squares", square)
    writer([(0, 3), (1, 4)])
    assert sorted(rows(db)) == [(0, 9), (1, 16)]


def test_a_dict_of_columns_result_gives_one_record_per_item(db: Database) -> None:
    writer = db.bulk_writer("squares", lambda numbers: {"result": square(numbers)})
    assert writer([(0, 3), (1, 4)]) == [0, 1]
    assert sorted(rows(db)) == [(0, 9), (1, 16)]


def test_a_failing_item_has_no_row_and_the_others_are_stored_once(db: Database) -> None:
    def no_sevens(numbers: list[int]) -> list[int]:
        if 7 in numbers:
            raise ValueError("seven")
        return square(numbers)

    results = list(
        map_batches(db.bulk_writer("squares", no_sevens), enumerate(range(20)), batch_size=8)
    )
    failures = [value for value in results if isinstance(value, ItemFailure)]
    assert [(f.index, type(f.error)) for f in failures] == [(7, ValueError)]
    assert sorted(rows(db)) == [(i, i * i) for i in range(20) if i != 7]


def test_items_that_are_not_index_pairs_fail_with_a_clear_error(db: Database) -> None:
    results = list(map_batches(db.bulk_writer("squares", square), [1, 2], batch_size=2))
    assert all(isinstance(value, ItemFailure) for value in results)
    assert "pass enumerate(items) to map_batches, or give key_of" in str(results[0].error)
    assert rows(db) == []


def test_a_wrong_number_of_results_fails_the_items_and_stores_nothing(db: Database) -> None:
    writer = db.bulk_writer("squares", lambda numbers: numbers[:1])
    with pytest.raises(BatchFailedError, match="returned 1 results, expected 2"):
        writer([(0, 3), (1, 4)])
    assert rows(db) == []


def test_bad_arguments_are_refused_before_any_work(db: Database) -> None:
    async def async_square(numbers: list[int]) -> list[int]:
        return square(numbers)

    with pytest.raises(TypeError, match="not async def"):
        db.bulk_writer("squares", async_square)
    with pytest.raises(TypeError, match="fn must be a batch function"):
        db.bulk_writer("squares", "square")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be picklable"):
        map_batches(db.bulk_writer("squares", square), enumerate(range(3)), executor="processes")


# -- a table that cannot take the rows: at most one chunk of model work ---------------


class CountingModel:
    """A model that counts its calls and the items it computed."""

    def __init__(self) -> None:
        self.calls = 0
        self.items = 0
        self.lock = threading.Lock()

    def __call__(self, numbers: list[int]) -> list[int]:
        with self.lock:
            self.calls += 1
            self.items += len(numbers)
        return square(numbers)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (None, "does not exist"),
        ({"item_id": int, "result": int}, "neither its primary key nor unique"),
        ({"result": int}, r"no key column\(s\) \['item_id'\]"),
    ],
    ids=["no table", "key not unique", "no key column"],
)
def test_a_table_without_a_unique_key_is_refused_before_any_work(
    db_url: str, columns: dict[str, type] | None, message: str
) -> None:
    model = CountingModel()
    with Database(db_url) as db:
        if columns is not None:
            db.create_table("scores", columns)  # the primary key is a new "id" column
        with pytest.raises(ValueError, match=message):
            db.bulk_writer("scores", model)
    assert model.calls == 0


@pytest.mark.parametrize("batch_size", ["auto", 8])
def test_a_table_lacking_a_column_costs_one_chunk_of_model_work(
    db_url: str, batch_size: int | str
) -> None:
    model = CountingModel()
    with Database(db_url) as db:
        db.create_table("scores", {"item_id": int, "score": int}, primary_key="item_id")
        writer = db.bulk_writer("scores", model)  # its rows have a "result" column
        run = map_batches(writer, enumerate(range(100)), batch_size=batch_size, workers=4)
        results = list(run)
        assert len(rows(db, "scores")) == 0
    assert all(isinstance(value, ItemFailure) for value in results)
    errors = {str(value.error) for value in results}
    assert all("table 'scores' has no column(s) ['result']" in error for error in errors)
    first_chunk = 1 if batch_size == "auto" else batch_size
    assert (model.calls, model.items) == (1, first_chunk)


def test_after_rows_went_in_a_stray_column_fails_only_its_item(db: Database) -> None:
    def stray(numbers: list[int]) -> list[dict[str, int]]:
        return [{"result": n, "stray": 1} if n == 5 else {"result": n} for n in numbers]

    results = list(map_batches(db.bulk_writer("squares", stray), enumerate(range(8)), batch_size=4))
    failures = [value for value in results if isinstance(value, ItemFailure)]
    assert [(f.index, type(f.error)) for f in failures] == [(5, ValueError)]
    assert sorted(rows(db)) == [(i, i) for i in range(8) if i != 5]


def test_a_key_repeated_within_one_chunk_is_counted_and_logged(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Database(db_url) as db:
        db.create_table("people", {"name": str, "length": int}, primary_key="name")
        writer = db.bulk_writer(
            "people",
            lambda people: [len(person) for person in people],
            key="name",
            key_of=lambda person: person,
            to_record=lambda person, length: {"length": length},
        )
        with caplog.at_level(logging.WARNING, logger="batchpilot.db"):
            assert writer(["ada", "grace", "ada", "ada"]) == ["ada", "grace", "ada", "ada"]
        assert sorted(rows(db, "people")) == [("ada", 3), ("grace", 5)]
        assert db.get_metrics()["insert_idempotent"]["duplicates"] == 2
    [warning] = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "dropped 2 record(s)" in warning and "'ada'" in warning and "people" in warning
