"""Queued requests of the online engine and how their outcomes reach the callers.

Three kinds of caller wait for a result, each on the cheapest primitive that
serves it:

* a blocking thread (``Batcher.__call__`` from a thread) waits on a `Waiter`,
  one pre-acquired lock released once;
* ``submit`` hands out a `concurrent.futures.Future`;
* an asyncio task awaits an `asyncio.Future` bound to its loop.

`deliver` completes a whole batch at once: thread-side sinks directly, asyncio
futures directly when already on their loop, otherwise with one
``call_soon_threadsafe`` per loop per batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import Sequence
from itertools import repeat
from typing import Any

__all__ = ["AFUTURE", "CFUTURE", "WAITER", "Request", "Waiter", "deliver", "item_nbytes"]

WAITER = 0
CFUTURE = 1
AFUTURE = 2


class Waiter:
    """A one-shot result slot a thread blocks on: a lock acquired at birth, released once."""

    __slots__ = ("_lock", "_ok", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._ok = False
        self._value: Any = None

    def set_result(self, value: Any) -> None:
        self._ok = True
        self._value = value
        self._lock.release()

    def set_exception(self, exc: BaseException) -> None:
        self._value = exc
        self._lock.release()

    def done(self) -> bool:
        """A thread caller cannot cancel, and a batch only forms from pending items."""
        return False

    def result(self) -> Any:
        """Block until the outcome is set; return the result or raise the exception."""
        self._lock.acquire()
        if self._ok:
            return self._value
        raise self._value


class Request:
    """One queued item and where its outcome goes.

    Attributes:
        item: what the caller submitted.
        sink: a `Waiter`, a `concurrent.futures.Future` or an `asyncio.Future`.
        kind: `WAITER`, `CFUTURE` or `AFUTURE`.
        loop: the event loop of an `AFUTURE` sink, else None.
        deadline: absolute clock time after which the item expires, or None.
        enqueued: clock time of submission (0.0 when nothing needs it).
        cost: the item's share of the batch-size limit (``batch_size_fn``).
        nbytes: the item's bytes, counted against ``max_batch_bytes``.
    """

    __slots__ = ("cost", "deadline", "enqueued", "item", "kind", "loop", "nbytes", "sink")
    cost: float
    nbytes: int

    def __init__(
        self,
        item: Any,
        sink: Any,
        kind: int,
        loop: asyncio.AbstractEventLoop | None,
        deadline: float | None,
        enqueued: float,
    ) -> None:
        self.item = item
        self.sink = sink
        self.kind = kind
        self.loop = loop
        self.deadline = deadline
        self.enqueued = enqueued
        # ``cost`` and ``nbytes`` are set only when the engine has a size budget.

    def cancelled(self) -> bool:
        """True if the caller gave up on this request (checked when a batch is formed).

        For a `concurrent.futures.Future` this also moves it to RUNNING, after which
        the caller can no longer cancel it (the executor protocol).
        """
        if self.kind == AFUTURE:
            return bool(self.sink.done())
        if self.kind == CFUTURE:
            return not self.sink.set_running_or_notify_cancel()
        return False

    def __repr__(self) -> str:
        return f"Request(kind={self.kind}, deadline={self.deadline}, enqueued={self.enqueued})"


def _settle(triples: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Complete asyncio futures on their own loop, skipping those already cancelled."""
    for future, ok, value in triples:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def deliver(
    requests: Sequence[Request],
    values: Sequence[Any],
    oks: Sequence[bool] | None,
    here: asyncio.AbstractEventLoop | None,
) -> None:
    """Give each request its outcome: ``values[i]``, a result if ``oks`` is None or
    ``oks[i]`` is true, else an exception. ``here`` is the loop running in this thread.
    """
    loop = requests[0].loop if requests else None
    if loop is not None and loop is not here and all(r.loop is loop for r in requests):
        # One foreign loop (asyncio callers, batch on a worker): let it do the per-item
        # work, so the worker can start the next batch sooner.
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody can await these
            loop.call_soon_threadsafe(deliver, requests, values, oks, loop)
        return
    remote: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    outcomes = zip(requests, values, repeat(True) if oks is None else oks, strict=False)
    for request, value, ok in outcomes:
        loop = request.loop
        sink = request.sink
        if loop is None:
            try:
                if ok:
                    sink.set_result(value)
                else:
                    sink.set_exception(value)
            except concurrent.futures.InvalidStateError:
                pass  # the caller cancelled its future before the batch formed
        elif loop is here:
            if not sink.done():
                if ok:
                    sink.set_result(value)
                else:
                    sink.set_exception(value)
        else:
            remote.setdefault(loop, []).append((sink, ok, value))
    for loop, triples in remote.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody can await these
            loop.call_soon_threadsafe(_settle, triples)


def item_nbytes(item: Any) -> int:
    """Bytes of an array, tensor, dict of arrays or bytes-like item (else its sizeof)."""
    nbytes = getattr(item, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(item, dict):
        return sum(item_nbytes(value) for value in item.values())
    if isinstance(item, (bytes, bytearray, memoryview)):
        return len(item)
    return sys.getsizeof(item)
