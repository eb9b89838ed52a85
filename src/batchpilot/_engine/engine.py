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

This module is dispatch (inboxes, the queue, slots, staging, waking workers and
loops), the worker threads and `Engine.close`. Its settings are `EngineOptions`
(options.py); running a batch and delivering its outcomes is `BatchRunner`
(execute.py); counters, the cost model and `EngineStatistics` are in stats.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core.callables import is_async_callable
from .._core.collate import get_collator
from .._core.events import as_listener
from .._core.loopthread import LoopThread
from .._core.sizing import BoundedController, Fixed, SizeController
from .._core.validate import check_number, positive_int
from ..errors import ClosedError, ItemTimeoutError, QueueFullError
from .execute import BatchRunner
from .options import EngineOptions
from .policy import PlacementProbe, wait_budget
from .queue import BoundedPriorityQueue
from .requests import AFUTURE, CFUTURE, WAITER, Request, Waiter, deliver, item_nbytes
from .stats import BatchTally, EngineStatistics

__all__ = ["Engine", "EngineStatistics"]

_log = logging.getLogger("batchpilot")

_WAIT_SLICE = 0.0005  # a deliberate wait re-checks its budget at least this often (s)
_INLINE_ROUND = 0.005  # seconds of inline batches per loop callback before yielding the loop
_LOOP_STOP_TIMEOUT = 1.0  # seconds close() waits for the private loop thread to stop
_FUTURE_DONE = asyncio.Future.done
_REAP_SLICE = 0.05  # seconds the deadline thread waits at most before looking again

#: Every engine of this process, reset in a forked child (`Engine._reset_after_fork`).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _reset_engines_after_fork() -> None:
    for engine in list(_ENGINES):
        engine._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_engines_after_fork)


class _Inbox:
    """Items an event loop submitted since its last dispatch callback, and their futures.

    Two parallel lists, not `Request` objects: the dispatch callback usually runs
    them as batches straight away (`Engine._run_inbox`) and makes requests only for
    what has to wait in the shared queue. ``room`` is the queue's free space when
    the inbox was opened; an item that races past it (thread callers filled the
    queue meanwhile) fails with `QueueFullError` when the inbox is flushed.
    """

    __slots__ = ("futures", "items", "room")

    def __init__(self, room: int) -> None:
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.room = room

    def __len__(self) -> int:
        return len(self.items)

    def requests(self, loop: asyncio.AbstractEventLoop, start: int = 0) -> list[Request]:
        """The items from ``start`` on as queue entries."""
        return _loop_requests(self.items[start:], self.futures[start:], loop)


def _loop_requests(
    items: list[Any], futures: list[asyncio.Future[Any]], loop: asyncio.AbstractEventLoop
) -> list[Request]:
    """Requests for items awaited on ``loop`` (no deadline, timestamp or budget)."""
    return [
        Request(item, future, AFUTURE, loop, None, 0.0)
        for item, future in zip(items, futures, strict=True)
    ]


