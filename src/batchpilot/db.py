"""Transactional batch inserts into SQLite, PostgreSQL or any SQLAlchemy 2 database.

`Database` plays the ``EnhancedDatabaseOperations`` role of seed 004: batch inserts
that return the inserted ids, transactions identified by an id, connection
pooling, retries on transient errors and per-operation metrics. Needs SQLAlchemy 2
(and psycopg for PostgreSQL), the ``db`` extra: ``pip install SQLAlchemy 'psycopg[binary]'``.

Choices a user should know:

* **Tables are not created behind your back.** ``batch_insert`` reflects the existing
  table (once per `Database`) and raises `ValueError` when it is missing or a record
  names a column it lacks. `Database.create_table` creates one explicitly.
* **Ids come back in record order**: the primary key value per record (a tuple for a
  composite key, ``None`` for a table without a primary key). An empty ``records``
  list inserts nothing and returns ``[]`` (the table must still exist).
* **Exactly once.** `Database.insert_idempotent` inserts with ``ON CONFLICT (key)
  DO NOTHING`` (SQLite, PostgreSQL) and returns the keys it inserted, so a replayed
  batch stores nothing twice (a key repeated within one call keeps its first
  record; the others are logged and counted as ``duplicates``). `Database.sink`
  wraps it as a flush callback for `batchpilot.buffer.BatchStateManager`, keyed
  on each entry's uuid: with the buffer's journal, every acknowledged entry lands
  once, even after ``kill -9``.
  The sink is generic (``id_of``, ``to_record``), so other batch producers can use it.
  `Database.bulk_writer` wraps it as a batch function for
  `batchpilot.bulk.map_batches`: each item stored once under its input index (or
  ``key_of(item)``); with a job file, every item is in the table exactly once
  after ``kill -9`` and a rerun. A table it cannot write to (missing, no unique
  key, a column missing) costs at most one chunk of model work.
* **Atomicity.** ``with db.transaction() as tx:`` yields a transaction id; every
  ``batch_insert(..., transaction_id=tx)`` joins that transaction, which commits when
  the block exits normally and rolls back when it raises, so a failed batch leaves
  no partial rows. ``batch_insert`` without a transaction id is its own transaction.
* **Async.** ``async with db.transaction_async() as tx:`` yields an
  `AsyncTransactionId`; ``batch_insert`` given such an id returns an awaitable, so the
  seed's ``inserted_ids = await db.batch_insert(table=..., records=...,
  transaction_id=tx)`` works as written. `Database.abatch_insert` is the async twin
  for any call. Async work runs the same code in a worker thread
  (`asyncio.to_thread`), so the event loop never blocks on the database.
* **Retries** (`RetryPolicy`, ``max_retries``/``retry_delay``) apply to transient
  errors only (`is_transient_error`: lost connections, a locked SQLite database,
  PostgreSQL operational errors such as deadlocks or an administrator's disconnect)
  and only to work that owns its transaction: ``batch_insert`` without a transaction
  id, `create_table`, and *beginning* a transaction. A statement inside an explicit
  transaction is never retried on its own, because the transaction is already
  broken; the error propagates, the transaction rolls back, and the caller may run
  the whole transaction again.
* **SQLite** needs a file URL (``sqlite:///path/to/file.db``): an in-memory database
  is private to one connection and cannot be pooled. Transactions start with
  ``BEGIN IMMEDIATE``, so the write lock is taken (and retried while another writer
  holds it) when the transaction begins, not half-way through it. Each attempt
  waits up to ``sqlite_busy_timeout`` (5 s) for the lock inside the driver before
  the retry back-off (0.1, 0.2, 0.4 s) starts: with the defaults a database
  locked for good fails after about 4 x 5 s + 0.7 s = 20.7 s. Lower
  ``sqlite_busy_timeout`` to fail sooner.
* **Generated ids on SQLite** come back in record order even once a row holds
  the largest rowid (``2**63 - 1``), after which SQLite assigns random rowids:
  then each record is inserted on its own to read its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import reprlib
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, TypeVar, final, overload

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "batchpilot.db needs SQLAlchemy 2; install it with: pip install SQLAlchemy"
    ) from _missing

from ._core.callables import is_async_callable
from ._core.clock import SYSTEM_CLOCK, Clock
from ._core.collate import split_rows
from ._core.retry import RetryPolicy
from ._core.validate import check_int, check_number
from .errors import BatchFailedError, ClosedError

__all__ = [
    "AsyncTransactionId",
    "Database",
    "TransactionId",
    "is_transient_error",
]

_log = logging.getLogger("batchpilot.db")
_T = TypeVar("_T")

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


@final
class TransactionId(str):
    """The id of a transaction opened by `Database.transaction`."""

    __slots__ = ()


@final
class AsyncTransactionId(str):
    """The id of a transaction opened by `Database.transaction_async`.

    `Database.batch_insert` called with one returns an awaitable.
    """

    __slots__ = ()


_Id = TypeVar("_Id", TransactionId, AsyncTransactionId)

#: Execution option marking our own write transactions (SQLite begins them IMMEDIATE).
_WRITER = "batchpilot_writer"


def is_transient_error(error: BaseException) -> bool:
    """Whether retrying the failed operation may succeed.

    True for a lost or invalidated connection, a pool checkout timeout, a locked or
    busy SQLite database, and other drivers' operational errors (PostgreSQL: admin
    shutdown, deadlock, serialization failure, too many connections). False for
    everything else: integrity and programming errors, bad input.
    """
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.OperationalError):
        if isinstance(error.orig, sqlite3.Error):
            # SQLite reports missing tables and syntax errors as OperationalError too.
            return "locked" in str(error.orig) or "busy" in str(error.orig)
        return True
    return False


class _FirstRows:
    """A bulk writer's state until the table took a chunk's rows: one chunk at a time.

    Attributes:
        lock: held by the one chunk writing while no rows are stored yet.
        stored: a chunk's rows went in; chunks now run concurrently.
        refusal: why the table refused the first chunk's rows as a whole; every
            later chunk fails with it, without running the model.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stored = False
        self.refusal: str | None = None


