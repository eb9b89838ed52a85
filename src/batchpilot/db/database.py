"""`Database`: pooled, retrying, measured batch inserts (the face of ``batchpilot.db``).

The work is done by its parts: the engine and its pool (connection.py), retries
(retries.py), open transactions (transactions.py), tables (tables.py), the insert
SQL (inserts.py), the flush sink and bulk writer (writers.py) and the counters
(stats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import reprlib
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar, overload

import sqlalchemy as sa

from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.retry import RetryPolicy
from .._core.validate import check_int, check_number
from ..errors import ClosedError
from . import writers
from .connection import connect_and_begin, open_engine
from .inserts import first_per_key, insert_new, insert_rows
from .retries import is_transient_error, retrying
from .stats import Call, DatabaseStatistics, Meter
from .tables import TableCache, as_rows, check_unique_key, table_definition
from .transactions import (
    AsyncTransactionId,
    OpenTransactions,
    TransactionId,
    finish_even_if_cancelled,
)

__all__ = ["Database"]

_log = logging.getLogger("batchpilot.db")
_T = TypeVar("_T")


class Database:
    """Pooled, retrying, measured batch inserts into one database.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:///results.db`` or
            ``postgresql://user:password@host/dbname`` (psycopg 3 unless the URL
            names another driver).
        pool_size: connections kept open in the pool.
        max_overflow: extra connections opened under load beyond ``pool_size``.
        pool_timeout: seconds to wait for a free connection before failing.
        pool_pre_ping: test pooled connections on checkout and replace dead ones.
        max_retries: retries of a transient failure (see the module docstring).
        retry_delay: seconds before the first retry; doubles with every retry.
        clock: measures operation durations (default: monotonic time).
        sleep: waits between retries (default: ``clock.sleep``).
        is_transient: decides which errors are retried (default `is_transient_error`);
            it becomes ``retry_policy.retry_on``.
        sqlite_busy_timeout: SQLite only: seconds one attempt waits for another
            connection's write lock before it fails with "database is locked"
            (the driver's busy timeout; ``connect_args={"timeout": ...}`` in
            ``engine_options`` wins). A locked database is then retried after
            the back-off, so the longest wait is ``(max_retries + 1) *
            sqlite_busy_timeout`` plus the back-off: 4 x 5 s + 0.1 + 0.2 + 0.4 s
            = 20.7 s with the defaults.
        engine_options: extra keyword arguments for `sqlalchemy.create_engine`,
            e.g. ``{"connect_args": {"timeout": 1}}``.

    Example:
        >>> with Database("sqlite:///example.db") as db:  # doctest: +SKIP
        ...     db.create_table("scores", {"name": str, "score": float})
        ...     with db.transaction() as tx:
        ...         ids = db.batch_insert("scores", [{"name": "a", "score": 1.0}], tx)
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_pre_ping: bool = True,
        max_retries: int = 3,
        retry_delay: float = 0.1,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] | None = None,
        is_transient: Callable[[BaseException], bool] = is_transient_error,
        sqlite_busy_timeout: float = 5.0,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_int("pool_size", pool_size, minimum=1)
        check_int("max_overflow", max_overflow, minimum=0)
        check_number("pool_timeout", pool_timeout, minimum=0)
        self.sqlite_busy_timeout = float(
            check_number("sqlite_busy_timeout", sqlite_busy_timeout, minimum=0)
        )
        self.retry_policy = RetryPolicy(
            max_retries=max_retries, retry_delay=retry_delay, retry_on=is_transient
        )
        self._sleep = sleep if sleep is not None else clock.sleep  # waits between retries
        self._engine = open_engine(  # the SQLAlchemy engine and its pool
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_pre_ping=pool_pre_ping,
            sqlite_busy_timeout=self.sqlite_busy_timeout,
            engine_options=engine_options,
        )
        self._meter = Meter(clock)  # counts and times every operation
        self._tables = TableCache(self._engine.url.database)  # tables reflected so far
        self._transactions = OpenTransactions(  # open transactions by id
            self._meter, self._connect, self._check_open
        )
        self._lock = threading.Lock()  # guards _closed
        self._closed = False  # close() was called

    # -- public API -------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (and its connection pool) behind this database."""
        return self._engine

    @property
    def dialect(self) -> str:
        """The database kind: ``"sqlite"``, ``"postgresql"``, ..."""
        return str(self._engine.dialect.name)

    def create_table(
        self, table: str, columns: Mapping[str, Any], *, primary_key: str = "id"
    ) -> None:
        """Create ``table`` unless it exists (an existing table is left unchanged).

        Args:
            table: the table name (``schema.table`` allowed).
            columns: column name to type: a Python type (``int``, ``float``, ``str``,
                ``bytes``, ``bool``, ``dict``/``list`` as JSON) or a SQLAlchemy type.
            primary_key: the primary key column; added as an auto-incrementing
                integer unless ``columns`` defines it.
        """
        self._check_open()
        metadata = table_definition(table, columns, primary_key)
        with self._meter.measured("create_table") as call:
            self._retrying(call, lambda: metadata.create_all(self._engine, checkfirst=True))

    @overload
    def batch_insert(
        self,
        table: str,
        records: Iterable[Mapping[str, Any]],
        transaction_id: AsyncTransactionId,
    ) -> Awaitable[list[Any]]: ...

    @overload
    def batch_insert(
        self,
        table: str,
        records: Iterable[Mapping[str, Any]],
        transaction_id: TransactionId | None = None,
    ) -> list[Any]: ...

    def batch_insert(
        self,
        table: str,
        records: Iterable[Mapping[str, Any]],
        transaction_id: str | None = None,
    ) -> list[Any] | Awaitable[list[Any]]:
        """Insert ``records`` (dicts of column values) and return their ids in order.

        Args:
            table: an existing table (``schema.table`` allowed).
            records: one dict per row; keys are column names.
            transaction_id: join this open transaction instead of running as a
                transaction of its own (which is retried on transient errors).

        Returns:
            The inserted primary keys; an awaitable of them when ``transaction_id``
            comes from `transaction_async`.

        Raises:
            TypeError: ``records`` is not a list of dicts.
            ValueError: the table is missing, a column is unknown, or the
                transaction id is unknown or already finished.
            ClosedError: the database was closed.
        """
        if transaction_id is not None and self._transactions.get(transaction_id).is_async:
            return self.abatch_insert(table, records, transaction_id)
        return self._batch_insert(table, records, transaction_id)

    def insert_idempotent(
        self,
        table: str,
        records: Iterable[Mapping[str, Any]],
        key: str | Sequence[str],
        transaction_id: TransactionId | None = None,
    ) -> list[Any]:
        """Insert the records whose ``key`` is not in ``table`` yet; skip the others.

        ``INSERT ... ON CONFLICT (key) DO NOTHING`` on SQLite and PostgreSQL, so
        running the same batch twice (a replay after a crash, a retry after a
        lost acknowledgement) stores each record once. ``key`` must be the
        primary key or have a unique constraint; every record must give it.
        A record whose key an earlier record of the same call has is dropped:
        logged as a warning naming the keys, and counted in
        ``get_metrics()["insert_idempotent"]["duplicates"]``.

        Args:
            table: an existing table (``schema.table`` allowed).
            records: one dict per row; keys are column names.
            key: the column (or columns) identifying a record.
            transaction_id: join this open transaction (`transaction`) instead of
                running as a transaction of its own (retried on transient errors).

        Returns:
            The keys of the records inserted now, in record order (a tuple per
            record for a composite key); a full replay returns ``[]``.

        Raises:
            TypeError: ``records`` is not a list of dicts.
            ValueError: the table is missing, a column is unknown, ``key`` is not
                unique in the table, a record lacks the key, or the database is
                neither SQLite nor PostgreSQL.
            ClosedError: the database was closed.
        """
        columns = [key] if isinstance(key, str) else list(key)
        given = as_rows(records)
        rows, repeated = first_per_key(given, columns)
        self._check_open()
        with self._meter.measured("insert_idempotent") as call:
            call.records = len(given)
            if repeated:
                call.duplicates = len(repeated)
                _log.warning(
                    "insert_idempotent into %r: dropped %d record(s) whose key an earlier "
                    "record of the same call has: %s",
                    table,
                    len(repeated),
                    reprlib.repr(repeated),
                )

            def insert(connection: sa.Connection) -> list[Any]:
                target = self._tables.checked(connection, table, rows)
                check_unique_key(target, table, columns)
                return insert_new(connection, target, rows, columns)

            return self._write(call, insert, transaction_id)

    def sink(
        self,
        table: str,
        *,
        key: str = "entry_id",
        to_record: Callable[[Any], Mapping[str, Any]] | None = None,
        id_of: Callable[[Any], Any] | None = None,
    ) -> Callable[[Sequence[Any]], list[Any]]:
        """A flush callback that stores every entry exactly once, however often it runs.

        Made for `batchpilot.buffer.BatchStateManager` (``flush_callback=``):
        each flushed entry becomes one row, ``to_record(item)`` plus ``key`` set
        to the entry's id (its ``uuid``), inserted with `insert_idempotent` in
        one transaction. The buffer journals each entry before acknowledging it
        and deletes it only after the callback returned, so with this sink every
        acknowledged entry is in ``table`` once, even after ``kill -9`` between
        the commit and the journal's delete (the replay inserts nothing).
        Generic: any batch of items works, given ``id_of`` and ``to_record``.

        Args:
            table: an existing table whose ``key`` column is unique.
            key: the column receiving each entry's id.
            to_record: an item's column values; default: ``item.entry`` when it
                is a dict, else ``{"entry": item.entry}``.
            id_of: an item's stable id; default ``item.uuid``.

        Returns:
            A callable taking a batch and returning the ids inserted by this
            call (entries already stored are skipped).
        """
        return writers.sink(self.insert_idempotent, table, key, to_record, id_of)

    def bulk_writer(
        self,
        table: str,
        fn: Callable[[list[Any]], Any] | None = None,
        *,
        key: str = "item_id",
        key_of: Callable[[Any], Any] | None = None,
        to_record: Callable[[Any, Any], Mapping[str, Any]] | None = None,
    ) -> Callable[[list[Any]], list[Any]]:
        """A batch function for `batchpilot.bulk.map_batches` that stores each result once.

        Each call runs ``fn`` on a chunk, then writes one row per item, keyed on the item's id,
        with `insert_idempotent` (one transaction), and returns the ids. A job file
        (``map_batches(..., job=...)``) records a chunk only after this returned, so a
        ``kill -9`` costs at most the chunks that were running; the rerun runs them again and
        their rows committed before the kill are skipped: every item is in ``table`` once.

        An item's id is its index in the input: pass ``enumerate(items)`` to `map_batches`
        (``fn`` still gets the bare items). Or give ``key_of`` for a unique field of each item.
        Ids must be unique: a second item with a stored id is skipped like a replay; within one
        chunk it is dropped, logged and counted
        (``get_metrics()["insert_idempotent"]["duplicates"]``).

        A table that cannot take the rows costs at most one chunk of work. The table and its
        unique ``key`` are checked here, before any work. Until a chunk's rows are stored,
        chunks run one at a time; when the table refuses the first chunk's rows as a whole (a
        column it lacks), that chunk and every later one fail with `BatchFailedError`, and
        ``fn`` is not called again.

        Args:
            table: an existing table whose ``key`` column is unique (e.g. made by
                ``create_table(table, {key: int, ...}, primary_key=key)``).
            fn: takes a list of items, returns as many results (a sequence, or
                a dict of columns); default: each item is its own result.
            key: the column receiving each item's id.
            key_of: an item's stable, unique id; default: its index, from ``(index, item)`` pairs.
            to_record: ``(item, result)`` to the row's other columns; default:
                the result when it is a dict, else ``{"result": result}``.

        Returns:
            A batch function returning the id of each item of its chunk, so the run (and its
            job file) holds ids, not results. It runs on threads or in the calling thread
            (``executor="threads"`` or ``"serial"``): a `Database` cannot be shipped to other
            processes.

        Raises:
            TypeError: ``fn`` is not callable or is ``async def``; from the returned function
                (an `ItemFailure` per item in the run): an item that is not an
                ``(index, item)`` pair without ``key_of``.
            ValueError: ``table`` does not exist, or ``key`` is not a unique column of it.
            ClosedError: the database was closed.
        """
        writers.check_batch_function(fn)
        self._check_open()
        with self._engine.connect() as connection:
            target = self._tables.get(connection, table)
        check_unique_key(target, table, [key])
        return writers.bulk_writer(
            self.insert_idempotent, target, table, fn, key=key, key_of=key_of, to_record=to_record
        )

    async def abatch_insert(
        self,
        table: str,
        records: Iterable[Mapping[str, Any]],
        transaction_id: str | None = None,
    ) -> list[Any]:
        """`batch_insert` for async code: the same work, in a worker thread."""
        return await asyncio.to_thread(self._batch_insert, table, records, transaction_id)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[TransactionId]:
        """Open a transaction; commit on normal exit, roll back on an exception.

        Yields:
            The id to pass as ``transaction_id`` to `batch_insert`.
        """
        tx_id = self._transactions.begin(TransactionId)
        succeeded = False
        try:
            yield tx_id
            succeeded = True
        finally:
            self._transactions.end(tx_id, commit=succeeded)

    @contextlib.asynccontextmanager
    async def transaction_async(self) -> AsyncIterator[AsyncTransactionId]:
        """`transaction` for async code; database work runs in a worker thread.

        Yields:
            The id to pass as ``transaction_id`` to `batch_insert` (which then
            returns an awaitable) or `abatch_insert`.
        """
        tx_id = await finish_even_if_cancelled(
            asyncio.to_thread(self._transactions.begin, AsyncTransactionId),
            lambda started: self._transactions.end(started, commit=False),
        )
        succeeded = False
        try:
            yield tx_id
            succeeded = True
        finally:
            await asyncio.to_thread(self._transactions.end, tx_id, succeeded)

    def get_metrics(self) -> dict[str, dict[str, Any]]:
        """A snapshot of metrics per operation.

        Returns:
            ``{operation: metrics}`` for ``batch_insert``, ``insert_idempotent``,
            ``transaction`` and ``create_table`` (once used), each with ``calls``,
            ``rows`` (inserted by successful calls; for transactions, committed),
            ``duplicates`` (records `insert_idempotent` dropped because an
            earlier record of the same call had their key), ``errors``, ``retries``,
            ``rollbacks`` (of transactions), ``total_duration``, ``avg_duration``,
            ``max_duration`` (seconds) and ``error_types`` (failed calls by
            exception class name).
        """
        operations = self.statistics().operations
        return {name: totals.as_dict() for name, totals in operations.items()}

    def statistics(self) -> DatabaseStatistics:
        """A frozen snapshot of the counters of every operation and the live state.

        The fields every engine's snapshot shares count insert calls as batches
        and their records as items; `get_metrics` is the view of ``operations``.
        """
        return self._meter.statistics(
            open_transactions=len(self._transactions),
            connections_in_use=self._connections_in_use(),
            closed=self._closed,
            dialect=self.dialect,
        )

    def close(self) -> None:
        """Roll back transactions still open and close all pooled connections.

        Idempotent; later operations raise `ClosedError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._transactions.roll_back_all()
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        checked_out = self._connections_in_use()
        return (
            f"Database(url={self._engine.url.render_as_string(hide_password=True)!r}, "
            f"connections_in_use={'?' if checked_out is None else checked_out}, "
            f"open_transactions={len(self._transactions)}, "
            f"closed={self._closed})"
        )

    # -- internals --------------------------------------------------------------------

    def _batch_insert(
        self, table: str, records: Iterable[Mapping[str, Any]], transaction_id: str | None
    ) -> list[Any]:
        rows = as_rows(records)
        self._check_open()
        with self._meter.measured("batch_insert") as call:
            call.records = len(rows)

            def insert(connection: sa.Connection) -> list[Any]:
                return insert_rows(connection, self._tables.checked(connection, table, rows), rows)

            return self._write(call, insert, transaction_id)

    def _write(
        self,
        call: Call,
        insert: Callable[[sa.Connection], list[Any]],
        transaction_id: str | None,
    ) -> list[Any]:
        """Run ``insert`` in the open transaction ``transaction_id``, or in a retried
        transaction of its own; count the rows it inserted in ``call``."""
        if transaction_id is None:
            ids = self._retrying(call, lambda: self._own_transaction(insert))
        else:
            ids = self._transactions.get(transaction_id).run(insert)
        call.rows = len(ids)
        return ids

    def _own_transaction(self, work: Callable[[sa.Connection], _T]) -> _T:
        with connect_and_begin(self._engine) as connection:
            result = work(connection)
            connection.commit()
            return result

    def _connect(self, call: Call) -> sa.Connection:
        """A connection with a transaction begun, retried on transient errors."""
        return self._retrying(call, lambda: connect_and_begin(self._engine))

    def _retrying(self, call: Call, attempt: Callable[[], _T]) -> _T:
        return retrying(self.retry_policy, self._sleep, call, attempt)

    def _connections_in_use(self) -> int | None:
        pool = self._engine.pool
        return pool.checkedout() if isinstance(pool, sa.QueuePool) else None

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the Database is closed")
