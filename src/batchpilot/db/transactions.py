"""Transactions opened by `Database.transaction`: their ids, connections and ends."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, final

import sqlalchemy as sa

from ..errors import ClosedError
from .connection import rollback_quietly
from .stats import Call, Meter

__all__ = [
    "AsyncTransactionId",
    "OpenTransactions",
    "Transaction",
    "TransactionId",
    "finish_even_if_cancelled",
]

_T = TypeVar("_T")


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


@dataclass
class Transaction:
    """One open transaction."""

    connection: sa.Connection  # holds the transaction, until it ends
    is_async: bool  # opened by transaction_async: batch_insert returns an awaitable
    started: float  # clock time it began, for its duration
    call: Call  # what it did so far (rows inserted, retries to begin)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one statement at a time

    def run(self, work: Callable[[sa.Connection], list[Any]]) -> list[Any]:
        """Run ``work`` on the transaction's connection; count the rows it returns."""
        with self.lock:
            ids = work(self.connection)
            self.call.rows += len(ids)
        return ids


class OpenTransactions:
    """The transactions of one `Database` that are open now, by id; thread-safe."""

    def __init__(
        self,
        meter: Meter,
        connect: Callable[[Call], sa.Connection],
        check_open: Callable[[], None],
    ) -> None:
        self._meter = meter  # records each transaction as one "transaction" call
        self._connect = connect  # a connection with a transaction begun (retried)
        self._check_open = check_open  # raises ClosedError once the Database closed
        self._lock = threading.Lock()  # guards the open transactions
        self._open: dict[str, Transaction] = {}  # by id

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def begin(self, id_type: type[_Id]) -> _Id:
        """Open a transaction; its id is of ``id_type``."""
        self._check_open()
        started = self._meter.now()
        call = Call()
        try:
            connection = self._connect(call)
        except BaseException as error:
            self._meter.record("transaction", started, call, error)
            raise
        tx_id = id_type(uuid.uuid4().hex)
        with self._lock:
            self._open[tx_id] = Transaction(
                connection, id_type is AsyncTransactionId, started, call
            )
        return tx_id

    def get(self, tx_id: str) -> Transaction:
        """The open transaction ``tx_id``; `ValueError` (`ClosedError` once closed) if none."""
        with self._lock:
            tx = self._open.get(tx_id)
        if tx is None:
            self._check_open()
            raise ValueError(
                f"unknown transaction id {tx_id!r}: not opened by this Database, "
                "or already committed or rolled back"
            )
        return tx

    def end(self, tx_id: str, commit: bool) -> None:
        """Commit (or roll back) ``tx_id`` and return its connection to the pool."""
        with self._lock:
            tx = self._open.pop(tx_id, None)
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
                    rollback_quietly(tx.connection)
            except BaseException as failure:
                error = failure
                rollback_quietly(tx.connection)
            finally:
                tx.connection.close()
        self._meter.record(
            "transaction", tx.started, tx.call, error, error is not None or not commit
        )
        if error is not None:
            raise error

    def roll_back_all(self) -> None:
        """Roll back every open transaction (the `Database` is closing)."""
        with self._lock:
            abandoned = list(self._open.values())
            self._open.clear()
        for tx in abandoned:
            with tx.lock:
                rollback_quietly(tx.connection)
                tx.connection.close()
            self._meter.record("transaction", tx.started, tx.call, None, True)


async def finish_even_if_cancelled(work: Awaitable[_T], undo: Callable[[_T], object]) -> _T:
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
