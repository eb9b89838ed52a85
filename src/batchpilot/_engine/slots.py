"""Slots and staging: who may start a batch, which items it takes, and counting it when done.

A batch needs one of ``max_concurrent`` slots (`Slots.acquire`). `Slots.claim` takes
the next batch from the queue for a held slot; the one step that picks which waiting
items form it is a `TakeBatch` policy (`take_by_count`, `take_by_budget`), so another
selection rule replaces that function and nothing else. `Slots.stage_next` takes and
collates the next batch ahead of a free slot; `Slots.record` counts a finished batch
and frees its slot. Everything runs under the engine's one lock (`EngineState`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

from .._core.collate import Collator
from .._core.sizing import SizeController
from .queue import BoundedPriorityQueue
from .requests import Request
from .state import EngineState, Staged, running_loop

__all__ = ["Expire", "Slots", "TakeBatch", "take_by_budget", "take_by_count"]

_log = logging.getLogger("batchpilot")

#: ``expire(requests, here)``: fail requests found past their deadline (`Deadlines.expire`).
Expire = Callable[[list[Request], Any], None]


class TakeBatch(Protocol):
    """Removes the next batch of at most ``size`` (items, or summed cost) from ``queue``;
    returns ``(batch, expired)``."""

    def __call__(
        self, queue: BoundedPriorityQueue[Request], size: int
    ) -> tuple[list[Request], list[Request]]: ...


def take_by_count(
    queue: BoundedPriorityQueue[Request], size: int
) -> tuple[list[Request], list[Request]]:
    """Up to ``size`` items, highest priority first."""
    return queue.take(size)


def take_by_budget(max_bytes: int | None) -> TakeBatch:
    """Items whose summed ``cost`` fits ``size`` and summed ``nbytes`` fits ``max_bytes``."""

    def take(
        queue: BoundedPriorityQueue[Request], size: int
    ) -> tuple[list[Request], list[Request]]:
        spent_bytes = 0

        def cost(request: Request) -> float:
            nonlocal spent_bytes
            spent_bytes += request.nbytes
            if max_bytes is not None and spent_bytes > max_bytes:
                return math.inf  # stops the batch before this item (unless it is the first)
            return request.cost

        return queue.take(queue.maxsize, max_cost=size, cost=cost)

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
    ) -> None:
        self._state = state
        self._current_size = current_size
        self._collator = collator
        self._controller = controller
        self._take = take
        self._expire = expire
        self.min_interval = min_interval

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

    def claim(self, *, slot: bool = True) -> list[Request]:
        """Take the next batch for a slot already acquired; release it if nothing is live.

        ``slot=False``: the batch is being staged (`stage_next`), no slot is held.
        """
        state = self._state
        taken, expired = self._take(state.queue, self._current_size())
        if state.has_cfutures:  # they must be moved to RUNNING (and may have been cancelled)
            batch = [request for request in taken if not request.cancelled()]
        else:  # asyncio futures cancelled by their callers are done; a thread caller
            # (no loop) never cancels, so its Waiter is not asked (a call per item)
            batch = [r for r in taken if r.loop is None or not r.sink.done()]
        with state.lock:
            state.tally.cancelled += len(taken) - len(batch)
            if batch:
                state.in_flight[id(batch)] = batch
                state.last_start = state.clock.now()
            elif slot:
                self.release_locked()
        if expired:
            self._expire(expired, running_loop())
        return batch

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
        self, *, size: int, duration: float, failed: int, ok: bool, batch_id: int | None
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
        state = self._state
        with state.lock:
            owned = batch_id is None or state.in_flight.pop(batch_id, None) is not None
            state.tally.add_batch(size, duration, failed, ok, owned)
            state.returning_callers = size + len(state.queue)
            self.release_locked()
        return owned

    def interval_remaining(self) -> float:
        """Seconds until ``min_interval`` allows the next batch to start (0: now)."""
        if self.min_interval <= 0:
            return 0.0
        state = self._state
        return max(state.last_start + self.min_interval - state.clock.now(), 0.0)
