"""Seed 004's BatchProcessingManager inserting through batchpilot.db into real databases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from batchpilot.adaptive import BatchProcessingManager
from batchpilot.db import Database

pytestmark = pytest.mark.timeout(60)

TABLE = "transform_molecules"
BAD_RECORD = 13  # its record violates NOT NULL when inserted
BAD_ITEM = 42  # processing any batch that contains it raises


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with Database(db_url, retry_delay=0.0) as database:
        metadata = sa.MetaData()
        sa.Table(
            TABLE,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("smiles", sa.Text, nullable=False),
            sa.Column("weight", sa.Float),
        )
        metadata.create_all(database.engine)
        yield database


def molecule_transform_function(items: list[int]) -> list[dict[str, Any]]:
    if BAD_ITEM in items:
        raise ValueError(f"cannot transform molecule {BAD_ITEM}")
    records: list[dict[str, Any]] = []
    for item in items:
        if item == BAD_RECORD:
            records.append({"smiles": None})
        elif item % 2:
            # Records with different keys are inserted by separate statements, so
            # without a transaction the rows before a failing record would stay.
            records.append({"smiles": f"C{item}"})
        else:
            records.append({"smiles": f"C{item}", "weight": float(item)})
    return records


def stored_smiles(db: Database) -> Counter[str]:
    with db.engine.connect() as connection:
        return Counter(connection.execute(sa.text(f"SELECT smiles FROM {TABLE}")).scalars())


@pytest.mark.parametrize("parallel_processing", [True, False])
def test_every_healthy_item_is_inserted_exactly_once(
    db: Database, parallel_processing: bool
) -> None:
    molecules = list(range(200))
    manager = BatchProcessingManager(
        db=db,
        max_workers=4,
        adaptive_batch_sizing=True,
        parallel_processing=parallel_processing,
    )

    results = manager.process_items(
        items=molecules,
        operation=TABLE,
        data_source="chembl",
        process_func=molecule_transform_function,
        initial_batch_size=50,
    )

    healthy = [item for item in molecules if item not in (BAD_RECORD, BAD_ITEM)]
    assert [record["smiles"] for record in results] == [f"C{item}" for item in healthy]
    assert stored_smiles(db) == Counter(f"C{item}" for item in healthy)  # no duplicates
    assert sorted(failure.index for failure in manager.failures) == [BAD_RECORD, BAD_ITEM]
    errors = {failure.index: failure.error for failure in manager.failures}
    assert isinstance(errors[BAD_RECORD], sa.exc.IntegrityError)
    assert isinstance(errors[BAD_ITEM], ValueError)

    stats = manager.get_stats()
    assert stats["total_items_processed"] == 200
    assert stats["total_duration"] > 0
    transactions = db.get_metrics()["transaction"]
    assert transactions["rows"] == len(healthy)  # committed rows: exactly the stored ones
    assert transactions["rollbacks"] >= 1  # the batches around the bad record


def test_a_batch_that_fails_to_insert_leaves_no_partial_rows(db: Database) -> None:
    manager = BatchProcessingManager(db=db, adaptive_batch_sizing=False, parallel_processing=False)
    inserts: list[str] = []

    @sa.event.listens_for(db.engine, "after_cursor_execute")
    def count_inserts(*args: Any) -> None:  # runs only for statements that succeeded
        if args[2].startswith("INSERT"):
            inserts.append(args[2])

    manager.process_items(
        items=[10, 11, 12, BAD_RECORD],
        operation=TABLE,
        process_func=molecule_transform_function,
        initial_batch_size=4,
    )

    # [10, 11, 12, 13]: 3 INSERTs succeed, 13's fails, all rolled back; bisection:
    # [10, 11]: 2 committed; [12, 13]: 1 succeeds, 13's fails, rolled back;
    # [12]: 1 committed; [13]: fails. 7 successful INSERTs, yet each row exactly once.
    assert len(inserts) == 7
    assert stored_smiles(db) == Counter({"C10": 1, "C11": 1, "C12": 1})
    assert [failure.index for failure in manager.failures] == [3]
    assert db.get_metrics()["batch_insert"]["error_types"] == {"IntegrityError": 3}
    assert db.get_metrics()["transaction"]["rollbacks"] == 3
