"""Output rows into a database table, exactly once, through `batchpilot.db.Database`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ClosedError, ConfigError
from .part import PartInfo

__all__ = ["DatabasePart", "DatabaseSink", "database"]


class DatabaseSink:
    """A `Sink` inserting every partition's rows into one table (see `database`).

    Picklable: it ships the database URL, and each part connects on its worker.
    """

    def __init__(self, db: Any, table: str, key: str | Sequence[str]) -> None:
        from ..db import Database

        if isinstance(db, Database):
            self.url = db.engine.url.render_as_string(hide_password=False)
            self._given: Database | None = db  # used as is in this process, never closed
        elif isinstance(db, str):
            self.url, self._given = db, None
        else:
            raise ConfigError(f"db must be a database URL or a Database, got {db!r}")
        if not isinstance(table, str) or not table:
            raise ConfigError(f"table must be a table name, got {table!r}")
        columns = [key] if isinstance(key, str) else list(key)
        if not columns or not all(isinstance(column, str) and column for column in columns):
            raise ConfigError(f"key must be a column name or a list of them, got {key!r}")
        self.table = table
        self.key = columns[0] if isinstance(key, str) else columns

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_given": None}  # a Database holds a pool: ship the URL

    def prepare(self, resume: bool) -> None:
        """Check that the table exists and ``key`` is unique in it (`ValueError` if not).

        Rows already in the table are no obstacle, resumed or not: a row whose key
        is stored is skipped, so a run that adds nothing new stores nothing twice.
        """
        del resume
        db, owned = self._database()
        try:  # no rows: reflects the table and checks the key, inserts nothing
            db.insert_idempotent(self.table, [], self.key)
        finally:
            if owned:
                db.close()

    def open_part(self, partition: int) -> DatabasePart:
        """A writer inserting ``partition``'s rows (on a worker)."""
        return DatabasePart(self, partition)

    def finish(self, parts: list[PartInfo]) -> None:
        """Nothing to write: every row was committed by its part's writes."""

    def _database(self) -> tuple[Any, bool]:
        """The `Database` to write with, and whether the caller owns (and closes) it:
        the one given, in its own process; else a new one (one connection)."""
        if self._given is not None:
            return self._given, False
        from ..db import Database

        return Database(self.url, pool_size=1, max_overflow=0), True

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.url).render_as_string(hide_password=True)
        return f"DatabaseSink({url!r}, {self.table!r}, key={self.key!r})"


class DatabasePart:
    """The `PartWriter` of a database sink.

    Each `write` inserts its rows at once, in a transaction of its own, with
    `Database.insert_idempotent`: rows whose key is already stored are skipped, so
    a partition redone after a crash adds only the rows its first attempt did not
    commit. Rows are visible as soon as their write returns; `abort` cannot take
    them back (the redo skips them).
    """

    def __init__(self, sink: DatabaseSink, partition: int) -> None:
        self._sink = sink
        self._partition = partition
        self._db: Any = None  # connected by the first write
        self._owned = False  # close _db when done
        self._rows = 0
        self._state = "open"

    def write(self, table: Any) -> None:
        """Insert the rows of a ``pyarrow.Table`` not stored yet (each row gives the key)."""
        if self._state != "open":
            raise ClosedError(f"the part of partition {self._partition} was {self._state}")
        if self._db is None:
            self._db, self._owned = self._sink._database()
        self._db.insert_idempotent(self._sink.table, table.to_pylist(), self._sink.key)
        self._rows += table.num_rows

    def commit(self) -> PartInfo:
        """Close the connection; the rows are stored already."""
        if self._state != "open":
            raise ClosedError(f"the part of partition {self._partition} was {self._state}")
        self._close("committed")
        return PartInfo(self._partition, None, self._rows)

    def abort(self) -> None:
        """Close the connection (rows already written stay; see the class docstring)."""
        if self._state == "open":
            self._close("aborted")

    def _close(self, state: str) -> None:
        self._state = state
        if self._owned:
            self._db.close()


def database(db: Any, table: str, *, key: str | Sequence[str]) -> DatabaseSink:
    """Output rows into ``table``, each exactly once, keyed on the column ``key``.

    Every output row must carry its ``key`` (for example the input's id column);
    ``key`` must be the table's primary key or have a unique constraint. Rows
    whose key is already stored are skipped (``INSERT ... ON CONFLICT DO NOTHING``,
    `batchpilot.db.Database.insert_idempotent`), so a partition redone after a
    crash, or a resumed job, stores nothing twice. SQLite and PostgreSQL.

    Args:
        db: a SQLAlchemy URL (``sqlite:///out.db``, ``postgresql://...``) or a
            `batchpilot.db.Database`. A `Database` is used as is in the driver's
            process; workers in other processes connect to its URL (password
            included) with `Database`'s default options.
        table: an existing table (``schema.table`` allowed).
        key: the unique column (or columns) every row carries.
    """
    return DatabaseSink(db, table, key)
