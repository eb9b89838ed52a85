"""Slots and staging: who may start a batch, which items it takes, and counting it when done.

A batch needs one of ``max_concurrent`` slots (`Slots.acquire`). `Slots.claim` takes
the next batch from the queue for a held slot; the one step that picks which waiting
items form it is a `TakeBatch` policy (`take_by_count`, `take_by_budget`), so another
selection rule replaces that function and nothing else. `Slots.stage_next` takes and
collates the next batch ahead of a free slot; `Slots.record` counts a finished batch
and frees its slot. Everything runs under the engine's one lock (`EngineState`).

Why a batch closed (`CloseReason`) is decided when it is taken: the take policy says
``count``, ``budget`` or ``idle_worker`` (it took everything waiting); `Slots.claim`
turns the last into ``max_wait`` after a deliberate wait for stragglers and into
``shutdown`` while the engine closes. The reason stays with the in-flight batch
(``EngineState.close_reasons``, set under the lock the claim takes anyway) until
`Slots.record` counts it, so neither the hot path nor an item pays for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

from .._core.collate import Collator
from .._core.cost import CloseReason
from .._core.sizing import SizeController
from .queue import BoundedPriorityQueue
from .requests import Request
from .state import EngineState, Lifecycle, Staged, running_loop

__all__ = [
    "Expire",
    "ObserveCost",
    "Slots",
    "TakeBatch",
    "Taken",
    "take_by_budget",
    "take_by_count",
]

_log = logging.getLogger("batchpilot")

#: ``expire(requests, here)``: fail requests found past their deadline (`Deadlines.expire`).
Expire = Callable[[list[Request], Any], None]


#: ``observe_cost(cost, padded_cost, duration, ok)``: a finished batch's real and padded
#: cost for the controller of the cost cap (`CostPolicy.observe_batch`).
ObserveCost = Callable[[float, float, float, bool], None]

#: What a take returns: the batch, the expired requests it found, and why the batch closed.
Taken = tuple[list[Request], list[Request], CloseReason]

_COUNT = CloseReason.COUNT
_BUDGET = CloseReason.BUDGET
_IDLE_WORKER = CloseReason.IDLE_WORKER
_MAX_WAIT = CloseReason.MAX_WAIT
_SHUTDOWN = CloseReason.SHUTDOWN
_OPEN_STATE = Lifecycle.OPEN


class TakeBatch(Protocol):
    """Removes the next batch of at most ``size`` (items, or summed cost) from ``queue``;
    returns ``(batch, expired, reason)`` (`Taken`): ``count`` when it reached the size
    limit, ``budget`` when the next waiting item would have passed a cost budget,
    ``idle_worker`` when it took everything waiting."""

    def __call__(self, queue: BoundedPriorityQueue[Request], size: int) -> Taken: ...


def take_by_count(queue: BoundedPriorityQueue[Request], size: int) -> Taken:
    """Up to ``size`` items, highest priority first."""
    batch, expired = queue.take(size)
    return batch, expired, _COUNT if len(batch) >= size else _IDLE_WORKER


def take_by_budget(max_bytes: int | None) -> TakeBatch:
    """Items whose summed ``cost`` fits ``size`` and summed ``nbytes`` fits ``max_bytes``."""

    def take(queue: BoundedPriorityQueue[Request], size: int) -> Taken:
        spent_bytes = 0
        offered = 0  # items the queue asked the cost of: all taken, but for a refused one

        def cost(request: Request) -> float:
            nonlocal spent_bytes, offered
            offered += 1
            spent_bytes += request.nbytes
            if max_bytes is not None and spent_bytes > max_bytes:
                return math.inf  # stops the batch before this item (unless it is the first)
            return request.cost

        batch, expired = queue.take(queue.maxsize, max_cost=size, cost=cost)
        return batch, expired, _BUDGET if offered > len(batch) else _IDLE_WORKER

    return take


class Slots:
    """The engine's batch slots, its staged batch and its record of finished batches.

    Args:
        state: the shared state (lock, queue, counters).
        current_size: the size limit of the next batch (the facade's controller, capped).
        collator: collates a staged batch ahead of its slot.
        controller: observes each finished batch.
        take: picks the next batch from the queue (`TakeBatch`).
        expire: fails requests a claim found past their deadline.
        min_interval: seconds at least between the starts of two batches.
        observe_cost: with ``cost=``, told each finished batch's costs (`ObserveCost`).
    """

    def __init__(
        self,
        state: EngineState,
        current_size: Callable[[], int],
        collator: Collator,
        controller: SizeController,
        take: TakeBatch,
        expire: Expire,
        min_interval: float,
        observe_cost: ObserveCost | None = None,
    ) -> None:
        self._state = state
        self._current_size = current_size
        self._collator = collator
        self._controller = controller
        self._take = take
        self._expire = expire
        self.min_interval = min_interval
        self._observe_cost = observe_cost

    def acquire(self, *, inbox: bool = False) -> bool:
        """Take a batch slot if one is free, not paused, and there is work (queued
        items, or ``inbox``: the caller holds an inbox to run)."""
        state = self._state
        with state.lock:
            if state.paused or state.active >= state.max_concurrent:
                return False
            if not inbox and not len(state.queue):
                return False
            state.active += 1
            return True

    def release_locked(self) -> None:
        """Free a slot (the lock is held): wake a worker for a staged batch, or `close`."""
        state = self._state
        state.active -= 1
        if state.staged is not None:  # a staged batch waits for exactly this
            state.work.notify()
        if not state.open and state.active == 0:
            state.drained.notify_all()

    def count_cancelled(self, count: int) -> None:
        """Count ``count`` items whose callers cancelled before a batch took them."""
        with self._state.lock:
            self._state.tally.cancelled += count

    def claim(self, *, slot: bool = True, waited: bool = False) -> list[Request]:
        """Take the next batch for a slot already acquired; release it if nothing is live.

        ``slot=False``: the batch is being staged (`stage_next`), no slot is held.
        ``waited``: the worker waited deliberately for stragglers before this claim.
        """
        state = self._state
        taken, expired, reason = self._take(state.queue, self._current_size())
        if reason is _IDLE_WORKER:  # it took what was waiting: after a wait, or to close
            reason = _MAX_WAIT if waited else reason
            reason = reason if state.lifecycle is _OPEN_STATE else _SHUTDOWN
        if state.has_cfutures:  # they must be moved to RUNNING (and may have been cancelled)
            batch = [request for request in taken if not request.cancelled()]
        else:  # asyncio futures cancelled by their callers are done; a thread caller
            # (no loop) never cancels, so its Waiter is not asked (a call per item)
            batch = [r for r in taken if r.loop is None or not r.sink.done()]
        with state.lock:
            state.tally.cancelled += len(taken) - len(batch)
            if batch:
                self.track_locked(batch, reason)
                state.last_start = state.clock.now()
            elif slot:
                self.release_locked()
        if expired:
            self._expire(expired, running_loop())
        return batch

    def track_locked(self, batch: list[Request], reason: CloseReason) -> None:
        """Mark ``batch`` in flight, closed for ``reason`` (the lock is held)."""
        key = id(batch)
        self._state.in_flight[key] = batch
        self._state.close_reasons[key] = reason

    def stage_next(self) -> None:
        """While every slot is busy and a full batch waits, take and collate it now.

        Runs on an event loop (whose thread is otherwise idle while a worker runs a
        batch), so the worker that frees a slot calls the batch function at once:
        taking and collating the next batch leaves the path between two calls.
        """
        state = self._state
        if (
            state.staged is not None
            or self.min_interval > 0
            or state.paused
            or state.active < state.max_concurrent
            or len(state.queue) < self._current_size()
        ):
            return
        batch = self.claim(slot=False)
        if not batch:
            return
        prepared: tuple[Any, Any] | None
        try:
            prepared = self._collator.collate([request.item for request in batch])
        except Exception:
            prepared = None
        with state.lock:
            state.staged = Staged(batch, prepared)
            state.work.notify()

    def take_staged_locked(self) -> Staged | None:
        """Hand the staged batch (if any) to a worker that took a slot (the lock is held)."""
        staged, self._state.staged = self._state.staged, None
        return staged

    def record(
        self,
        *,
        size: int,
        duration: float,
        failed: int,
        ok: bool,
        batch_id: int | None,
        reason: CloseReason = _IDLE_WORKER,
        cost: float | None = None,
        padded_cost: float | None = None,
        oom_splits: int = 0,
    ) -> CloseReason | None:
        """Count a finished batch and free its slot.

        Returns why the batch closed when its outcomes are still to be delivered, None
        when `close` already failed its items. ``batch_id`` None: a batch run straight
        from an inbox, which only its own loop completes (``reason`` says why it closed;
        a tracked batch's reason is the one its claim kept). ``cost`` and
        ``padded_cost``: its real and padded cost (None: its size); ``oom_splits``:
        out-of-memory errors it met.
        """
        try:
            self._controller.observe(size, duration, ok)
            if self._observe_cost is not None and cost is not None and padded_cost is not None:
                self._observe_cost(cost, padded_cost, duration, ok)
        except Exception:
            _log.exception("batch-size controller %r failed", self._controller)
        state = self._state
        with state.lock:
            if batch_id is None:
                owned = True
            else:
                owned = state.in_flight.pop(batch_id, None) is not None
                reason = state.close_reasons.pop(batch_id, reason)
            state.tally.add_batch(size, duration, failed, ok, owned)
            state.tally.add_closing(reason, size, cost, padded_cost, oom_splits)
            state.returning_callers = size + len(state.queue)
            self.release_locked()
        return reason if owned else None

    def interval_remaining(self) -> float:
        """Seconds until ``min_interval`` allows the next batch to start (0: now)."""
        if self.min_interval <= 0:
            return 0.0
        state = self._state
        return max(state.last_start + self.min_interval - state.clock.now(), 0.0)
