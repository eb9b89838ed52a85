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
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from ._core.keywords import fn_and_options_as_keywords, options_as_keywords
from ._engine.engine import Engine
from ._engine.options import EngineOptions
from ._engine.stats import EngineStatistics

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
        **options: the fields of `EngineOptions` (``max_batch_size``, ``max_wait``,
            ...), each described there and checked here; ``name`` defaults to
            ``fn.__name__``.
    """

    @fn_and_options_as_keywords(EngineOptions)
    def __init__(self, fn: Callable[[Any], Any], **options: Any) -> None:
        if options.get("name") is None:
            options["name"] = getattr(fn, "__name__", "batcher")
        self._engine = Engine(fn, EngineOptions(**options))
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
@options_as_keywords(EngineOptions)
def batch(**options: Any) -> Callable[[Callable[[Any], Any]], Batcher[Any, Any]]: ...


def batch(fn: Callable[[Any], Any] | None = None, /, **options: Any) -> Any:
    """Decorate a batch function so it can be called with single items.

    ``@batch`` or ``@batch(max_batch_size=..., max_wait=..., ...)``; the options are
    those of `Batcher` (the fields of `EngineOptions`). The decorated name is a `Batcher`.
    """
    if fn is not None:
        if options:
            raise TypeError("use @batch or @batch(**options), not both")
        return Batcher(fn)
    return lambda function: Batcher(function, **options)
