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

try:
    import sqlalchemy  # noqa: F401
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "batchpilot.db needs SQLAlchemy 2; install it with: pip install SQLAlchemy"
    ) from _missing

from .._core.exports import publish
from .database import Database
from .retries import is_transient_error
from .stats import DatabaseStatistics, OperationStatistics
from .transactions import AsyncTransactionId, TransactionId

__all__ = [
    "AsyncTransactionId",
    "Database",
    "DatabaseStatistics",
    "OperationStatistics",
    "TransactionId",
    "is_transient_error",
]

publish(__name__, globals(), __all__)
