"""The database sink on real SQLite and real PostgreSQL: each row once, keyed on its id."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest
import sqlalchemy as sa

from batchpilot import sinks
from batchpilot.db import Database
from batchpilot.errors import ClosedError, ConfigError
from batchpilot.sinks import PartInfo, Sink


def stored(url: str, table: str = "scores") -> list[tuple[int, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT id, label FROM {table} ORDER BY id"))
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


@pytest.fixture
def scores(db_url: str) -> str:
    """``db_url`` with a table ``scores(id primary key, label)``."""
    with Database(db_url) as db:
        db.create_table("scores", {"id": int, "label": str}, primary_key="id")
    return db_url


def test_a_redone_partition_stores_each_row_once(scores: str) -> None:
    sink = pickle.loads(pickle.dumps(sinks.database(scores, "scores", key="id")))
    assert isinstance(sink, Sink)
    sink.prepare(resume=False)
    first = sink.open_part(4)
    first.write(pa.table({"id": [1, 2], "label": ["a", "b"]}))
    first.abort()  # the partition failed after its first batch: that batch is stored

    redo = sink.open_part(4)
    redo.write(pa.table({"id": [1, 2], "label": ["a", "b"]}))
    redo.write(pa.table({"id": [3], "label": ["c"]}))
    assert redo.commit() == PartInfo(4, None, 3)
    sink.finish([PartInfo(4, None, 3)])
    assert stored(scores) == [(1, "a"), (2, "b"), (3, "c")]
    with pytest.raises(ClosedError, match="committed"):
        redo.write(pa.table({"id": [9], "label": ["z"]}))


def test_prepare_checks_the_table_and_its_unique_key(db_url: str) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        sinks.database(db_url, "nowhere", key="id").prepare(resume=False)
    with Database(db_url) as db:
        db.create_table("loose", {"id": int, "label": str}, primary_key="row")
    with pytest.raises(ValueError, match="neither its primary key nor unique"):
        sinks.database(db_url, "loose", key="id").prepare(resume=True)


def test_a_row_without_its_key_fails_the_write(scores: str) -> None:
    part = sinks.database(scores, "scores", key="id").open_part(0)
    with pytest.raises(ValueError, match="no value for the key"):
        part.write(pa.table({"id": [1, None], "label": ["a", "b"]}))
    part.abort()
    assert stored(scores) == []


def test_a_database_object_is_used_in_its_process_and_shipped_as_its_url(
    sqlite_url: str,
) -> None:
    with Database(sqlite_url) as db:
        db.create_table("scores", {"id": int, "label": str}, primary_key="id")
        sink = sinks.database(db, "scores", key="id")
        part = sink.open_part(0)
        part.write(pa.table({"id": [1], "label": ["a"]}))
        part.commit()
        assert db.get_metrics()["insert_idempotent"]["calls"] == 1  # this Database wrote
        assert db.insert_idempotent("scores", [{"id": 1, "label": "a"}], "id") == []  # still open

        shipped = pickle.loads(pickle.dumps(sink))
        assert shipped.url == sqlite_url
        part = shipped.open_part(1)
        part.write(pa.table({"id": [1, 2], "label": ["a", "b"]}))
        part.commit()
        assert db.get_metrics()["insert_idempotent"]["calls"] == 2  # the copy connected anew
    assert stored(sqlite_url) == [(1, "a"), (2, "b")]


def test_bad_arguments_and_a_repr_without_the_password() -> None:
    sink = sinks.database("postgresql://user:secret@db.example/prod", "scores", key="id")
    assert "secret" not in repr(sink) and "db.example" in repr(sink)
    assert pickle.loads(pickle.dumps(sink)).url.endswith("user:secret@db.example/prod")
    with pytest.raises(ConfigError, match="db must be"):
        sinks.database(42, "scores", key="id")
    with pytest.raises(ConfigError, match="key must be"):
        sinks.database("sqlite:///x.db", "scores", key=[])
    with pytest.raises(ConfigError, match="table must be"):
        sinks.database("sqlite:///x.db", "", key="id")
