"""The online batching engine: one engine behind `batch`, `Batcher` and `online.BatchProcessor`.

Callers submit single items from threads (`Engine.call`, `Engine.submit`) or from
asyncio tasks (`Engine.afuture`, `Engine.asubmit`), mixed freely; the engine groups
them into batches for one batch function (plain ``def`` or ``async def``).

It never waits when waiting cannot help:

1. When a batch slot is free and items are queued, a batch is dispatched at once.
   For asyncio callers the dispatch is one ``call_soon`` callback per loop
   iteration, so the batch is everything that arrived in that iteration.
2. While every slot is busy, items accumulate; the next free slot takes up to the
   current batch size at once.
3. A worker thread that just finished a batch waits for the callers it released
   to resubmit only when the fitted cost model (`LinearCostModel`, duration =
   fixed + per_item * n) says the wait raises throughput (`wait_budget`), never
   longer than ``max_wait`` nor past ``latency_target``.

Where a batch runs is measured per function (`PlacementProbe`): a short CPU-bound
plain function runs inline on the event loop of the asyncio caller that triggered
the dispatch; one that mostly waits runs on a worker thread; an ``async def``
function runs as a task on that loop (or, for thread callers, on a private loop
thread). Thread callers' batches always run on worker threads.

Every submitted item gets exactly one outcome: its result, its own exception
(per-item isolation: retry, then bisect, `run_isolated`), `ItemTimeoutError`,
`ClosedError`, or a cancellation.

The per-item path is kept short because it is where throughput goes: an asyncio
caller appends to its loop's inbox (no lock; the loop's dispatch callback moves the
inbox into the queue in one `put_many`) and awaits a plain `asyncio.Future`; a
thread caller blocks on a pre-acquired lock (`Waiter`); results are delivered per
batch, with one ``call_soon_threadsafe`` per foreign loop.

This module is the facade: the per-item paths, the properties, the lifecycle
(`Lifecycle`: OPEN -> CLOSING -> CLOSED | FAILED) and the reset in a forked child.
The work is done by parts that share one lock and state (state.py) and never
import this module: slots and staging (slots.py), loop dispatch (dispatch.py), the
worker pool (workers.py) and deadlines (deadlines.py). Its settings are
`EngineOptions` (options.py); running a batch and delivering its outcomes is
`BatchRunner` (execute.py); counters, the cost model and `EngineStatistics` are in
stats.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .._core.callables import is_async_callable
from .._core.collate import get_collator
from .._core.events import BatchListener, as_listener
from .._core.sizing import SizeController, recap
from .._core.validate import check_number, positive_int
from ..errors import ClosedError, QueueFullError
from .costing import CostPolicy, count_controller, item_cost, take_policy
from .deadlines import Deadlines
from .dispatch import Inbox, LoopDispatch
from .execute import BatchRunner
from .options import EngineOptions
from .policy import PlacementProbe
from .queue import BoundedPriorityQueue
from .requests import AFUTURE, CFUTURE, WAITER, Request, Waiter, deliver, item_nbytes
from .slots import Slots
from .state import EngineState, Lifecycle, running_loop
from .stats import EngineStatistics
from .workers import WorkerPool

__all__ = ["Engine", "EngineStatistics"]

_log = logging.getLogger("batchpilot")
_OPEN = Lifecycle.OPEN

#: Every engine of this process, reset in a forked child (`Engine._reset_after_fork`).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _reset_engines_after_fork() -> None:
    for engine in list(_ENGINES):
        engine._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_engines_after_fork)


class Engine:
    """Groups single items from many callers into batches for one batch function.

    Args:
        fn: the batch function, ``def`` or ``async def``; it receives the collated
            batch and returns one result per item (a sequence of the batch's length).
        options: the engine's settings (`EngineOptions`), or None to build them from
            ``settings``.
        **settings: the fields of `EngineOptions` as keywords, when ``options`` is None.

    Raises:
        TypeError: ``fn`` is not callable, both ``options`` and ``settings`` are
            given, or a setting has the wrong type.
        ValueError: a setting is out of range.
    """

    def __init__(
        self, fn: Callable[[Any], Any], options: EngineOptions | None = None, /, **settings: Any
    ) -> None:
        if not callable(fn):
            raise TypeError(f"the batch function must be callable, got {fn!r}")
        if options is None:
            options = EngineOptions(**settings)
        elif settings:
            raise TypeError("give the engine EngineOptions or their fields as keywords, not both")

        self.name = "" if options.name is None else options.name  # for threads, logs, metrics
        self._fn = fn  # the batch function
        self._is_async = is_async_callable(fn)  # ``async def``: batches run as loop tasks
        self._costing = None if options.cost is None else CostPolicy(options)  # by cost
        self._controller: SizeController = count_controller(options)  # items per batch
        self._max_batch_size = options.max_batch_size  # the hard cap on any batch
        self._max_batch_bytes = options.max_batch_bytes  # summed item bytes per batch, or None
        self._item_cost = item_cost(options, self._costing)  # an item's cost (None: counted)
        self._clock = options.clock  # timestamps and deadlines
        listeners = tuple(as_listener(hook) for hook in options.listeners)
        # An infinite timeout is no deadline at all.
        item_timeout = None if options.item_timeout == math.inf else options.item_timeout
        # A deadline, timestamp or cost per item: each is its own `Request`, never in an inbox.
        self._stamped = item_timeout is not None or bool(listeners) or self._item_cost is not None
        self._queue: BoundedPriorityQueue[Request] = BoundedPriorityQueue(
            options.max_queue_size,
            options.priority_levels,
            options.clock,
            expiring=item_timeout is not None,
        )  # the waiting requests
        # The lock, lifecycle, slot counters and tally the parts share.
        self._state = EngineState(self._queue, options.clock, options.max_concurrent_batches)
        self._build_parts(options, listeners, item_timeout)
        # The per-item paths' direct handles on the parts' loop maps and wake-ups.
        self._inboxes = self._dispatch.inboxes  # emptied in place by the fork reset
        self._pending_loops = self._dispatch.pending_loops  # likewise
        self._schedule = self._dispatch.schedule
        self._wake_worker = self._pool.wake
        _ENGINES.add(self)

    def _build_parts(
        self,
        options: EngineOptions,
        listeners: tuple[BatchListener, ...],
        item_timeout: float | None,
    ) -> None:
        """The parts: they share ``self._state`` and call back into this facade."""
        label = f"batchpilot-{self.name or 'engine'}"
        probe = PlacementProbe(guarded=options.placement == "measured")
        collator = get_collator(options.collate)
        # Fails queued items at their deadline (item_timeout).
        self._deadlines = Deadlines(
            self._state, item_timeout, f"{label}-deadlines", self._fail_engine
        )
        # Batch slots, claiming and staging the next batch, counting finished ones.
        self._slots = Slots(
            self._state,
            self._current_size,
            collator,
            self._controller,
            take_policy(options, self._costing),
            self._deadlines.expire,
            float(options.min_batch_interval),
            None if self._costing is None else self._costing.observe_batch,
        )
        # Runs one batch and delivers its outcomes.
        self._runner = BatchRunner(
            self._fn,
            options,
            collator,
            listeners,
            probe,
            self._slots.record,
            self._queue.__len__,
            None if self._costing is None else self._costing.observe,
        )
        # Worker threads for plain-``def`` batches.
        self._pool = WorkerPool(
            self._state,
            self._slots,
            self._runner,
            self._current_size,
            float(options.max_wait),
            options.latency_target,
            label,
            self._fail_engine,
        )
        # Asyncio callers' inboxes and the dispatch round on each loop.
        self._dispatch = LoopDispatch(
            self._state,
            self._slots,
            self._runner,
            probe,
            is_async=self._is_async,
            placement=options.placement,
            inline_allowed=all(delay == 0 for delay in options.retry.delays()),
            current_size=self._current_size,
            wake_worker=self._pool.wake,
            loop_name=f"{label}-loop",
            fail=self._fail_engine,
        )

    # -- submitting -----------------------------------------------------------------

    def submit(
        self, item: Any, *, priority: int = 0, timeout: float | None = None
    ) -> concurrent.futures.Future[Any]:
        """Queue ``item``; return a `concurrent.futures.Future` of its result.

        Args:
            item: one item.
            priority: level in ``[0, priority_levels)``; higher is served first.
            timeout: seconds to block while the queue is full (None: as long as it
                takes, 0: not at all), then `QueueFullError`.

        Raises:
            ClosedError: after `close`.
            QueueFullError: the queue stayed full for ``timeout`` seconds.
            ValueError: ``priority`` is out of range.
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._state.has_cfutures = True
        self._queue_from_thread(item, future, CFUTURE, priority, timeout)
        return future

    def call(self, item: Any, *, priority: int = 0, timeout: float | None = None) -> Any:
        """Queue ``item`` and block this thread until its result (or exception) is in.

        ``timeout`` only bounds the wait for room in a full queue. Raises like
        `submit`, plus whatever the item's outcome is.
        """
        waiter = Waiter()
        self._queue_from_thread(item, waiter, WAITER, priority, timeout)
        return waiter.result()

    def afuture(self, item: Any, *, priority: int = 0) -> asyncio.Future[Any]:
        """Queue ``item`` from the running event loop; return an `asyncio.Future` of its result.

        The cheapest asyncio path: no coroutine per item. Never blocks the loop: a
        full queue raises `QueueFullError` at once. A cancelled future's item is
        dropped when the next batch forms, never processed.

        Raises:
            RuntimeError: no event loop is running in this thread.
            ClosedError: after `close`.
            QueueFullError: the queue is full.
        """
        return self.afuture_on(asyncio.get_running_loop(), item, priority=priority)

    def afuture_on(
        self, loop: asyncio.AbstractEventLoop, item: Any, *, priority: int = 0
    ) -> asyncio.Future[Any]:
        """`afuture` for a caller that already holds ``loop``, the loop running in this thread.

        Looking the running loop up costs a system call (``getpid``, asyncio's check
        for a forked process); a caller that had to look it up anyway passes it on.
        """
        future = loop.create_future()
        if self._state.lifecycle is not _OPEN:
            raise self._closed_error()
        if priority or self._stamped:
            if self._is_async and loop is not self._dispatch.home_loop:
                self._dispatch.note_loop(loop)
            self._queue.put(self._request(item, future, AFUTURE, loop), priority, 0)
            if loop not in self._pending_loops:
                self._schedule(loop, threadsafe=False)
            return future
        # The hot path: append to this loop's inbox (no lock: only this loop's thread
        # touches it); the dispatch callback moves the whole inbox into the queue.
        inbox = self._inboxes.get(loop)
        if inbox is None:
            if self._is_async and loop is not self._dispatch.home_loop:
                self._dispatch.note_loop(loop)
            inbox = self._inboxes[loop] = Inbox(self._queue.maxsize - len(self._queue))
            if loop not in self._pending_loops:
                self._schedule(loop, threadsafe=False)
        if len(inbox.items) >= inbox.room:
            raise QueueFullError(f"queue full ({self._queue.maxsize} items)")
        inbox.items.append(item)
        inbox.futures.append(future)
        return future

    async def asubmit(self, item: Any, *, priority: int = 0) -> Any:
        """Queue ``item`` from a coroutine and await its result (see `afuture`).

        Cancelling the awaiting task cancels the item: it is dropped, not processed.
        """
        return await self.afuture(item, priority=priority)

    def _request(
        self, item: Any, sink: Any, kind: int, loop: asyncio.AbstractEventLoop | None
    ) -> Request:
        if not self._stamped:  # no deadline, timestamp or budget needed
            return Request(item, sink, kind, loop, None, 0.0)
        now = self._clock.now()
        request = Request(item, sink, kind, loop, self._deadlines.add(now), now)
        if self._item_cost is not None:
            request.cost = self._item_cost(item)
            request.nbytes = 0 if self._max_batch_bytes is None else item_nbytes(item)
        return request

    def _queue_from_thread(
        self, item: Any, sink: Any, kind: int, priority: int, timeout: float | None
    ) -> None:
        """Queue a thread caller's item, then wake a worker or the private loop.

        One function for the whole step: a thread caller's own Python work is what
        32 callers do one after another while the others wait for the GIL.
        """
        if self._state.lifecycle is not _OPEN:
            raise self._closed_error()
        self._queue.put(self._request(item, sink, kind, None), priority, timeout)
        if self._is_async:
            self._dispatch.schedule_private()
        else:
            self._wake_worker()

    def _current_size(self) -> int:
        """The size limit of the next batch: the controller's size, capped."""
        return max(1, min(self._controller.next_size(), self._max_batch_size))

    def _wake_dispatchers(self) -> None:
        """Make sure queued items get dispatched (after resume, during close)."""
        if self._is_async:
            self._schedule(self._dispatch.loop_thread().loop, threadsafe=True)
        else:
            self._pool.wake_all()

    # -- control ----------------------------------------------------------------------------

    def pause(self) -> None:
        """Start no new batch until `resume`; items keep queueing, running batches finish."""
        with self._state.lock:
            self._state.paused = True

    def resume(self) -> None:
        """Start batches again after `pause`."""
        state = self._state
        with state.lock:
            state.paused = False
        if (len(self._queue) or state.staged is not None) and not state.finished:
            self._wake_dispatchers()

    def set_max_batch_size(self, n: int) -> None:
        """Change the hard cap on batch size; takes effect for the next batch."""
        positive_int("max_batch_size", n)
        self._max_batch_size = n
        recap(self._controller, n)

    def set_max_wait(self, seconds: float) -> None:
        """Change the upper bound of deliberate waits; takes effect for the next batch."""
        check_number("max_wait", seconds, minimum=0)
        self._pool.max_wait = float(seconds)

    def planned_wait(self, queued: int, expected: int) -> float:
        """Seconds worth waiting for ``expected`` items with ``queued`` in hand, per the
        fitted cost model (`wait_budget`); 0 means dispatch now."""
        return self._pool.planned_wait(queued, expected)

    # -- the lifecycle ----------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting items; let queued and running ones finish for up to ``timeout`` s.

        Then every item still pending gets an outcome: queued `concurrent.futures`
        futures are cancelled (and marked so `concurrent.futures.wait` sees them
        done); every other pending caller gets `ClosedError`. While paused, queued
        items are not run. Idempotent and callable from any thread; from inside a
        running event loop with an ``async def`` function use `aclose`, since the
        loop cannot run batches while blocked here.
        """
        if timeout is not None:
            check_number("timeout", timeout, minimum=0, allow_inf=True)
            if timeout == math.inf:
                timeout = None
        here = running_loop()
        self._refuse_inside_batch(here)
        state = self._state
        with state.lock:
            self._begin_closing_locked()
            drain = not state.paused
        if here is not None:
            self._dispatch.flush_inbox(here)  # this loop's last items join the queue (or fail)
            if self._is_async:
                timeout = 0.0
        self._dispatch.fail_dead_inboxes()
        if drain and (len(self._queue) or state.staged is not None):
            self._wake_dispatchers()
        with state.lock:
            state.drained.wait_for(
                lambda: (
                    state.active == 0
                    and (not drain or (not len(self._queue) and state.staged is None))
                ),
                timeout,
            )
        self._shut_down()

    async def aclose(self, timeout: float | None = None) -> None:
        """`close` from a coroutine: waits in a thread so this loop keeps running batches."""
        await asyncio.to_thread(self.close, timeout)

    def _begin_closing_locked(self) -> None:
        """OPEN -> CLOSING: refuse new items (the lock is held)."""
        if self._state.lifecycle is _OPEN:
            self._state.lifecycle = Lifecycle.CLOSING

    def _shut_down(self) -> None:
        """Refuse items, fail every one still queued or running, stop the engine's threads."""
        state = self._state
        with state.lock:
            self._begin_closing_locked()
        leftovers = self._queue.close()
        with state.lock:
            abandoned = [request for batch in state.in_flight.values() for request in batch]
            state.in_flight.clear()
            state.staged = None
            if state.lifecycle is not Lifecycle.FAILED:
                state.lifecycle = Lifecycle.CLOSED
            state.work.notify_all()
            state.drained.notify_all()
        self._deadlines.stop()
        self._fail_closed(leftovers, abandoned)
        self._dispatch.stop_private_loop()

    def _fail_engine(
        self, exc: BaseException, *, holding: bool = False, batch: list[Request] | None = None
    ) -> None:
        """Close the engine after an internal error: every pending item gets `ClosedError`.

        ``holding``: the failing thread holds a slot no batch owns; ``batch``: the batch
        it was running (still in flight if its outcomes were not delivered).
        """
        _log.error("%s failed internally and closes itself", self._label(), exc_info=exc)
        state = self._state
        with state.lock:
            if state.lifecycle is not Lifecycle.FAILED:  # the first error is the cause
                state.cause = exc
                state.lifecycle = Lifecycle.FAILED
            orphan = batch is not None and state.in_flight.pop(id(batch), None) is not None
            if holding or orphan:
                self._slots.release_locked()
            self._pool.forget_current_locked()
        if orphan and batch:
            self._fail_closed([], batch)
        self._shut_down()

    def _refuse_inside_batch(self, here: asyncio.AbstractEventLoop | None) -> None:
        """`close` waits for running batches, so it must not run inside one."""
        if threading.current_thread() in self._pool.threads or here in self._dispatch.dispatching:
            raise RuntimeError(
                "close() cannot be called from inside the batch function, a listener or a "
                "future's done-callback: it waits for the engine's own threads; call it "
                "from another thread"
            )

    def _fail_closed(self, leftovers: list[Request], abandoned: list[Request]) -> None:
        """Cancel queued `concurrent.futures` (unless the engine FAILED); give every
        other leftover and abandoned request `ClosedError`."""
        here = running_loop()
        failed = self._state.lifecycle is Lifecycle.FAILED
        rest = []
        for request in leftovers:
            if request.kind == CFUTURE and not failed:  # else they get the cause
                request.sink.cancel()
                request.sink.set_running_or_notify_cancel()
            else:
                rest.append(request)
        self._slots.count_cancelled(len(leftovers) - len(rest))
        rest += abandoned
        if rest:
            reason = "the engine was closed before this item finished"
            if failed:
                reason += f" (it closed itself after an internal error: {self._state.cause!r})"
            errors = [ClosedError(reason) for _ in rest]
            deliver(rest, errors, [False] * len(rest), here)

    def _closed_error(self) -> ClosedError:
        if self._state.lifecycle is Lifecycle.FAILED:
            return ClosedError(
                f"{self._label()} closed itself after an internal error: {self._state.cause!r}"
            )
        return ClosedError(f"{self!r} is closed")

    def _label(self) -> str:
        """The engine's name for messages that must not call user code (unlike ``repr``)."""
        return f"Engine({self.name or getattr(self._fn, '__name__', 'fn')!s})"

    def _reset_after_fork(self) -> None:
        """In a forked child: start over empty, with new locks and no threads.

        Only the forking thread exists in the child; the parent's workers, loop
        threads and callers do not, and a lock one of them held would stay held.
        Items pending at the fork belong to the parent: the child drops its copies.
        Counters are kept.
        """
        self._state.reset_after_fork()
        self._pool.reset_after_fork()
        self._dispatch.reset_after_fork()
        self._deadlines.reset_after_fork()

    # -- live state ---------------------------------------------------------------------------

    @property
    def queue_size(self) -> int:
        """Items waiting now (including those not yet moved from an asyncio inbox of a
        loop that is still open)."""
        return len(self._queue) + self._dispatch.open_inboxes_size()

    @property
    def active_batches(self) -> int:
        """Batches running now."""
        return self._state.active

    @property
    def current_batch_size(self) -> int:
        """The size limit of the next batch: the controller's size, capped."""
        return self._current_size()

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @property
    def max_wait(self) -> float:
        return self._pool.max_wait

    @property
    def paused(self) -> bool:
        return self._state.paused

    @property
    def closed(self) -> bool:
        """True once `close` was called (submits then raise `ClosedError`)."""
        return not self._state.open

    @property
    def controller(self) -> SizeController:
        return self._controller

    @property
    def placement(self) -> str:
        """Where plain-``def`` batches of asyncio callers run now (``"task"`` for async fns)."""
        if self._is_async:
            return "task"
        return "inline" if self._dispatch.runs_inline() else "thread"

    def statistics(self) -> EngineStatistics:
        """A frozen snapshot of counters and live state."""
        fit = self._pool.current_fit()
        state = self._state
        with state.lock:
            return EngineStatistics.of(
                state.tally,
                fit,
                state.clock.now() - state.started_at,
                name=self.name,
                current_batch_size=self.current_batch_size,
                queue_size=self.queue_size,
                active_batches=state.active,
                max_batch_size=self._max_batch_size,
                max_wait=self._pool.max_wait,
                paused=state.paused,
                closed=not state.open,
                placement=self.placement,
                cost_cap=None if self._costing is None else self._costing.cap,
                batch_overhead=None if self._costing is None else self._costing.overhead,
            )

    def __repr__(self) -> str:
        state = "paused" if self._state.paused else "running"
        if not self._state.open:
            state = "closed"
        return (
            f"Engine({self.name or getattr(self._fn, '__name__', 'fn')!s}, {state}, "
            f"queue_size={len(self._queue)}, active_batches={self._state.active}, "
            f"batch_size={self.current_batch_size}, placement={self.placement})"
        )