@dataclass
class _Staged:
    """A batch taken from the queue ahead of a free slot, with its collated input
    (None when collating raised: the worker then collates and handles the error)."""

    batch: list[Request]
    prepared: tuple[Any, Any] | None


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

        self.name = "" if options.name is None else options.name
        self._fn = fn
        self._is_async = is_async_callable(fn)
        self._collator = get_collator(options.collate)
        self._controller: SizeController = options.controller or Fixed(options.max_batch_size)
        self._max_batch_size = options.max_batch_size
        self._max_wait = float(options.max_wait)
        self._max_concurrent = options.max_concurrent_batches
        self._latency_target = options.latency_target
        self._batch_size_fn = options.batch_size_fn
        self._max_batch_bytes = options.max_batch_bytes
        self._budgeted = options.batch_size_fn is not None or options.max_batch_bytes is not None
        # An infinite timeout is no deadline at all.
        self._item_timeout = None if options.item_timeout == math.inf else options.item_timeout
        self._min_interval = float(options.min_batch_interval)
        self._placement = options.placement
        self._inline_allowed = all(delay == 0 for delay in options.retry.delays())
        self._probe = PlacementProbe()
        listeners = tuple(as_listener(hook) for hook in options.listeners)
        self._clock = options.clock
        self._bare_requests = self._item_timeout is None and not listeners and not self._budgeted
        self._queue: BoundedPriorityQueue[Request] = BoundedPriorityQueue(
            options.max_queue_size,
            options.priority_levels,
            options.clock,
            expiring=self._item_timeout is not None,
        )
        self._tally = BatchTally()
        self._started_at = options.clock.now()  # when the engine started (for its rate)
        self._runner = BatchRunner(
            fn, options, self._collator, listeners, self._probe, self._record, self._queue.__len__
        )

        self._new_locks()
        self._active = 0
        self._paused = False
        self._closing = False
        self._closed = False
        self._in_flight: dict[int, list[Request]] = {}
        # The next batch, taken and collated on an event loop while every slot was busy.
        self._staged: _Staged | None = None
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._wake_at = 1
        self._pending_loops: set[asyncio.AbstractEventLoop] = set()
        self._inboxes: dict[asyncio.AbstractEventLoop, _Inbox] = {}
        # submit() futures must be moved to RUNNING when a batch forms (a slower check).
        self._has_cfutures = False
        self._private_loop: LoopThread | None = None
        self._last_start = -math.inf
        # Closed-loop callers expected back for the next batch: the last batch's items
        # (released, about to resubmit) plus those already waiting when it finished.
        self._expected = 0
        # Why the engine closed itself (an internal failure), or None.
        self._cause: BaseException | None = None
        # Loops inside a dispatch round now (close() from an inline batch must refuse).
        self._dispatching: set[asyncio.AbstractEventLoop] = set()
        # The one loop that submitted so far; once a second one (or a thread caller
        # of an async function) shows up, async batches run on the private loop only,
        # which outlives every caller's loop.
        self._home_loop: asyncio.AbstractEventLoop | None = None
        self._shared = False
        # Fails items at their deadline while every slot is busy (item_timeout only).
        self._reaper: threading.Thread | None = None
        _ENGINES.add(self)

    def _new_locks(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait here for items
        self._drained = threading.Condition(self._lock)  # close() waits here
        self._stop_reaping = threading.Event()

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
        self._has_cfutures = True
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
        if self._closing:
            raise self._closed_error()
        if priority or not self._bare_requests:
            if loop is not self._home_loop and self._is_async:
                self._note_loop(loop)
            self._queue.put(self._request(item, future, AFUTURE, loop), priority, 0)
            if loop not in self._pending_loops:
                self._schedule(loop, threadsafe=False)
            return future
        # The hot path: append to this loop's inbox (no lock: only this loop's thread
        # touches it); the dispatch callback moves the whole inbox into the queue.
        inbox = self._inboxes.get(loop)
        if inbox is None:
            if loop is not self._home_loop and self._is_async:
                self._note_loop(loop)
            inbox = self._inboxes[loop] = _Inbox(self._queue.maxsize - len(self._queue))
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

    def _note_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the first submitting loop; a second one makes the engine shared."""
        with self._lock:
            if self._home_loop is None:
                self._home_loop = loop
            elif loop is not self._home_loop:
                self._shared = True

    def _closed_error(self) -> ClosedError:
        if self._cause is not None:
            return ClosedError(
                f"{self._label()} closed itself after an internal error: {self._cause!r}"
            )
        return ClosedError(f"{self!r} is closed")

    def _label(self) -> str:
        """The engine's name for messages that must not call user code (unlike ``repr``)."""
        return f"Engine({self.name or getattr(self._fn, '__name__', 'fn')!s})"

    def _request(
        self, item: Any, sink: Any, kind: int, loop: asyncio.AbstractEventLoop | None
    ) -> Request:
        timeout = self._item_timeout
        if self._bare_requests:  # no deadline, timestamp or budget needed
            return Request(item, sink, kind, loop, None, 0.0)
        if timeout is not None and self._reaper is None:
            self._start_reaper()
        now = self._clock.now()
        request = Request(item, sink, kind, loop, None if timeout is None else now + timeout, now)
        if self._budgeted:
            cost = 1.0 if self._batch_size_fn is None else float(self._batch_size_fn(item))
            if not cost >= 0:
                raise ValueError(f"batch_size_fn must return a cost >= 0, got {cost}")
            request.cost = cost
            request.nbytes = 0 if self._max_batch_bytes is None else item_nbytes(item)
        return request

    def _queue_from_thread(
        self, item: Any, sink: Any, kind: int, priority: int, timeout: float | None
    ) -> None:
        """Queue a thread caller's item, then wake a worker or the private loop.

        One function for the whole step: a thread caller's own Python work is what
        32 callers do one after another while the others wait for the GIL.
        """
        if self._closing:
            raise self._closed_error()
        self._queue.put(self._request(item, sink, kind, None), priority, timeout)
        if self._is_async:
            loop = self._loop_thread().loop
            if loop not in self._pending_loops:
                self._schedule(loop, threadsafe=True)
        else:
            self._wake_worker()

    # -- waking whoever dispatches ----------------------------------------------------

    def _wake_worker(self) -> None:
        # Lock-free fast path: the queue was appended to before reading the idle count,
        # and a worker raises the idle count before checking the queue (see _worker),
        # so one of the two always sees the other.
        if self._idle_workers:
            if len(self._queue) >= self._wake_at:
                with self._lock:
                    self._work.notify()
        elif len(self._workers) < self._max_concurrent:
            self._start_worker()

    def _start_worker(self) -> None:
        with self._lock:
            if len(self._workers) >= self._max_concurrent or self._closed:
                return
            worker = threading.Thread(
                target=self._worker,
                name=f"batchpilot-{self.name or 'engine'}-{len(self._workers)}",
                daemon=True,
            )
            self._workers.append(worker)
        worker.start()

    def _loop_thread(self) -> LoopThread:
        if self._private_loop is None:
            with self._lock:
                if self._private_loop is None:
                    self._private_loop = LoopThread(f"batchpilot-{self.name or 'engine'}-loop")
                    # Thread callers of an async function: asyncio callers' batches may
                    # hold their items, so those run on this loop too.
                    self._shared = True
        return self._private_loop

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None or self._closed:
                return
            self._reaper = threading.Thread(
                target=self._reap, name=f"batchpilot-{self.name or 'engine'}-deadlines", daemon=True
            )
        self._reaper.start()

    def _reap(self) -> None:
        """The deadline thread: fail queued items at their deadline, even while every
        slot is busy (a batch being formed fails them too, see `_claim`).

        Whatever it meets (a caller's done-callback raising `KeyboardInterrupt` as an
        expired future resolves, say) closes the engine like a worker's internal error,
        so no item waits for a deadline thread that is gone.
        """
        queue = self._queue
        try:
            while not self._closed:
                deadline = queue.earliest_deadline()
                if deadline is None and not len(queue):
                    queue.wait()  # until an item is queued or the queue is closed
                    continue
                remaining = math.inf if deadline is None else deadline - self._clock.now()
                if remaining > 0:
                    self._stop_reaping.wait(min(remaining, _REAP_SLICE))
                    continue
                expired = queue.expire()
                if expired:
                    self._expire(expired, None)
        except BaseException as exc:
            self._fail_engine(exc)

    def _expire(self, expired: list[Request], here: asyncio.AbstractEventLoop | None) -> None:
        """Fail ``expired`` with `ItemTimeoutError`; those their callers cancelled stay so."""
        live = [request for request in expired if not request.cancelled()]
        with self._lock:
            self._tally.expired += len(live)
            self._tally.cancelled += len(expired) - len(live)
        expired = live
        errors = [
            ItemTimeoutError(f"item expired after {self._item_timeout} s in the queue")
            for _ in expired
        ]
        deliver(expired, errors, [False] * len(expired), here)

    def _schedule(self, loop: asyncio.AbstractEventLoop, *, threadsafe: bool) -> None:
        """Arrange one `_dispatch_on` callback on ``loop`` (at most one pending per loop)."""
        self._pending_loops.add(loop)
        try:
            if threadsafe:
                loop.call_soon_threadsafe(self._dispatch_on, loop)
            else:
                loop.call_soon(self._dispatch_on, loop)
        except RuntimeError:  # the loop is closed; let a thread take the items instead
            self._pending_loops.discard(loop)
            if not self._is_async:
                self._wake_worker()

    def _kick_all(self) -> None:
        """Make sure queued items get dispatched (after resume, during close)."""
        if self._is_async:
            self._schedule(self._loop_thread().loop, threadsafe=True)
            return
        while len(self._workers) < min(self._max_concurrent, len(self._queue)) and not self._closed:
            self._start_worker()
        with self._lock:
            self._work.notify_all()

    # -- dispatching ----------------------------------------------------------------------

    def _flush_inbox(self, loop: asyncio.AbstractEventLoop) -> None:
        """Move ``loop``'s inbox into the queue (on that loop's thread)."""
        inbox = self._inboxes.pop(loop, None)
        if inbox:
            self._queue_inbox(inbox, loop, 0)

    def _queue_inbox(self, inbox: _Inbox, loop: asyncio.AbstractEventLoop, start: int) -> None:
        """Put ``inbox``'s items from ``start`` on into the queue; fail what does not fit."""
        requests = inbox.requests(loop, start)
        error: Exception
        try:
            added = self._queue.put_many(requests)
            error = QueueFullError(f"queue full ({self._queue.maxsize} items)")
        except ClosedError as exc:
            added, error = 0, exc
        rest = requests[added:]
        if rest:
            deliver(rest, [error] * len(rest), [False] * len(rest), loop)

    def _dispatch_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """One dispatch round on ``loop`` (runs as a loop callback).

        A `KeyboardInterrupt` or `SystemExit` from an inline batch (its items already
        have it) goes on into the loop, and the round's other items wait for the next
        one; anything else escaping is an internal failure that closes the engine.
        """
        self._pending_loops.discard(loop)
        self._dispatching.add(loop)
        try:
            self._dispatch_round(loop)
        except (KeyboardInterrupt, SystemExit):
            if len(self._queue) and not loop.is_closed():
                self._schedule(loop, threadsafe=False)
            raise
        except BaseException as exc:
            self._fail_engine(exc)
        finally:
            self._dispatching.discard(loop)

    def _dispatch_round(self, loop: asyncio.AbstractEventLoop) -> None:
        inline = not self._is_async and self._staged is None and self._runs_inline(probing=True)
        until = self._clock.now() + _INLINE_ROUND
        ran = False
        inbox = self._inboxes.pop(loop, None)
        if inbox:
            taken = 0
            if inline and not len(self._queue) and self._min_interval <= 0:
                try:
                    taken = self._run_inbox(inbox, loop, until)
                except BaseException:  # the untaken items wait in the queue
                    self._requeue_pending(inbox, loop)
                    raise
                ran = taken > 0
            if taken < len(inbox):
                self._queue_inbox(inbox, loop, taken)
        delay = self._interval_remaining()
        if delay > 0 and len(self._queue):
            self._pending_loops.add(loop)
            loop.call_later(delay, self._dispatch_on, loop)
            return
        if self._is_async:
            private = self._private_loop
            if self._shared and (private is None or loop is not private.loop):
                private_loop = self._loop_thread().loop
                if private_loop not in self._pending_loops:
                    self._schedule(private_loop, threadsafe=True)
                return
            while self._acquire_slot():
                batch = self._claim()
                if not batch:
                    continue
                if self._shared and loop is not self._loop_thread().loop:
                    # Another loop's items may be in it (it became shared meanwhile).
                    self._loop_thread().loop.call_soon_threadsafe(self._start_task, batch)
                else:
                    loop.create_task(self._run_async(batch, loop))
            return
        if not inline:
            self._stage_next()
            self._wake_worker()
            return
        # Like a task that drains its queue, run the batches already queued back to back
        # (bounded, so other coroutines get the loop again soon).
        while self._clock.now() < until and self._acquire_slot():
            batch = self._claim()
            if batch:
                self._runner.run_sync(batch, loop)
                ran = True
        # After a batch, callers woken for the next iteration resubmit in it; a
        # callback armed now runs right after them, in that same iteration.
        if (ran or len(self._queue)) and loop not in self._pending_loops:
            self._schedule(loop, threadsafe=False)

    def _requeue_pending(self, inbox: _Inbox, loop: asyncio.AbstractEventLoop) -> None:
        """Queue the items of ``inbox`` that have no outcome yet (a batch raised past them)."""
        pending = [i for i, future in enumerate(inbox.futures) if not future.done()]
        rest = _Inbox(inbox.room)
        rest.items = [inbox.items[i] for i in pending]
        rest.futures = [inbox.futures[i] for i in pending]
        self._queue_inbox(rest, loop, 0)

    def _start_task(self, batch: list[Request]) -> None:
        """Run ``batch`` as a task on the private loop (this callback runs there)."""
        loop = self._loop_thread().loop
        loop.create_task(self._run_async(batch, loop))

    def _run_inbox(self, inbox: _Inbox, loop: asyncio.AbstractEventLoop, until: float) -> int:
        """Run batches straight from ``loop``'s inbox while a slot is free and time is
        left (nothing else is queued, so order holds); return how many items it took.

        The common asyncio case: no `Request`, no trip through the shared queue.
        """
        items, futures = inbox.items, inbox.futures
        taken = 0
        while taken < len(items) and self._clock.now() < until and self._acquire_slot(inbox=True):
            stop = taken + self.current_batch_size
            self._run_direct(items[taken:stop], futures[taken:stop], loop)
            taken = min(stop, len(items))
        return taken

    def _run_direct(
        self, items: list[Any], futures: list[asyncio.Future[Any]], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Run one batch from an inbox inline, holding a slot; complete its futures.

        A batch whose call raises becomes requests and takes the general path
        (`BatchRunner.run_sync`, which replays the error: the function is not called twice).
        """
        if any(map(_FUTURE_DONE, futures)):  # callers that cancelled are dropped
            live = [
                (item, future)
                for item, future in zip(items, futures, strict=True)
                if not future.done()
            ]
            with self._lock:
                self._tally.cancelled += len(items) - len(live)
                if not live:
                    self._release_slot_locked()
                    return
            items, futures = [item for item, _ in live], [future for _, future in live]
        started = self._clock.now()
        sample = self._probe.start_sample()
        try:
            values = self._runner.call_slice(items, 0, len(items))
        except BaseException as exc:
            batch = _loop_requests(items, futures, loop)
            with self._lock:
                self._in_flight[id(batch)] = batch
            self._runner.run_sync(batch, loop, error=exc)
            return
        self._probe.end_sample(sample)
        self._record(len(items), self._clock.now() - started, 0, True, None)
        for future, value in zip(futures, values, strict=True):
            if not future.done():
                future.set_result(value)

    def _runs_inline(self, *, probing: bool = False) -> bool:
        """Run plain-def batches inline on the loop? ``probing``: a dispatch that may
        run inline once to measure again (see `PlacementProbe`)."""
        if self._placement == "auto":
            if not self._inline_allowed:
                return False
            return self._probe.run_inline() if probing else self._probe.inline
        return self._placement == "inline"

    def _acquire_slot(self, *, inbox: bool = False) -> bool:
        """Take a batch slot if one is free, not paused, and there is work (queued
        items, or ``inbox``: the caller holds an inbox to run)."""
        with self._lock:
            if self._paused or self._active >= self._max_concurrent:
                return False
            if not inbox and not len(self._queue):
                return False
            self._active += 1
            return True

    def _interval_remaining(self) -> float:
        if self._min_interval <= 0:
            return 0.0
        return max(self._last_start + self._min_interval - self._clock.now(), 0.0)

    def _stage_next(self) -> None:
        """While every slot is busy and a full batch waits, take and collate it now.

        Runs on an event loop (whose thread is otherwise idle while a worker runs a
        batch), so the worker that frees a slot calls the batch function at once:
        taking and collating the next batch leaves the path between two calls.
        """
        if (
            self._staged is not None
            or self._min_interval > 0
            or self._paused
            or self._active < self._max_concurrent
            or len(self._queue) < self.current_batch_size
        ):
            return
        batch = self._claim(slot=False)
        if not batch:
            return
        prepared: tuple[Any, Any] | None
        try:
            prepared = self._collator.collate([request.item for request in batch])
        except Exception:
            prepared = None
        with self._lock:
            self._staged = _Staged(batch, prepared)
            self._work.notify()

    def _claim(self, *, slot: bool = True) -> list[Request]:
        """Take the next batch for a slot already acquired; release it if nothing is live.

        ``slot=False``: the batch is being staged (`_stage_next`), no slot is held.
        """
        size = self.current_batch_size
        if self._budgeted:
            taken, expired = self._take_budgeted(size)
        else:
            taken, expired = self._queue.take(size)
        if self._has_cfutures:  # they must be moved to RUNNING (and may have been cancelled)
            batch = [request for request in taken if not request.cancelled()]
        else:  # asyncio futures cancelled by their callers are done; a thread caller
            # (no loop) never cancels, so its Waiter is not asked (a call per item)
            batch = [r for r in taken if r.loop is None or not r.sink.done()]
        with self._lock:
            self._tally.cancelled += len(taken) - len(batch)
            if batch:
                self._in_flight[id(batch)] = batch
                self._last_start = self._clock.now()
            elif slot:
                self._release_slot_locked()
        if expired:
            self._expire(expired, _running_loop())
        return batch

    def _take_budgeted(self, size: int) -> tuple[list[Request], list[Request]]:
        """Take items whose summed cost fits ``size`` and summed bytes ``max_batch_bytes``."""
        max_bytes = self._max_batch_bytes
        spent_bytes = 0

        def cost(request: Request) -> float:
            nonlocal spent_bytes
            spent_bytes += request.nbytes
            if max_bytes is not None and spent_bytes > max_bytes:
                return math.inf  # stops the batch before this item (unless it is the first)
            return request.cost

        return self._queue.take(self._queue.maxsize, max_cost=size, cost=cost)

    def _release_slot_locked(self) -> None:
        self._active -= 1
        if self._staged is not None:  # a staged batch waits for exactly this
            self._work.notify()
        if self._closing and self._active == 0:
            self._drained.notify_all()

    # -- running batches ----------------------------------------------------------------

    def _worker(self) -> None:
        """A worker thread: run batches while there are items, wait while there are none.

        Nothing from user code ends it (`BatchRunner` gives a batch's items whatever its
        function raised); an error of the engine's own logic here closes the engine,
        failing every pending item with `ClosedError` naming the cause.
        """
        holding = False  # a slot taken and not yet handed to a batch (or released)
        batch: list[Request] | None = None
        try:
            while True:
                # Callers the last batch released are expected back; when the cost model
                # says they are worth waiting for, sleep until all are back (one wake-up,
                # not one per arrival) or the wait stops paying.
                batch = None
                expected = min(self._expected, self.current_batch_size)
                patience = 0.0
                if expected > 1 and len(self._queue) < expected:
                    patience = self.planned_wait(1, expected)
                since = time.monotonic()
                deliberate = False
                with self._lock:
                    self._idle_workers += 1
                    while (
                        self._paused
                        or self._active >= self._max_concurrent
                        or (not len(self._queue) and self._staged is None)
                    ):
                        if self._closed:
                            self._idle_workers -= 1
                            return
                        if patience > 0:
                            self._wake_at = expected
                            self._work.wait(patience)
                            patience, deliberate = 0.0, True
                        else:
                            self._wake_at = 1
                            self._work.wait()
                    self._wake_at = 1
                    self._idle_workers -= 1
                    self._active += 1
                    holding = True
                    staged, self._staged = self._staged, None
                    spare = self._active < self._max_concurrent and len(self._queue) > 1
                if staged is not None:  # in flight since it was staged: the slot is its
                    batch, holding = staged.batch, False
                if spare:  # more items than this batch may take: let another worker start one
                    self._wake_worker()
                if staged is not None:
                    self._runner.run_sync(staged.batch, None, staged.prepared)
                    continue
                delay = self._interval_remaining()
                if delay > 0:
                    self._clock.sleep(delay)
                if self._wait_for_stragglers(expected, since) or deliberate:
                    with self._lock:
                        self._tally.waits += 1
                batch = self._claim()
                holding = False  # the batch holds the slot now, or it was released
                if batch:
                    self._runner.run_sync(batch, None)
        except BaseException as exc:
            self._fail_engine(exc, holding=holding, batch=batch)

    def _fail_engine(
        self, exc: BaseException, *, holding: bool = False, batch: list[Request] | None = None
    ) -> None:
        """Close the engine after an internal error: every pending item gets `ClosedError`.

        ``holding``: the failing thread holds a slot no batch owns; ``batch``: the batch
        it was running (still in flight if its outcomes were not delivered).
        """
        _log.error("%s failed internally and closes itself", self._label(), exc_info=exc)
        with self._lock:
            if self._cause is None:
                self._cause = exc
            self._closing = True
            orphan = batch is not None and self._in_flight.pop(id(batch), None) is not None
            if holding or orphan:
                self._release_slot_locked()
            thread = threading.current_thread()
            if thread in self._workers:
                self._workers.remove(thread)
        if orphan and batch:
            self._fail_closed([], batch)
        self._shut_down()

    def _wait_for_stragglers(self, expected: int, since: float) -> bool:
        """Holding a slot, wait for released callers to resubmit while it pays (`wait_budget`).

        ``since`` is when the wait for them began (``time.monotonic``). Returns whether
        it waited.
        """
        waited = False
        while not self._closing and not self._paused:
            remaining = self.planned_wait(len(self._queue), expected) - (time.monotonic() - since)
            if remaining <= 0:
                break
            waited = True
            with self._lock:
                self._idle_workers += 1
                self._wake_at = expected
                if len(self._queue) < expected:
                    self._work.wait(min(remaining, _WAIT_SLICE))
                self._wake_at = 1
                self._idle_workers -= 1
        return waited

    def planned_wait(self, queued: int, expected: int) -> float:
        """Seconds worth waiting for ``expected`` items with ``queued`` in hand, per the
        fitted cost model (`wait_budget`); 0 means dispatch now."""
        if self._max_wait <= 0 or queued >= expected:
            return 0.0
        return wait_budget(
            self._current_fit(),
            queued=queued,
            expected=expected,
            max_wait=self._max_wait,
            latency_target=self._latency_target,
        )

    def _current_fit(self) -> tuple[float, float] | None:
        """The latest cost-model fit (`BatchTally.fit`)."""
        with self._lock:
            return self._tally.fit()

    async def _run_async(self, batch: list[Request], loop: asyncio.AbstractEventLoop) -> None:
        """Run ``batch`` as a task on ``loop``, then dispatch again if items are waiting."""
        private = self._private_loop
        try:
            await self._runner.run_async(
                batch, loop, callers_loop=private is None or loop is not private.loop
            )
        finally:
            if len(self._queue) and loop not in self._pending_loops and not self._closed:
                self._schedule(loop, threadsafe=False)

    def _record(
        self, size: int, duration: float, failed: int, ok: bool, batch_id: int | None
    ) -> bool:
        """Count a finished batch and free its slot.

        Returns whether its outcomes are still to be delivered: False when `close`
        already failed its items. ``batch_id`` None: a batch run straight from an
        inbox, which only its own loop completes.
        """
        try:
            self._controller.observe(size, duration, ok)
        except Exception:
            _log.exception("batch-size controller %r failed", self._controller)
        with self._lock:
            owned = batch_id is None or self._in_flight.pop(batch_id, None) is not None
            self._tally.add_batch(size, duration, failed, ok, owned)
            self._expected = size + len(self._queue)
            self._release_slot_locked()
        return owned

    # -- control ----------------------------------------------------------------------------

    def pause(self) -> None:
        """Start no new batch until `resume`; items keep queueing, running batches finish."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Start batches again after `pause`."""
        with self._lock:
            self._paused = False
        if (len(self._queue) or self._staged is not None) and not self._closed:
            self._kick_all()

    def set_max_batch_size(self, n: int) -> None:
        """Change the hard cap on batch size; takes effect for the next batch."""
        positive_int("max_batch_size", n)
        self._max_batch_size = n
        controller = self._controller
        if isinstance(controller, Fixed):
            controller.set_bounds(n, n)
        elif isinstance(controller, BoundedController):
            controller.set_bounds(min(controller.min_size, n), n)

    def set_max_wait(self, seconds: float) -> None:
        """Change the upper bound of deliberate waits; takes effect for the next batch."""
        check_number("max_wait", seconds, minimum=0)
        self._max_wait = float(seconds)

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
        here = _running_loop()
        self._refuse_inside_batch(here)
        with self._lock:
            self._closing = True
            drain = not self._paused
        if here is not None:
            self._flush_inbox(here)  # this loop's last items join the queue (or fail)
            if self._is_async:
                timeout = 0.0
        self._fail_dead_inboxes()
        if drain and (len(self._queue) or self._staged is not None):
            self._kick_all()
        with self._lock:
            self._drained.wait_for(
                lambda: (
                    self._active == 0
                    and (not drain or (not len(self._queue) and self._staged is None))
                ),
                timeout,
            )
        self._shut_down()

    def _shut_down(self) -> None:
        """Refuse items, fail every one still queued or running, stop the engine's threads."""
        with self._lock:
            self._closing = True
        leftovers = self._queue.close()
        with self._lock:
            abandoned = [request for batch in self._in_flight.values() for request in batch]
            self._in_flight.clear()
            self._staged = None
            self._closed = True
            self._work.notify_all()
            self._drained.notify_all()
        self._stop_reaping.set()
        self._fail_closed(leftovers, abandoned)
        if self._private_loop is not None:
            self._private_loop.stop(_LOOP_STOP_TIMEOUT)

    def _refuse_inside_batch(self, here: asyncio.AbstractEventLoop | None) -> None:
        """`close` waits for running batches, so it must not run inside one."""
        thread = threading.current_thread()
        if thread in self._workers or (here is not None and here in self._dispatching):
            raise RuntimeError(
                "close() cannot be called from inside the batch function, a listener or a "
                "future's done-callback: it waits for the engine's own threads; call it "
                "from another thread"
            )

    def _fail_dead_inboxes(self) -> None:
        """Fail the inbox items of closed event loops: no dispatch round will run there."""
        for loop in [loop for loop in list(self._inboxes) if loop.is_closed()]:
            inbox = self._inboxes.pop(loop, None)
            self._pending_loops.discard(loop)
            if not inbox:
                continue
            for future in inbox.futures:
                if not future.done():
                    with contextlib.suppress(RuntimeError):  # no callbacks can run there
                        future.set_exception(ClosedError("the event loop of this item closed"))

    def _reset_after_fork(self) -> None:
        """In a forked child: start over empty, with new locks and no threads.

        Only the forking thread exists in the child; the parent's workers, loop
        threads and callers do not, and a lock one of them held would stay held.
        Items pending at the fork belong to the parent: the child drops its copies.
        Counters are kept.
        """
        self._new_locks()
        self._queue.reset_after_fork()
        self._active = self._idle_workers = self._expected = 0
        self._wake_at = 1
        self._workers = []
        self._in_flight = {}
        self._staged = None
        self._pending_loops = set()
        self._inboxes = {}
        self._dispatching = set()
        self._private_loop = None
        self._home_loop = None
        self._shared = False
        self._reaper = None

    async def aclose(self, timeout: float | None = None) -> None:
        """`close` from a coroutine: waits in a thread so this loop keeps running batches."""
        await asyncio.to_thread(self.close, timeout)

    def _fail_closed(self, leftovers: list[Request], abandoned: list[Request]) -> None:
        here = _running_loop()
        rest = []
        for request in leftovers:
            if request.kind == CFUTURE and self._cause is None:  # else they get the cause
                request.sink.cancel()
                request.sink.set_running_or_notify_cancel()
            else:
                rest.append(request)
        with self._lock:
            self._tally.cancelled += len(leftovers) - len(rest)
        rest += abandoned
        if rest:
            reason = "the engine was closed before this item finished"
            if self._cause is not None:
                reason += f" (it closed itself after an internal error: {self._cause!r})"
            errors = [ClosedError(reason) for _ in rest]
            deliver(rest, errors, [False] * len(rest), here)

    # -- live state ---------------------------------------------------------------------------

    @property
    def queue_size(self) -> int:
        """Items waiting now (including those not yet moved from an asyncio inbox of a
        loop that is still open)."""
        inboxes = list(self._inboxes.items())
        return len(self._queue) + sum(len(inbox) for loop, inbox in inboxes if not loop.is_closed())

    @property
    def active_batches(self) -> int:
        """Batches running now."""
        return self._active

    @property
    def current_batch_size(self) -> int:
        """The size limit of the next batch: the controller's size, capped."""
        return max(1, min(self._controller.next_size(), self._max_batch_size))

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @property
    def max_wait(self) -> float:
        return self._max_wait

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def closed(self) -> bool:
        """True once `close` was called (submits then raise `ClosedError`)."""
        return self._closing

    @property
    def controller(self) -> SizeController:
        return self._controller

    @property
    def placement(self) -> str:
        """Where plain-``def`` batches of asyncio callers run now (``"task"`` for async fns)."""
        if self._is_async:
            return "task"
        return "inline" if self._runs_inline() else "thread"

    def statistics(self) -> EngineStatistics:
        """A frozen snapshot of counters and live state."""
        fit = self._current_fit()
        with self._lock:
            tally = self._tally
            queue_size = self.queue_size
            return EngineStatistics(
                name=self.name,
                batches=tally.batches,
                items=tally.items,
                succeeded=tally.succeeded,
                failed=tally.failed,
                current_batch_size=self.current_batch_size,
                queue_depth=queue_size,
                rate=tally.rate(self._clock.now() - self._started_at),
                queue_size=queue_size,
                active_batches=self._active,
                max_batch_size=self._max_batch_size,
                max_wait=self._max_wait,
                paused=self._paused,
                closed=self._closing,
                placement=self.placement,
                expired=tally.expired,
                cancelled=tally.cancelled,
                failed_batches=tally.failed_batches,
                waits=tally.waits,
                mean_batch_size=tally.mean_batch_size,
                mean_batch_duration=tally.mean_batch_duration,
                cost_fixed=None if fit is None else fit[0],
                cost_per_item=None if fit is None else fit[1],
            )

    def __repr__(self) -> str:
        state = "closed" if self._closing else "paused" if self._paused else "running"
        return (
            f"Engine({self.name or getattr(self._fn, '__name__', 'fn')!s}, {state}, "
            f"queue_size={len(self._queue)}, active_batches={self._active}, "
            f"batch_size={self.current_batch_size}, placement={self.placement})"
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()
