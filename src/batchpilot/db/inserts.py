"""The insert strategies: plain inserts that return ids in record order, and exactly-once inserts.

Each takes an open connection, a reflected table and checked records; the caller owns
the transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

__all__ = ["first_per_key", "insert_new", "insert_rows"]

_MAX_SQLITE_ROWID = 2**63 - 1


def insert_rows(
    connection: sa.Connection, target: sa.Table, rows: list[Mapping[str, Any]]
) -> list[Any]:
    """Insert ``rows`` into ``target``; return their primary keys in record order."""
    return [ident for run in _runs(rows) for ident in _insert_run(connection, target, run)]


def insert_new(
    connection: sa.Connection, target: sa.Table, rows: list[Mapping[str, Any]], key: list[str]
) -> list[Any]:
    """Insert the ``rows`` whose ``key`` is not in ``target`` yet; return their keys in order.

    ``rows`` hold one record per key (`first_per_key`).
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise ValueError(f"insert_idempotent supports SQLite and PostgreSQL, not {dialect}")
    key_columns = [target.columns[column] for column in key]
    statement = (
        insert(target).on_conflict_do_nothing(index_elements=key_columns).returning(*key_columns)
    )
    inserted: set[Any] = set()
    for run in _runs(rows):
        inserted.update(_key_value(row) for row in connection.execute(statement, run))
    # The keys come from the records (one record per key, see `first_per_key`), so
    # record order is restored without asking SQLAlchemy for ordered RETURNING
    # (which would run one statement per row).
    ordered = [_key_value([record[column] for column in key]) for record in rows]
    return [value for value in ordered if value in inserted]


def first_per_key(
    rows: list[Mapping[str, Any]], key: list[str]
) -> tuple[list[Mapping[str, Any]], list[Any]]:
    """The first record of each key, in order, and the keys of the records left out.

    Raises:
        ValueError: a record has no value for the key.
    """
    first: dict[Any, Mapping[str, Any]] = {}
    repeated: list[Any] = []
    for index, record in enumerate(rows):
        if any(record.get(column) is None for column in key):
            raise ValueError(f"record {index} has no value for the key {key}")
        value = _key_value([record[column] for column in key])
        if value in first:
            repeated.append(value)
        else:
            first[value] = record
    return list(first.values()), repeated


def _runs(rows: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Runs of consecutive records naming the same columns, one executemany each, so
    that a column a record leaves out gets its default, not NULL."""
    return [list(run) for _, run in itertools.groupby(rows, key=frozenset)]


def _insert_run(
    connection: sa.Connection, target: sa.Table, group: list[Mapping[str, Any]]
) -> list[Any]:
    """Insert records that all have the same keys; return their ids in record order."""
    key = list(target.primary_key.columns)
    dialect = connection.dialect
    generated = target.autoincrement_column
    supplied = [all(record.get(column.name) is not None for column in key) for record in group]
    if not key or all(supplied):
        # No key, or the caller supplied it: nothing to read back.
        connection.execute(sa.insert(target), group)
        return [
            _key_value([record[column.name] for column in key]) if key else None for record in group
        ]
    if (
        generated is not None
        and len(key) == 1
        and not any(supplied)
        and dialect.insert_executemany_returning
        and not _sqlite_rowids_may_be_random(connection, generated, len(group))
    ):
        # Generated integer keys (SQLite rowid, sequences, identity columns) grow in
        # the order the rows are inserted, and the rows of a multi-row INSERT are
        # inserted in record order, so sorting the returned keys restores that
        # order. This keeps batches to one statement per page of rows, where
        # SQLAlchemy's ordered RETURNING would run one statement per row here.
        returned = connection.execute(sa.insert(target).returning(generated), group)
        return sorted(returned.scalars())
    if dialect.insert_executemany_returning_sort_by_parameter_order:
        statement = sa.insert(target).returning(*key, sort_by_parameter_order=True)
        return [_key_value(row) for row in connection.execute(statement, group)]
    return [
        _key_value(connection.execute(sa.insert(target), record).inserted_primary_key)
        for record in group
    ]


def _sqlite_rowids_may_be_random(connection: sa.Connection, column: Any, rows: int) -> bool:
    """Whether SQLite may give these rows random rowids, so sorting loses their order.

    SQLite gives a new row ``max(rowid) + 1`` until that would pass ``2**63 - 1``;
    from then on (in a table without ``AUTOINCREMENT``) it picks unused rowids at
    random. One indexed ``max()`` per batch tells which case applies.
    """
    if connection.dialect.name != "sqlite":
        return False
    top = connection.execute(sa.select(sa.func.max(column))).scalar()
    return top is not None and int(top) > _MAX_SQLITE_ROWID - rows


def _key_value(row: Any) -> Any:
    values = tuple(row)
    return values[0] if len(values) == 1 else values
