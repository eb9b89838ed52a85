"""Loop dispatch: asyncio callers' inboxes and the one dispatch callback per event loop.

An asyncio caller appends its item to its loop's `_Inbox` (no lock: only that loop's
thread touches it) and `LoopDispatch.schedule` arms one `LoopDispatch.dispatch_on`
callback on the loop, which runs a dispatch round in named steps:

1. `_take_inbox`: run batches straight from the inbox inline (nothing else queued,
   so order holds) and move what is left into the shared queue;
2. keep ``min_batch_interval`` by re-arming the callback later;
3. then, by what the function is: `_start_tasks` (``async def``: tasks on this loop,
   or on the private loop once several loops share the engine), staging the next
   batch and waking a worker (plain ``def`` run on threads), or
   `_run_queued_inline` (plain ``def`` run inline on the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .._core.cost import CloseReason
from .._core.loopthread import LoopThread
from ..errors import ClosedError, QueueFullError
from .execute import BatchRunner
from .policy import PlacementProbe
from .requests import AFUTURE, Request, deliver
from .slots import Slots
from .state import INLINE_ROUND, LOOP_STOP_TIMEOUT, EngineState, Fail

__all__ = ["Inbox", "LoopDispatch"]

_FUTURE_DONE = asyncio.Future.done
_COUNT = CloseReason.COUNT
_IDLE_WORKER = CloseReason.IDLE_WORKER


class Inbox:
    """Items an event loop submitted since its last dispatch callback, and their futures.

    Two parallel lists, not `Request` objects: the dispatch callback usually runs
    them as batches straight away (`LoopDispatch._run_inbox`) and makes requests only
    for what has to wait in the shared queue. ``room`` is the queue's free space when
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


