"""A bounded, thread-safe, multi-priority queue whose entries carry deadlines."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from .._core.clock import SYSTEM_CLOCK, Clock
from ..errors import ClosedError, QueueFullError

__all__ = ["BoundedPriorityQueue", "Deadlined"]


class Deadlined(Protocol):
    """An entry with an optional absolute deadline on the queue's clock."""

    deadline: float | None


E = TypeVar("E", bound=Deadlined)


class BoundedPriorityQueue(Generic[E]):
    """Holds at most ``maxsize`` entries in ``levels`` priority levels.

    Higher levels are served first, FIFO within a level. ``put`` blocks while the
    queue is full, up to its timeout, then raises `QueueFullError`; after `close`
    it raises `ClosedError`. ``take`` never blocks and hands back expired entries
    separately, so the engine can fail them instead of processing them late.
    With ``expiring=False`` deadlines are never checked (the owner puts none), which
    makes ``take`` a bulk move.
    """

    def __init__(
        self, maxsize: int, levels: int = 1, clock: Clock = SYSTEM_CLOCK, *, expiring: bool = True
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.maxsize = maxsize
        self._levels: list[deque[E]] = [deque() for _ in range(levels)]
        self._count = 0
        self._expiring = expiring
        self._closed = False
        self._clock = clock
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._getters = 0  # threads blocked in wait(); put() notifies only when there are some
        self._putters = 0  # threads blocked in put() on a full queue

    def __len__(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, entry: E, priority: int = 0, timeout: float | None = None) -> None:
        """Add ``entry`` at ``priority`` (0 = lowest), waiting up to ``timeout`` s for room.

        ``timeout=None`` waits as long as it takes; ``0`` does not wait.
        """
        if not 0 <= priority < len(self._levels):
            raise ValueError(f"priority must be in [0, {len(self._levels) - 1}], got {priority}")
        with self._lock:
            if self._count >= self.maxsize and not self._closed:
                self._wait_for_room(timeout)
            if self._closed:
                raise ClosedError("queue is closed")
            self._levels[priority].append(entry)
            self._count += 1
            if self._getters:
                self._not_empty.notify()

    def _wait_for_room(self, timeout: float | None) -> None:
        end = None if timeout is None or timeout == math.inf else time.monotonic() + timeout
        while self._count >= self.maxsize and not self._closed:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFullError(f"queue full ({self.maxsize} items) after {timeout} s")
            self._putters += 1
            try:
                self._not_full.wait(remaining)
            finally:
                self._putters -= 1

    def put_many(self, entries: Sequence[E], priority: int = 0) -> int:
        """Add as many of ``entries`` as fit now, in order, without waiting.

        Returns how many were added (a prefix of ``entries``); the caller decides
        what the rest get. Raises `ClosedError` after `close`.
        """
        if not 0 <= priority < len(self._levels):
            raise ValueError(f"priority must be in [0, {len(self._levels) - 1}], got {priority}")
        with self._lock:
            if self._closed:
                raise ClosedError("queue is closed")
            room = self.maxsize - self._count
            accepted = entries if len(entries) <= room else entries[: max(room, 0)]
            self._levels[priority].extend(accepted)
            self._count += len(accepted)
            if self._getters and accepted:
                self._not_empty.notify(len(accepted))
        return len(accepted)

    def take(
        self,
        max_items: int,
        *,
        max_cost: float | None = None,
        cost: Callable[[E], float] | None = None,
    ) -> tuple[list[E], list[E]]:
        """Remove up to ``max_items`` live entries, highest priority first.

        With ``max_cost`` and ``cost``, stop before the entry that would push the
        summed cost over ``max_cost`` (the first entry is always taken, so one
        oversized item still moves). Returns ``(batch, expired)``.
        """
        with self._lock:
            if self._expiring or max_cost is not None:
                batch, expired = self._take_checked(max_items, max_cost, cost)
            else:  # no deadlines, no costs: move a prefix of each level in bulk
                batch, expired = [], []
                for level in reversed(self._levels):
                    popleft = level.popleft
                    batch += [popleft() for _ in range(min(max_items - len(batch), len(level)))]
            self._removed(len(batch) + len(expired))
        return batch, expired

    def _removed(self, count: int) -> None:
        """Account ``count`` entries taken out and wake as many blocked putters (the
        lock is held)."""
        if count:
            self._count -= count
            if self._putters:
                self._not_full.notify(count)

    def _take_checked(
        self, max_items: int, max_cost: float | None, cost: Callable[[E], float] | None
    ) -> tuple[list[E], list[E]]:
        """`take` entry by entry, checking deadlines and costs (the lock is held)."""
        batch: list[E] = []
        expired: list[E] = []
        spent = 0.0
        now = self._clock.now()
        for level in reversed(self._levels):
            while level and len(batch) < max_items:
                entry = level[0]
                if entry.deadline is not None and entry.deadline <= now:
                    expired.append(level.popleft())
                    continue
                if max_cost is not None and cost is not None:
                    item_cost = cost(entry)
                    if batch and spent + item_cost > max_cost:
                        max_items = len(batch)
                        break
                    spent += item_cost
                batch.append(level.popleft())
        return batch, expired

    def take_picked(
        self, max_items: int, pick: Callable[[list[E]], list[int]]
    ) -> tuple[list[E], list[E]]:
        """Remove the entries ``pick`` chooses among the first ``max_items`` live ones.

        The candidates are taken highest priority first (expired ones are removed and
        returned apart); ``pick`` gets them in that order and returns the positions to
        take (at least one when there are candidates). The others go back to the front
        of their levels, in their order. Returns ``(batch, expired)``.
        """
        with self._lock:
            candidates, levels, expired = self._pop_candidates(max_items)
            chosen = set(pick(candidates)) if candidates else set()
            batch = [entry for position, entry in enumerate(candidates) if position in chosen]
            for position in reversed(range(len(candidates))):
                if position not in chosen:
                    self._levels[levels[position]].appendleft(candidates[position])
            self._removed(len(batch) + len(expired))
        return batch, expired

    def _pop_candidates(self, max_items: int) -> tuple[list[E], list[int], list[E]]:
        """Pop up to ``max_items`` live entries (and the expired ones before them), with
        each one's level (the lock is held)."""
        candidates: list[E] = []
        levels: list[int] = []
        expired: list[E] = []
        now = self._clock.now()
        for index in reversed(range(len(self._levels))):
            level = self._levels[index]
            while level and len(candidates) < max_items:
                entry = level.popleft()
                if self._expiring and entry.deadline is not None and entry.deadline <= now:
                    expired.append(entry)
                else:
                    candidates.append(entry)
                    levels.append(index)
        return candidates, levels, expired

    def earliest_deadline(self) -> float | None:
        """The earliest deadline of a queued entry, or None.

        Entries of one level are FIFO and the owner gives them deadlines in order
        (one timeout for all), so only the head of each level is looked at.
        """
        with self._lock:
            heads = [level[0].deadline for level in self._levels if level]
        deadlines = [deadline for deadline in heads if deadline is not None]
        return min(deadlines) if deadlines else None

    def expire(self) -> list[E]:
        """Remove and return the entries whose deadline has passed (from each level's head)."""
        expired: list[E] = []
        with self._lock:
            now = self._clock.now()
            for level in self._levels:
                while level and level[0].deadline is not None and level[0].deadline <= now:
                    expired.append(level.popleft())
            self._removed(len(expired))
        return expired

    def reset_after_fork(self) -> None:
        """In a forked child: new locks (a parent thread may have held one), no entries.

        The entries belong to callers of the parent process.
        """
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        for level in self._levels:
            level.clear()
        self._count = self._getters = self._putters = 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue holds an entry or is closed; False on timeout."""
        with self._lock:
            self._getters += 1
            try:
                return self._not_empty.wait_for(lambda: self._count > 0 or self._closed, timeout)
            finally:
                self._getters -= 1

    def discard(self, entry: E) -> bool:
        """Remove ``entry`` if it is still queued (e.g. its caller cancelled)."""
        with self._lock:
            for level in self._levels:
                try:
                    level.remove(entry)
                except ValueError:
                    continue
                self._removed(1)
                return True
        return False

    def close(self) -> list[E]:
        """Refuse further puts, wake every waiter and return what was still queued."""
        with self._lock:
            self._closed = True
            left = [entry for level in reversed(self._levels) for entry in level]
            for level in self._levels:
                level.clear()
            self._count = 0
            self._not_full.notify_all()
            self._not_empty.notify_all()
        return left

    def __repr__(self) -> str:
        return (
            f"BoundedPriorityQueue(size={self._count}, maxsize={self.maxsize}, "
            f"levels={len(self._levels)}, closed={self._closed})"
        )