@dataclass
class _Call:
    """What one operation did, filled in while it runs."""

    rows: int = 0
    retries: int = 0
    duplicates: int = 0


@dataclass
class _OperationMetrics:
    calls: int = 0
    rows: int = 0
    duplicates: int = 0
    errors: int = 0
    retries: int = 0
    rollbacks: int = 0
    total_duration: float = 0.0
    max_duration: float = 0.0
    error_types: Counter[str] = field(default_factory=Counter)

    def add(
        self, duration: float, call: _Call, error: BaseException | None, rolled_back: bool
    ) -> None:
        self.calls += 1
        self.rollbacks += rolled_back
        self.retries += call.retries
        self.total_duration += duration
        self.max_duration = max(self.max_duration, duration)
        if error is None and not rolled_back:
            self.rows += call.rows
            self.duplicates += call.duplicates
        if error is not None:
            self.errors += 1
            self.error_types[type(error).__name__] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "rows": self.rows,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "retries": self.retries,
            "rollbacks": self.rollbacks,
            "total_duration": self.total_duration,
            "avg_duration": self.total_duration / self.calls if self.calls else 0.0,
            "max_duration": self.max_duration,
            "error_types": dict(self.error_types),
        }


@dataclass
class _Transaction:
    connection: sa.Connection
    is_async: bool
    started: float
    call: _Call
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        self._clock = clock
        self._sleep = sleep if sleep is not None else clock.sleep
        parsed = _parse_url(url)
        options = dict(engine_options or {})
        if parsed.get_backend_name() == "sqlite":
            # The driver's own wait for a lock, made explicit (the caller's
            # connect_args win): each attempt waits up to this long.
            connect_args = dict(options.get("connect_args", {}))
            connect_args.setdefault("timeout", self.sqlite_busy_timeout)
            options["connect_args"] = connect_args
        self._engine = sa.create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_pre_ping=pool_pre_ping,
            **options,
        )
        if self._engine.dialect.name == "sqlite":
            _begin_sqlite_transactions_immediately(self._engine)
        self._lock = threading.Lock()
        self._tables: dict[str, sa.Table] = {}
        self._transactions: dict[str, _Transaction] = {}
        self._metrics: dict[str, _OperationMetrics] = {}
        self._closed = False

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
        schema, name = _split_name(table)
        metadata = sa.MetaData()
        column_objects = [
            sa.Column(column, _column_type(column, kind), primary_key=column == primary_key)
            for column, kind in columns.items()
        ]
        if primary_key not in columns:
            column_objects.insert(0, sa.Column(primary_key, sa.Integer, primary_key=True))
        sa.Table(name, metadata, *column_objects, schema=schema)
        with self._measured("create_table") as call:
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
        if transaction_id is not None and self._transaction(transaction_id).is_async:
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
        rows, repeated = _first_per_key(_as_rows(records), columns)
        self._check_open()
        with self._measured("insert_idempotent") as call:
            if repeated:
                call.duplicates = len(repeated)
                _log.warning(
                    "insert_idempotent into %r: dropped %d record(s) whose key an earlier "
                    "record of the same call has: %s",
                    table,
                    len(repeated),
                    reprlib.repr(repeated),
                )
            if transaction_id is None:
                keys = self._retrying(
                    call, lambda: self._own_transaction(self._insert_new, table, rows, columns)
                )
            else:
                tx = self._transaction(transaction_id)
                with tx.lock:
                    keys = self._insert_new(tx.connection, table, rows, columns)
                tx.call.rows += len(keys)
            call.rows = len(keys)
            return keys

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
        record_of = to_record if to_record is not None else _entry_record
        identity = id_of if id_of is not None else _entry_id

        def write_batch(batch: Sequence[Any]) -> list[Any]:
            records = [{**record_of(item), key: identity(item)} for item in batch]
            return self.insert_idempotent(table, records, key)

        write_batch.__qualname__ = write_batch.__name__ = f"Database.sink({table!r}, key={key!r})"
        return write_batch

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

        Each call runs ``fn`` on a chunk, then writes one row per item, keyed on
        the item's id, with `insert_idempotent` (one transaction), and returns
        the ids. A job file (``map_batches(..., job=...)``) records a
        chunk only after this returned, so a ``kill -9`` costs at most the
        chunks that were running; the rerun runs them again and their rows
        committed before the kill are skipped: every item is in ``table`` once.

        An item's id is its index in the input: pass ``enumerate(items)`` to
        `map_batches` (``fn`` still gets the bare items). Or give ``key_of`` for
        a unique field of each item. Ids must be unique: a second item with a
        stored id is skipped like a replay; within one chunk it is dropped,
        logged and counted (``get_metrics()["insert_idempotent"]["duplicates"]``).

        A table that cannot take the rows costs at most one chunk of work. The
        table and its unique ``key`` are checked here, before any work. Until
        a chunk's rows are stored, chunks run one at a time; when the table
        refuses the first chunk's rows as a whole (a column it lacks), that
        chunk and every later one fail with `BatchFailedError`, and ``fn`` is
        not called again.

        Args:
            table: an existing table whose ``key`` column is unique (e.g. made by
                ``create_table(table, {key: int, ...}, primary_key=key)``).
            fn: takes a list of items, returns as many results (a sequence, or
                a dict of columns); default: each item is its own result.
            key: the column receiving each item's id.
            key_of: an item's stable, unique id; default: its input index, from
                ``(index, item)`` pairs.
            to_record: ``(item, result)`` to the row's other columns; default:
                the result when it is a dict, else ``{"result": result}``.

        Returns:
            A batch function returning the id of each item of its chunk, so the
            run (and its job file) holds ids, not results. It runs on threads or
            in the calling thread (``executor="threads"`` or ``"serial"``): a
            `Database` cannot be shipped to other processes.

        Raises:
            TypeError: ``fn`` is not callable or is ``async def``; from the
                returned function (an `ItemFailure` per item in the run): an item
                that is not an ``(index, item)`` pair without ``key_of``.
            ValueError: ``table`` does not exist, or ``key`` is not a unique
                column of it.
            ClosedError: the database was closed.
        """
        if fn is not None and not callable(fn):
            raise TypeError(f"fn must be a batch function or None, got {type(fn).__name__}")
        if is_async_callable(fn):
            raise TypeError(f"bulk_writer needs a plain function, not async def: {fn!r}")
        self._check_open()
        with self._engine.connect() as connection:
            target = self._table(connection, table)
        _check_unique_key(target, table, [key])
        compute = fn if fn is not None else list
        record_of = to_record if to_record is not None else _result_record
        first = _FirstRows()

        def records_of(batch: list[Any]) -> tuple[list[Any], list[Mapping[str, Any]]]:
            if key_of is None:
                ids, items = _split_indexed(batch)
            else:
                ids, items = [key_of(item) for item in batch], batch
            results = split_rows(compute(items), len(items))
            return ids, [
                {**record_of(item, result), key: item_id}
                for item_id, item, result in zip(ids, items, results, strict=True)
            ]

        def write_first(batch: list[Any]) -> list[Any]:
            if first.refusal is not None:
                raise BatchFailedError(f"not run: {first.refusal}")
            ids, records = records_of(batch)
            # A column the table lacks, in the first rows: the table's fault, not an
            # item's. BatchFailedError is not bisected, and later chunks do not run.
            first.refusal = _unknown_columns(target, table, records)
            if first.refusal is not None:
                raise BatchFailedError(first.refusal)
            self.insert_idempotent(table, records, key)
            first.stored = True
            return ids

        def write_batch(batch: list[Any]) -> list[Any]:
            if not first.stored:
                with first.lock:
                    if not first.stored:
                        return write_first(batch)
            ids, records = records_of(batch)
            self.insert_idempotent(table, records, key)
            return ids

        write_batch.__qualname__ = write_batch.__name__ = (
            f"Database.bulk_writer({table!r}, key={key!r})"
        )
        return write_batch

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
        tx_id = self._begin(TransactionId)
        succeeded = False
        try:
            yield tx_id
            succeeded = True
        finally:
            self._end(tx_id, commit=succeeded)

    @contextlib.asynccontextmanager
    async def transaction_async(self) -> AsyncIterator[AsyncTransactionId]:
        """`transaction` for async code; database work runs in a worker thread.

        Yields:
            The id to pass as ``transaction_id`` to `batch_insert` (which then
            returns an awaitable) or `abatch_insert`.
        """
        tx_id = await _finish_even_if_cancelled(
            asyncio.to_thread(self._begin, AsyncTransactionId),
            lambda started: self._end(started, commit=False),
        )
        succeeded = False
        try:
            yield tx_id
            succeeded = True
        finally:
            await asyncio.to_thread(self._end, tx_id, succeeded)

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
        with self._lock:
            return {name: metrics.snapshot() for name, metrics in self._metrics.items()}

    def close(self) -> None:
        """Roll back transactions still open and close all pooled connections.

        Idempotent; later operations raise `ClosedError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            abandoned = list(self._transactions.values())
            self._transactions.clear()
        for tx in abandoned:
            with tx.lock:
                _rollback_quietly(tx.connection)
                tx.connection.close()
            self._record("transaction", self._clock.now() - tx.started, tx.call, None, True)
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pool = self._engine.pool
        checked_out = pool.checkedout() if isinstance(pool, sa.QueuePool) else "?"
        with self._lock:
            open_transactions = len(self._transactions)
        return (
            f"Database(url={self._engine.url.render_as_string(hide_password=True)!r}, "
            f"connections_in_use={checked_out}, open_transactions={open_transactions}, "
            f"closed={self._closed})"
        )

    # -- internals --------------------------------------------------------------------

    def _batch_insert(
        self, table: str, records: Iterable[Mapping[str, Any]], transaction_id: str | None
    ) -> list[Any]:
        rows = _as_rows(records)
        self._check_open()
        with self._measured("batch_insert") as call:
            if transaction_id is None:
                ids = self._retrying(call, lambda: self._insert_own_transaction(table, rows))
            else:
                tx = self._transaction(transaction_id)
                with tx.lock:
                    ids = self._insert(tx.connection, table, rows)
                tx.call.rows += len(ids)
            call.rows = len(ids)
            return ids

    def _insert_own_transaction(self, table: str, rows: list[Mapping[str, Any]]) -> list[Any]:
        return self._own_transaction(self._insert, table, rows)

    def _own_transaction(self, work: Callable[..., _T], *args: Any) -> _T:
        with self._connect_and_begin() as connection:
            result = work(connection, *args)
            connection.commit()
            return result

    def _insert(
        self, connection: sa.Connection, table: str, rows: list[Mapping[str, Any]]
    ) -> list[Any]:
        target = self._checked_table(connection, table, rows)
        ids: list[Any] = []
        # Runs of records with the same keys go in one executemany each, so that a
        # column a record leaves out gets its default, not NULL.
        for _, run in itertools.groupby(rows, key=frozenset):
            ids.extend(_insert_run(connection, target, list(run)))
        return ids

    def _insert_new(
        self,
        connection: sa.Connection,
        table: str,
        rows: list[Mapping[str, Any]],
        key: list[str],
    ) -> list[Any]:
        target = self._checked_table(connection, table, rows)
        _check_unique_key(target, table, key)
        dialect = connection.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        else:
            raise ValueError(f"insert_idempotent supports SQLite and PostgreSQL, not {dialect}")
        key_columns = [target.columns[column] for column in key]
        statement = (
            insert(target)
            .on_conflict_do_nothing(index_elements=key_columns)
            .returning(*key_columns)
        )
        inserted: set[Any] = set()
        for _, run in itertools.groupby(rows, key=frozenset):
            inserted.update(_key_value(row) for row in connection.execute(statement, list(run)))
        # The keys come from the records (one record per key, see `_first_per_key`), so
        # record order is restored without asking SQLAlchemy for ordered RETURNING
        # (which would run one statement per row).
        ordered = [_key_value([record[column] for column in key]) for record in rows]
        return [value for value in ordered if value in inserted]

    def _checked_table(
        self, connection: sa.Connection, table: str, rows: list[Mapping[str, Any]]
    ) -> sa.Table:
        target = self._table(connection, table)
        unknown = _unknown_columns(target, table, rows)
        if unknown is not None:
            raise ValueError(unknown)
        return target

    def _table(self, connection: sa.Connection, table: str) -> sa.Table:
        with self._lock:
            cached = self._tables.get(table)
        if cached is not None:
            return cached
        schema, name = _split_name(table)
        try:
            reflected = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=connection)
        except sa_exc.NoSuchTableError:
            raise ValueError(
                f"table {table!r} does not exist in {self._engine.url.database!r}; "
                "create it first (Database.create_table or your own migration)"
            ) from None
        for column in reflected.primary_key.columns:
            # SQLite reflects key columns as nullable; SQLAlchemy's ordered RETURNING
            # needs them declared NOT NULL to use caller-supplied key values.
            column.nullable = False
        with self._lock:
            return self._tables.setdefault(table, reflected)

    def _begin(self, id_type: type[_Id]) -> _Id:
        self._check_open()
        started = self._clock.now()
        call = _Call()
        try:
            connection = self._retrying(call, self._connect_and_begin)
        except BaseException as error:
            self._record("transaction", self._clock.now() - started, call, error)
            raise
        tx_id = id_type(uuid.uuid4().hex)
        with self._lock:
            self._transactions[tx_id] = _Transaction(
                connection, id_type is AsyncTransactionId, started, call
            )
        return tx_id

    def _connect_and_begin(self) -> sa.Connection:
        connection = self._engine.connect().execution_options(**{_WRITER: True})
        try:
            connection.begin()
        except BaseException:
            connection.close()
            raise
        return connection

    def _end(self, tx_id: str, commit: bool) -> None:
        with self._lock:
            tx = self._transactions.pop(tx_id, None)
        if tx is None:
            if commit:
                raise ClosedError("the database was closed; the transaction was rolled back")
            return
        error: BaseException | None = None
        with tx.lock:
            try:
                if commit:
                    tx.connection.commit()
                else:
                    _rollback_quietly(tx.connection)
            except BaseException as failure:
                error = failure
                _rollback_quietly(tx.connection)
            finally:
                tx.connection.close()
        rolled_back = error is not None or not commit
        self._record("transaction", self._clock.now() - tx.started, tx.call, error, rolled_back)
        if error is not None:
            raise error

    def _transaction(self, tx_id: str) -> _Transaction:
        with self._lock:
            tx = self._transactions.get(tx_id)
        if tx is None:
            self._check_open()
            raise ValueError(
                f"unknown transaction id {tx_id!r}: not opened by this Database, "
                "or already committed or rolled back"
            )
        return tx

    def _retrying(self, call: _Call, attempt: Callable[[], _T]) -> _T:
        policy = self.retry_policy
        delays = policy.delays()
        while True:
            try:
                return attempt()
            except Exception as error:
                delay = next(delays, None) if policy.retry_on(error) else None
                if delay is None:
                    raise
                call.retries += 1
                _log.warning(
                    "transient database error, retry %d in %.3gs: %s", call.retries, delay, error
                )
                self._sleep(delay)

    @contextlib.contextmanager
    def _measured(self, operation: str) -> Iterator[_Call]:
        call = _Call()
        started = self._clock.now()
        try:
            yield call
        except BaseException as error:
            self._record(operation, self._clock.now() - started, call, error)
            raise
        self._record(operation, self._clock.now() - started, call, None)

    def _record(
        self,
        operation: str,
        duration: float,
        call: _Call,
        error: BaseException | None,
        rolled_back: bool = False,
    ) -> None:
        with self._lock:
            metrics = self._metrics.setdefault(operation, _OperationMetrics())
            metrics.add(duration, call, error, rolled_back)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the Database is closed")


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


_MAX_SQLITE_ROWID = 2**63 - 1


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


def _parse_url(url: str) -> sa.URL:
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError:
        raise ValueError(
            f"expected a database URL such as 'sqlite:///path/to/file.db' or "
            f"'postgresql+psycopg://user@host/dbname', got {url!r}"
        ) from None
    if parsed.drivername == "postgresql":
        # The [db] extra installs psycopg 3; SQLAlchemy 2.0 would look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    ):
        raise ValueError(
            "an in-memory SQLite database is private to one connection and cannot be "
            "pooled; use a file URL such as 'sqlite:///path/to/file.db'"
        )
    return parsed


def _begin_sqlite_transactions_immediately(engine: sa.Engine) -> None:
    # SQLAlchemy's documented recipe: stop pysqlite from starting transactions on its
    # own, and start them ourselves; our writers take the write lock at once, other
    # users of the engine (readers) begin deferred as usual.
    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        writer = connection.get_execution_options().get(_WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def _as_rows(records: object) -> list[Mapping[str, Any]]:
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


def _unknown_columns(target: sa.Table, table: str, rows: list[Mapping[str, Any]]) -> str | None:
    """What is wrong when ``rows`` name columns ``target`` lacks, else None."""
    unknown = set().union(*rows) - set(target.columns.keys())
    if not unknown:
        return None
    return (
        f"table {table!r} has no column(s) {sorted(map(str, unknown))}; "
        f"its columns are {list(target.columns.keys())}"
    )


def _check_unique_key(target: sa.Table, table: str, key: list[str]) -> None:
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


def _first_per_key(
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


def _entry_record(item: Any) -> Mapping[str, Any]:
    entry = item.entry
    return entry if isinstance(entry, Mapping) else {"entry": entry}


def _entry_id(item: Any) -> Any:
    return item.uuid


def _result_record(_item: Any, result: Any) -> Mapping[str, Any]:
    return result if isinstance(result, Mapping) else {"result": result}


def _split_indexed(batch: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """The indices and the items of a chunk of ``(index, item)`` pairs from `enumerate`."""
    for pair in batch:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], int)
            and not isinstance(pair[0], bool)
        ):
            raise TypeError(
                f"bulk_writer without key_of needs (index, item) pairs, got "
                f"{reprlib.repr(pair)}: pass enumerate(items) to map_batches, or give key_of"
            )
    return [pair[0] for pair in batch], [pair[1] for pair in batch]


def _key_value(row: Any) -> Any:
    values = tuple(row)
    return values[0] if len(values) == 1 else values


def _rollback_quietly(connection: sa.Connection) -> None:
    try:
        connection.rollback()
    except Exception:
        _log.warning("rollback failed; the connection is discarded", exc_info=True)
        with contextlib.suppress(Exception):
            connection.invalidate()


async def _finish_even_if_cancelled(work: Awaitable[_T], undo: Callable[[_T], object]) -> _T:
    """Await ``work`` in a thread; if the caller is cancelled meanwhile, ``undo`` its
    result once it is ready, so a cancelled ``transaction_async`` leaks nothing."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(
            lambda done: (
                undo(done.result()) if not done.cancelled() and not done.exception() else None
            )
        )
        raise