class LoopDispatch:
    """Dispatch on asyncio callers' event loops (and the engine's private loop).

    Args:
        state: the shared state (lock, queue, counters, lifecycle).
        slots: slots, claims and staging.
        runner: runs batches inline or as tasks.
        probe: decides inline versus thread placement (``placement="auto"``).
        is_async: the batch function is ``async def``.
        placement: ``"auto"``, ``"inline"`` or ``"thread"``.
        inline_allowed: ``"auto"`` may run inline (no retry delays).
        current_size: the size limit of the next batch.
        wake_worker: wakes or starts a worker for queued items.
        loop_name: the private loop thread's name.
        fail: closes the engine after an internal error of a dispatch round.
    """

    def __init__(
        self,
        state: EngineState,
        slots: Slots,
        runner: BatchRunner,
        probe: PlacementProbe,
        *,
        is_async: bool,
        placement: str,
        inline_allowed: bool,
        current_size: Callable[[], int],
        wake_worker: Callable[[], None],
        loop_name: str,
        fail: Fail,
    ) -> None:
        self._state = state
        self._slots = slots
        self._runner = runner
        self._probe = probe
        self._is_async = is_async
        self._placement = placement
        self._inline_allowed = inline_allowed
        self._current_size = current_size
        self._wake_worker = wake_worker
        self._loop_name = loop_name
        self._fail = fail
        # Each loop's items since its last dispatch round (touched only on that loop).
        self.inboxes: dict[asyncio.AbstractEventLoop, Inbox] = {}
        self.pending_loops: set[asyncio.AbstractEventLoop] = set()  # a callback is armed
        # Loops inside a dispatch round now (close() from an inline batch must refuse).
        self.dispatching: set[asyncio.AbstractEventLoop] = set()
        # The one loop that submitted so far; once a second one (or a thread caller
        # of an async function) shows up, async batches run on the private loop only,
        # which outlives every caller's loop.
        self.home_loop: asyncio.AbstractEventLoop | None = None
        self._shared = False  # several loops submit: async batches use the private loop
        self._private_loop: LoopThread | None = None  # started on first need

    # -- loops ------------------------------------------------------------------------

    def note_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the first submitting loop; a second one makes the engine shared."""
        with self._state.lock:
            if self.home_loop is None:
                self.home_loop = loop
            elif loop is not self.home_loop:
                self._shared = True

    def loop_thread(self) -> LoopThread:
        """The private event loop thread (started on first use)."""
        if self._private_loop is None:
            with self._state.lock:
                if self._private_loop is None:
                    self._private_loop = LoopThread(self._loop_name)
                    # Thread callers of an async function: asyncio callers' batches may
                    # hold their items, so those run on this loop too.
                    self._shared = True
        return self._private_loop

    def _on_private_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        private = self._private_loop
        return private is not None and loop is private.loop

    def stop_private_loop(self) -> None:
        if self._private_loop is not None:
            self._private_loop.stop(LOOP_STOP_TIMEOUT)

    def schedule(self, loop: asyncio.AbstractEventLoop, *, threadsafe: bool) -> None:
        """Arrange one `dispatch_on` callback on ``loop`` (at most one pending per loop)."""
        self.pending_loops.add(loop)
        try:
            if threadsafe:
                loop.call_soon_threadsafe(self.dispatch_on, loop)
            else:
                loop.call_soon(self.dispatch_on, loop)
        except RuntimeError:  # the loop is closed; let a thread take the items instead
            self.pending_loops.discard(loop)
            if not self._is_async:
                self._wake_worker()

    def schedule_private(self) -> None:
        """Arrange a dispatch round on the private loop (from any thread)."""
        loop = self.loop_thread().loop
        if loop not in self.pending_loops:
            self.schedule(loop, threadsafe=True)

    def runs_inline(self, *, probing: bool = False) -> bool:
        """Run plain-def batches inline on the loop? ``probing``: a dispatch that may
        run inline once to measure again (see `PlacementProbe`)."""
        if self._placement in ("auto", "measured"):
            if not self._inline_allowed:
                return False
            return self._probe.run_inline() if probing else self._probe.inline
        return self._placement == "inline"

    # -- inboxes ----------------------------------------------------------------------

    def flush_inbox(self, loop: asyncio.AbstractEventLoop) -> None:
        """Move ``loop``'s inbox into the queue (on that loop's thread)."""
        inbox = self.inboxes.pop(loop, None)
        if inbox:
            self._queue_inbox(inbox, loop, 0)

    def _queue_inbox(self, inbox: Inbox, loop: asyncio.AbstractEventLoop, start: int) -> None:
        """Put ``inbox``'s items from ``start`` on into the queue; fail what does not fit."""
        requests = inbox.requests(loop, start)
        queue = self._state.queue
        error: Exception
        try:
            added = queue.put_many(requests)
            error = QueueFullError(f"queue full ({queue.maxsize} items)")
        except ClosedError as exc:
            added, error = 0, exc
        rest = requests[added:]
        if rest:
            deliver(rest, [error] * len(rest), [False] * len(rest), loop)

    def _requeue_pending(self, inbox: Inbox, loop: asyncio.AbstractEventLoop) -> None:
        """Queue the items of ``inbox`` that have no outcome yet (a batch raised past them)."""
        pending = [i for i, future in enumerate(inbox.futures) if not future.done()]
        rest = Inbox(inbox.room)
        rest.items = [inbox.items[i] for i in pending]
        rest.futures = [inbox.futures[i] for i in pending]
        self._queue_inbox(rest, loop, 0)

    def fail_dead_inboxes(self) -> None:
        """Fail the inbox items of closed event loops: no dispatch round will run there."""
        for loop in [loop for loop in list(self.inboxes) if loop.is_closed()]:
            inbox = self.inboxes.pop(loop, None)
            self.pending_loops.discard(loop)
            if not inbox:
                continue
            for future in inbox.futures:
                if not future.done():
                    with contextlib.suppress(RuntimeError):  # no callbacks can run there
                        future.set_exception(ClosedError("the event loop of this item closed"))

    def open_inboxes_size(self) -> int:
        """Items in the inboxes of loops still open (not yet in the queue)."""
        inboxes = list(self.inboxes.items())
        return sum(len(inbox) for loop, inbox in inboxes if not loop.is_closed())

    # -- a dispatch round ---------------------------------------------------------------

    def dispatch_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """One dispatch round on ``loop`` (runs as a loop callback).

        A `KeyboardInterrupt` or `SystemExit` from an inline batch (its items already
        have it) goes on into the loop, and the round's other items wait for the next
        one; anything else escaping is an internal failure that closes the engine.
        """
        self.pending_loops.discard(loop)
        self.dispatching.add(loop)
        try:
            self._round(loop)
        except (KeyboardInterrupt, SystemExit):
            if len(self._state.queue) and not loop.is_closed():
                self.schedule(loop, threadsafe=False)
            raise
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.dispatching.discard(loop)

    def _round(self, loop: asyncio.AbstractEventLoop) -> None:
        state = self._state
        inline = not self._is_async and state.staged is None and self.runs_inline(probing=True)
        until = state.clock.now() + INLINE_ROUND
        ran = self._take_inbox(loop, inline, until)
        delay = self._slots.interval_remaining()
        if delay > 0 and len(state.queue):
            self.pending_loops.add(loop)
            loop.call_later(delay, self.dispatch_on, loop)
        elif self._is_async:
            self._start_tasks(loop)
        elif not inline:
            self._slots.stage_next()
            self._wake_worker()
        else:
            self._run_queued_inline(loop, until, ran)

    def _take_inbox(self, loop: asyncio.AbstractEventLoop, inline: bool, until: float) -> bool:
        """Step 1: run ``loop``'s inbox inline while that keeps order, queue the rest;
        return whether a batch ran."""
        inbox = self.inboxes.pop(loop, None)
        if not inbox:
            return False
        taken = 0
        if inline and not len(self._state.queue) and self._slots.min_interval <= 0:
            try:
                taken = self._run_inbox(inbox, loop, until)
            except BaseException:  # the untaken items wait in the queue
                self._requeue_pending(inbox, loop)
                raise
        if taken < len(inbox):
            self._queue_inbox(inbox, loop, taken)
        return taken > 0

    def _start_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Step 3 for an ``async def`` function: a task per batch while slots are free
        (on the private loop once several loops share the engine)."""
        if self._shared and not self._on_private_loop(loop):
            self.schedule_private()
            return
        while self._slots.acquire():
            batch = self._slots.claim()
            if not batch:
                continue
            if self._shared and loop is not self.loop_thread().loop:
                # Another loop's items may be in it (it became shared meanwhile).
                self.loop_thread().loop.call_soon_threadsafe(self._start_task, batch)
            else:
                loop.create_task(self._run_async(batch, loop))

    def _run_queued_inline(self, loop: asyncio.AbstractEventLoop, until: float, ran: bool) -> None:
        """Step 3 inline: like a task that drains its queue, run the batches already
        queued back to back (bounded, so other coroutines get the loop again soon)."""
        while self._state.clock.now() < until and self._slots.acquire():
            batch = self._slots.claim()
            if batch:
                self._runner.run_sync(batch, loop)
                ran = True
        # After a batch, callers woken for the next iteration resubmit in it; a
        # callback armed now runs right after them, in that same iteration.
        if (ran or len(self._state.queue)) and loop not in self.pending_loops:
            self.schedule(loop, threadsafe=False)

    # -- running batches on a loop ------------------------------------------------------

    def _start_task(self, batch: list[Request]) -> None:
        """Run ``batch`` as a task on the private loop (this callback runs there)."""
        loop = self.loop_thread().loop
        loop.create_task(self._run_async(batch, loop))

    async def _run_async(self, batch: list[Request], loop: asyncio.AbstractEventLoop) -> None:
        """Run ``batch`` as a task on ``loop``, then dispatch again if items are waiting."""
        try:
            await self._runner.run_async(batch, loop, callers_loop=not self._on_private_loop(loop))
        finally:
            state = self._state
            if len(state.queue) and loop not in self.pending_loops and not state.finished:
                self.schedule(loop, threadsafe=False)

    def _run_inbox(self, inbox: Inbox, loop: asyncio.AbstractEventLoop, until: float) -> int:
        """Run batches straight from ``loop``'s inbox while a slot is free and time is
        left (nothing else is queued, so order holds); return how many items it took.

        The common asyncio case: no `Request`, no trip through the shared queue.
        """
        items, futures = inbox.items, inbox.futures
        now = self._state.clock.now
        taken = 0
        while taken < len(items) and now() < until and self._slots.acquire(inbox=True):
            stop = taken + self._current_size()
            reason = _COUNT if stop <= len(items) else _IDLE_WORKER
            self._run_direct(items[taken:stop], futures[taken:stop], loop, reason)
            taken = min(stop, len(items))
        return taken

    def _run_direct(
        self,
        items: list[Any],
        futures: list[asyncio.Future[Any]],
        loop: asyncio.AbstractEventLoop,
        reason: CloseReason,
    ) -> None:
        """Run one batch from an inbox inline, holding a slot; complete its futures
        (``reason``: why the batch closed).

        A batch whose call raises becomes requests and takes the general path
        (`BatchRunner.run_sync`, which replays the error: the function is not called twice).
        """
        state = self._state
        if any(map(_FUTURE_DONE, futures)):  # callers that cancelled are dropped
            live = [
                (item, future)
                for item, future in zip(items, futures, strict=True)
                if not future.done()
            ]
            with state.lock:
                state.tally.cancelled += len(items) - len(live)
                if not live:
                    self._slots.release_locked()
                    return
            items, futures = [item for item, _ in live], [future for _, future in live]
        started = state.clock.now()
        sample = self._probe.start_sample()
        try:
            values = self._runner.call_slice(items, 0, len(items))
        except BaseException as exc:
            batch = _loop_requests(items, futures, loop)
            with state.lock:
                self._slots.track_locked(batch, reason)
            self._runner.run_sync(batch, loop, error=exc)
            return
        self._probe.end_sample(sample)
        duration = state.clock.now() - started
        self._slots.record(
            size=len(items), duration=duration, failed=0, ok=True, batch_id=None, reason=reason
        )
        for future, value in zip(futures, values, strict=True):
            if not future.done():
                future.set_result(value)

    def reset_after_fork(self) -> None:
        """In a forked child: no inboxes, loops or private loop (they are the parent's).

        ``inboxes`` and ``pending_loops`` are emptied in place: the facade holds them.
        """
        self.inboxes.clear()
        self.pending_loops.clear()
        self.dispatching = set()
        self.home_loop = None
        self._shared = False
        self._private_loop = None
