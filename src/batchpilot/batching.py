"""The ``batch`` decorator and the `Batcher` behind it: dynamic batching for one function.

    >>> import numpy as np
    >>> from batchpilot import batch
    >>> @batch(max_batch_size=64, max_wait=0.005)
    ... def double(xs):            # receives the stacked batch, returns one row per item
    ...     return xs * 2
    >>> double(np.ones(3))         # from a thread: blocks until the result is in
    array([2., 2., 2.])
    >>> double.close()

From a coroutine the same call is awaited (``await double(x)``); ``double.submit(x)``
returns a `concurrent.futures.Future`. One engine serves all three kinds of caller
at once. See ``docs/online.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

from ._core.clock import SYSTEM_CLOCK, Clock
from ._core.collate import Collator
from ._core.events import BatchListener, BatchRecord
from ._core.retry import NO_RETRY, RetryPolicy
from ._core.sizing import SizeController
from ._engine.engine import Engine, EngineStatistics, Placement

__all__ = ["Batcher", "batch"]

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Calls of single items, grouped into batches for ``fn``.

    Call it with exactly one item. From a thread ``batcher(item)`` blocks and
    returns the item's result; from a coroutine ``await batcher(item)``.
    ``batcher.submit(item)`` returns a `concurrent.futures.Future` from anywhere.

    Args:
        fn: the batch function (``def`` or ``async def``). It receives the collated
            batch (``collate="stack"``: numpy arrays stacked along a new first axis,
            other items as a list) and returns one result per item.
        max_batch_size: hard cap on the items of one batch.
        max_wait: upper bound in seconds on waiting for more items. The batcher
            never waits when a worker is idle; it waits only when its cost model
            says that raises throughput.
        max_concurrent_batches: batches that may run at the same time.
        max_queue_size: items that may wait; a thread caller then blocks, an
            asyncio caller gets `QueueFullError`.
        collate: ``"stack"``, ``"concat"`` (first axis is rows), ``"list"`` or a
            `Collator`.
        controller: batch-size controller (`Fixed`, `AIMD`, `TargetLatency` or your
            own ``observe``/``next_size`` object); default ``Fixed(max_batch_size)``.
        latency_target: seconds an item may take end to end; caps waits.
        batch_size_fn: cost of one item against the batch size (e.g. ``len``).
        max_batch_bytes: cap on the summed ``nbytes`` of one batch's items.
        retry: retries of a failed batch before it is bisected.
        on_error: ``"isolate"``: a failing batch is bisected until each failing item
            is alone; healthy items get results, failing items their own exception.
            ``"raise"``: every item gets the batch's exception.
        priority_levels: levels of `submit`'s ``priority``; higher is served first.
        item_timeout: seconds an item may wait in the queue before it fails with
            `ItemTimeoutError`.
        placement: ``"auto"``, ``"inline"`` or ``"thread"`` (see `Engine`).
        listeners: receive a `BatchRecord` per batch.
        clock: time source (tests pass `batchpilot.testing.FakeClock`).
        name: label for threads, metrics and ``repr``; defaults to ``fn.__name__``.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        max_batch_size: int = 64,
        max_wait: float = 0.005,
        max_concurrent_batches: int = 1,
        max_queue_size: int = 10_000,
        collate: str | Collator = "stack",
        controller: SizeController | None = None,
        latency_target: float | None = None,
        batch_size_fn: Callable[[Any], float] | None = None,
        max_batch_bytes: int | None = None,
        retry: RetryPolicy = NO_RETRY,
        on_error: Literal["isolate", "raise"] = "isolate",
        priority_levels: int = 1,
        item_timeout: float | None = None,
        placement: Placement = "auto",
        listeners: Sequence[BatchListener | Callable[[BatchRecord], object]] = (),
        clock: Clock = SYSTEM_CLOCK,
        name: str | None = None,
    ) -> None:
        self._engine = Engine(
            fn,
            max_batch_size=max_batch_size,
            max_wait=max_wait,
            max_concurrent_batches=max_concurrent_batches,
            max_queue_size=max_queue_size,
            collate=collate,
            controller=controller,
            latency_target=latency_target,
            batch_size_fn=batch_size_fn,
            max_batch_bytes=max_batch_bytes,
            retry=retry,
            on_error=on_error,
            priority_levels=priority_levels,
            item_timeout=item_timeout,
            placement=placement,
            listeners=listeners,
            clock=clock,
            name=getattr(fn, "__name__", "batcher") if name is None else name,
        )
        functools.update_wrapper(self, fn)

    def __call__(self, item: T) -> Any:
        """The result of ``item``: a thread blocks for it; a coroutine gets an awaitable.

        In a coroutine the awaitable is an `asyncio.Future` (no coroutine per item, the
        fast path); use `acall` where a coroutine is required (``create_task``).
        """
        loop = asyncio._get_running_loop()
        if loop is None:
            return self._engine.call(item)
        return self._engine.afuture_on(loop, item)

    def submit(
        self, item: T, *, priority: int = 0, timeout: float | None = None
    ) -> concurrent.futures.Future[R]:
        """Queue ``item`` from anywhere; return a `concurrent.futures.Future` of its result.

        ``timeout`` bounds the wait for room in a full queue (then `QueueFullError`).
        """
        return self._engine.submit(item, priority=priority, timeout=timeout)

    async def acall(self, item: T, *, priority: int = 0) -> R:
        """Await the result of ``item`` with a ``priority``."""
        result: R = await self._engine.asubmit(item, priority=priority)
        return result

    # -- control -----------------------------------------------------------------------

    def set_max_batch_size(self, n: int) -> None:
        """Change the batch-size cap; the next batch uses it."""
        self._engine.set_max_batch_size(n)

    def set_max_wait(self, seconds: float) -> None:
        """Change the upper bound of waits; the next batch uses it."""
        self._engine.set_max_wait(seconds)

    def pause(self) -> None:
        """Start no new batch until `resume` (items keep queueing)."""
        self._engine.pause()

    def resume(self) -> None:
        """Start batches again."""
        self._engine.resume()

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting items, finish queued ones for up to ``timeout`` s, fail the rest
        with `ClosedError` (futures from `submit` are cancelled). Idempotent."""
        self._engine.close(timeout)

    async def aclose(self, timeout: float | None = None) -> None:
        """`close` from a coroutine, without blocking its event loop."""
        await self._engine.aclose(timeout)

    def __enter__(self) -> Batcher[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Batcher[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- state -------------------------------------------------------------------------

    def statistics(self) -> EngineStatistics:
        """A frozen snapshot: counters, live state and the fitted cost model."""
        return self._engine.statistics()

    @property
    def engine(self) -> Engine:
        """The engine doing the work (shared with nothing else)."""
        return self._engine

    @property
    def queue_size(self) -> int:
        return self._engine.queue_size

    @property
    def active_batches(self) -> int:
        return self._engine.active_batches

    @property
    def current_batch_size(self) -> int:
        return self._engine.current_batch_size

    @property
    def closed(self) -> bool:
        return self._engine.closed

    def __repr__(self) -> str:
        engine = self._engine
        state = "closed" if engine.closed else "paused" if engine.paused else "running"
        return (
            f"Batcher({engine.name}, {state}, queue_size={engine.queue_size}, "
            f"active_batches={engine.active_batches}, batch_size={engine.current_batch_size}, "
            f"placement={engine.placement})"
        )


@overload
def batch(fn: Callable[[Any], Awaitable[Any]] | Callable[[Any], Any], /) -> Batcher[Any, Any]: ...


@overload
def batch(
    *,
    max_batch_size: int = ...,
    max_wait: float = ...,
    max_concurrent_batches: int = ...,
    max_queue_size: int = ...,
    collate: str | Collator = ...,
    controller: SizeController | None = ...,
    latency_target: float | None = ...,
    batch_size_fn: Callable[[Any], float] | None = ...,
    max_batch_bytes: int | None = ...,
    retry: RetryPolicy = ...,
    on_error: Literal["isolate", "raise"] = ...,
    priority_levels: int = ...,
    item_timeout: float | None = ...,
    placement: Placement = ...,
    listeners: Sequence[BatchListener | Callable[[BatchRecord], object]] = ...,
    clock: Clock = ...,
    name: str | None = ...,
) -> Callable[[Callable[[Any], Any]], Batcher[Any, Any]]: ...


def batch(fn: Callable[[Any], Any] | None = None, /, **options: Any) -> Any:
    """Decorate a batch function so it can be called with single items.

    ``@batch`` or ``@batch(max_batch_size=..., max_wait=..., ...)``; the options are
    those of `Batcher`. The decorated name is a `Batcher`.
    """
    if fn is not None:
        if options:
            raise TypeError("use @batch or @batch(**options), not both")
        return Batcher(fn)
    return lambda function: Batcher(function, **options)
