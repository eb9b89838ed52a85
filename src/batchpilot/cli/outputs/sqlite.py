"""SQLite outputs: a table of a database (``.sqlite``, ``.sqlite3``, ``.db``).

A run stages its rows in one database of the parts folder, ``rows.sqlite`` (one
table ``rows``, typed by first values, committed by each write);
`SqliteTarget.finish` moves them into the target table in one transaction.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._core.jsonrows import JSON
from ..records_io import RecordsFormatError, to_row
from .base import Segment, Target

__all__ = ["SqliteTarget"]

_STAGED = "rows.sqlite"  # the staging database in the parts folder


class SqliteTarget(Target):
    """A table of an SQLite database file."""

    def __str__(self) -> str:
        return f"{self.path} (table {self.table})"

    def files(self) -> list[Path]:
        return [self.path, *(self.path.with_name(self.path.name + end)
                             for end in ("-journal", "-wal", "-shm"))]  # fmt: skip

    def exists(self) -> bool:
        if not self.path.exists():
            return False
        with contextlib.closing(_connect_target(self.path)) as db:
            try:
                return _has_table(db, "main", self.table)
            except RecordsFormatError as exc:
                raise RecordsFormatError(f"{self.path}: {exc}") from None

    def open_segment(self, parts: Path, number: int, columns: list[str] | None) -> Segment:
        return _SqliteSegment(parts / _STAGED)

    def trim(self, parts: Path, committed: dict[int, int]) -> None:
        staged = parts / _STAGED
        if staged.exists():
            with contextlib.closing(sqlite3.connect(staged)) as db, db:
                if _has_table(db, "main", "rows"):
                    db.execute(
                        "DELETE FROM rows WHERE rowid > ?", (max(committed.values(), default=0),)
                    )

    def finish(
        self, parts: Path, committed: dict[int, int], columns: list[str] | None, if_exists: str
    ) -> None:
        _finish_sqlite(self, parts / _STAGED, if_exists)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _fold(name: str) -> str:
    """``name`` as SQLite compares column names: ASCII letters without case."""
    return name.translate(_ASCII_LOWER)


def _check_case_clashes(names: Sequence[str]) -> None:
    """Refuse result keys that are one SQLite column (``Name`` and ``name``)."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(_fold(name), name)
        if other != name:
            raise RecordsFormatError(
                f"results have the keys {other!r} and {name!r}, which are one column in "
                "SQLite (column names ignore case); rename one of them in FUNC, or write "
                "JSON Lines or Parquet instead"
            )


def _sql_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return JSON.encode(value)
    if value is None or isinstance(value, (int, str, bytes)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return str(value)


def _sql_type(value: Any) -> str:
    """The declared column type for a column whose first value is ``value``."""
    if isinstance(value, (bool, int)):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, bytes):
        return "BLOB"
    return "" if value is None else "TEXT"


def _connect_target(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise RecordsFormatError(f"cannot open {path} as an SQLite database: {exc}") from None


def _has_table(db: sqlite3.Connection, schema: str, table: str) -> bool:
    try:
        row = db.execute(
            f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise RecordsFormatError(f"not an SQLite database: {exc}") from None
    return row is not None


def _columns(db: sqlite3.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    rows = db.execute(f"PRAGMA {schema}.table_info({_quote(table)})").fetchall()
    return [(str(row[1]), str(row[2])) for row in rows]


class _SqliteSegment:
    """Rows staged in ``rows.sqlite`` (one table ``rows``, typed by first values)."""

    columns: list[str] | None = None

    def __init__(self, path: Path) -> None:
        self.path = path  # the staging database, ``rows.sqlite``
        self._db = sqlite3.connect(path)  # each write commits its rows
        self._known = [name for name, _ in _columns(self._db, "main", "rows")]  # its columns

    def __repr__(self) -> str:
        return f"_SqliteSegment({str(self.path)!r}, columns={self._known})"

    def write(self, results: Sequence[Any]) -> bool:
        if not results:
            return True
        rows = [to_row(value) for value in results]
        self._add_columns(rows)
        names = ", ".join(_quote(name) for name in self._known)
        marks = ", ".join("?" for _ in self._known)
        values = [tuple(_sql_value(row.get(name)) for name in self._known) for row in rows]
        with self._db:
            self._db.executemany(f"INSERT INTO rows ({names}) VALUES ({marks})", values)
        return True

    def _add_columns(self, rows: Sequence[dict[str, Any]]) -> None:
        known = set(self._known)
        new: dict[str, str] = {}
        for row in rows:
            for key, value in row.items():
                if key not in known and (key not in new or not new[key]):
                    new[key] = _sql_type(value)
        if not new:
            return
        _check_case_clashes([*self._known, *new])
        with self._db:
            if not self._known:
                columns = ", ".join(f"{_quote(name)} {kind}".strip() for name, kind in new.items())
                self._db.execute(f"CREATE TABLE rows ({columns})")
            else:
                for name, kind in new.items():
                    self._db.execute(f"ALTER TABLE rows ADD COLUMN {_quote(name)} {kind}")
        self._known.extend(new)

    def flush(self) -> None:
        """Every write is committed already."""

    def size(self) -> int:
        if not self._known:
            return 0
        return int(self._db.execute("SELECT coalesce(max(rowid), 0) FROM rows").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _finish_sqlite(target: Target, staged: Path, if_exists: str) -> None:
    table = _quote(target.table)
    with contextlib.closing(_connect_target(target.path)) as db:
        if staged.exists():
            db.execute("ATTACH DATABASE ? AS staged", (str(staged),))
        has_rows = staged.exists() and _has_table(db, "staged", "rows")
        new = _columns(db, "staged", "rows") if has_rows else []
        try:
            db.execute("BEGIN IMMEDIATE")
            exists = _has_table(db, "main", target.table)
            if exists and if_exists == "replace":
                db.execute(f"DROP TABLE main.{table}")
                exists = False
            if not exists:
                columns = new or [("result", "")]  # SQLite has no table without columns
                spec = ", ".join(f"{_quote(name)} {kind}".strip() for name, kind in columns)
                db.execute(f"CREATE TABLE main.{table} ({spec})")
            else:
                present = {_fold(name) for name, _ in _columns(db, "main", target.table)}
                for name, kind in new:
                    if _fold(name) not in present:
                        db.execute(f"ALTER TABLE main.{table} ADD COLUMN {_quote(name)} {kind}")
            if has_rows:
                names = ", ".join(_quote(name) for name, _ in new)
                db.execute(
                    f"INSERT INTO main.{table} ({names}) SELECT {names} FROM staged.rows "
                    "ORDER BY rowid"
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
