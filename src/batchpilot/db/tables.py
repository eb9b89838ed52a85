"""Tables and records: defining and reflecting tables, and checking records against them."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

__all__ = [
    "TableCache",
    "as_rows",
    "check_unique_key",
    "table_definition",
    "unknown_columns",
]

#: Python types accepted by `Database.create_table`, and the column types they become.
_COLUMN_TYPES: dict[type, Any] = {
    bool: sa.Boolean,
    int: sa.BigInteger,
    float: sa.Float,
    str: sa.Text,
    bytes: sa.LargeBinary,
    dict: sa.JSON,
    list: sa.JSON,
}


class TableCache:
    """Existing tables of one database, each reflected once; thread-safe."""

    def __init__(self, database: str | None) -> None:
        self._database = database  # the database's name, for the error of a missing table
        self._lock = threading.Lock()  # guards the cache
        self._tables: dict[str, sa.Table] = {}  # reflected tables by the name callers use

    def get(self, connection: sa.Connection, table: str) -> sa.Table:
        """``table`` as it exists; `ValueError` when it does not."""
        with self._lock:
            cached = self._tables.get(table)
        if cached is not None:
            return cached
        schema, name = _split_name(table)
        try:
            reflected = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=connection)
        except sa_exc.NoSuchTableError:
            raise ValueError(
                f"table {table!r} does not exist in {self._database!r}; "
                "create it first (Database.create_table or your own migration)"
            ) from None
        for column in reflected.primary_key.columns:
            # SQLite reflects key columns as nullable; SQLAlchemy's ordered RETURNING
            # needs them declared NOT NULL to use caller-supplied key values.
            column.nullable = False
        with self._lock:
            return self._tables.setdefault(table, reflected)

    def checked(
        self, connection: sa.Connection, table: str, rows: list[Mapping[str, Any]]
    ) -> sa.Table:
        """``table``, after checking that it has every column ``rows`` name."""
        target = self.get(connection, table)
        unknown = unknown_columns(target, table, rows)
        if unknown is not None:
            raise ValueError(unknown)
        return target


def table_definition(table: str, columns: Mapping[str, Any], primary_key: str) -> sa.MetaData:
    """Metadata holding ``table`` as `Database.create_table` describes it."""
    schema, name = _split_name(table)
    metadata = sa.MetaData()
    column_objects = [
        sa.Column(column, _column_type(column, kind), primary_key=column == primary_key)
        for column, kind in columns.items()
    ]
    if primary_key not in columns:
        column_objects.insert(0, sa.Column(primary_key, sa.Integer, primary_key=True))
    sa.Table(name, metadata, *column_objects, schema=schema)
    return metadata


def as_rows(records: object) -> list[Mapping[str, Any]]:
    """``records`` as a list of dicts; `TypeError` for anything else."""
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(
            f"records must be a list of dicts (one per row), got {type(records).__name__}"
        )
    rows = list(records)
    for index, record in enumerate(rows):
        if not isinstance(record, Mapping):
            raise TypeError(
                f"record {index} is a {type(record).__name__}, not a dict of column values"
            )
    return rows


def unknown_columns(target: sa.Table, table: str, rows: list[Mapping[str, Any]]) -> str | None:
    """What is wrong when ``rows`` name columns ``target`` lacks, else None."""
    unknown = set().union(*rows) - set(target.columns.keys())
    if not unknown:
        return None
    return (
        f"table {table!r} has no column(s) {sorted(map(str, unknown))}; "
        f"its columns are {list(target.columns.keys())}"
    )


def check_unique_key(target: sa.Table, table: str, key: list[str]) -> None:
    """Raise `ValueError` unless ``key`` names columns of ``target`` that are unique together."""
    missing = [column for column in key if column not in target.columns]
    if missing:
        raise ValueError(
            f"table {table!r} has no key column(s) {missing}; "
            f"its columns are {list(target.columns.keys())}"
        )
    if not _is_unique(target, key):
        raise ValueError(
            f"the key {key} of table {table!r} is neither its primary key nor unique; "
            "storing each record once needs one (e.g. create_table(..., primary_key=...))"
        )


def _is_unique(target: sa.Table, key: list[str]) -> bool:
    wanted = set(key)
    candidates = [{column.name for column in target.primary_key.columns}]
    candidates += [
        {column.name for column in constraint.columns}
        for constraint in target.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    ]
    candidates += [
        {column.name for column in index.columns} for index in target.indexes if index.unique
    ]
    return wanted in candidates


def _split_name(table: str) -> tuple[str | None, str]:
    if not isinstance(table, str) or not table:
        raise TypeError(f"table must be a non-empty table name, got {table!r}")
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def _column_type(column: str, kind: Any) -> Any:
    if isinstance(kind, type) and kind in _COLUMN_TYPES:
        return _COLUMN_TYPES[kind]
    if isinstance(kind, sa.types.TypeEngine) or (
        isinstance(kind, type) and issubclass(kind, sa.types.TypeEngine)
    ):
        return kind
    raise TypeError(
        f"column {column!r}: unsupported type {kind!r}; use one of "
        f"{[t.__name__ for t in _COLUMN_TYPES]} or a SQLAlchemy type"
    )
