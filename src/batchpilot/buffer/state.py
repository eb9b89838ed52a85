"""The flush buffer's data and decisions, without threads or locks.

`EntryBuffer` holds the entries by priority level, remembers recent uuids, and
answers one question, `EntryBuffer.due`: should a flush start now, and why.
`batchpilot.buffer.BatchStateManager` guards it with its lock and drives it
from its flusher thread; tests drive it directly with exact numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["PRIORITIES", "BufferedEntry", "EntryBuffer", "FlushRules", "RecentKeys"]

PRIORITIES = (0, 1, 2)
"""0 = normal, 1 = high, 2 = urgent (the seed's levels)."""

_AGE_REASONS = ("age_normal", "age_priority", "age_emergency")


class BufferedEntry(NamedTuple):
    """One queued entry, as the flush callback receives it.

    Attributes:
        entry: the object given to ``queue_entry``.
        source: where it came from (``"rss_feed"``, ``"security"``, ...).
        uuid: its identity; repeats within the de-duplication window are ignored.
        priority: 0 normal, 1 high, 2 urgent.
        queued_at: when it was queued, on the manager's clock (seconds).
        queued_at_wall: when it was queued, as a Unix timestamp.
        journal_id: its row in the journal, or None without a journal.
    """

    entry: Any
    source: str
    uuid: str
    priority: int
    queued_at: float
    queued_at_wall: float
    journal_id: int | None = None


@dataclass(frozen=True)
class FlushRules:
    """When a buffer is due for a flush.

    Attributes:
        max_age: per priority level, the age of its oldest entry that triggers a
            flush (already capped by the manager's ``max_buffer_age_seconds``).
        early_memory_percent: memory use above which ``min_size`` entries suffice.
        emergency_memory_percent: memory use above which any entry is flushed.
        min_size: how many entries an early (memory) flush needs.
    """

    max_age: tuple[float, float, float]
    early_memory_percent: float
    emergency_memory_percent: float
    min_size: int


class RecentKeys:
    """The last ``capacity`` distinct keys seen, with O(1) membership and eviction."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._members: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __len__(self) -> int:
        return len(self._members)

    def add(self, key: str) -> None:
        """Remember ``key``, forgetting the oldest key beyond the capacity."""
        if self.capacity == 0 or key in self._members:
            return
        self._members.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._members.discard(self._order.popleft())

    def __repr__(self) -> str:
        return f"RecentKeys(size={len(self._members)}, capacity={self.capacity})"


class EntryBuffer:
    """Entries in three FIFO levels; the highest level leaves first.

    With ``separate_priorities=False`` every entry goes to level 0 in arrival
    order (its ``priority`` is kept on the entry but does not reorder it).
    ``in_flight`` counts entries taken for a flush and not yet settled: they
    still occupy room, so the buffer never holds more than ``capacity``
    entries in memory (recovered or returned entries may exceed it briefly).
    """

    def __init__(self, capacity: int, separate_priorities: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.separate_priorities = separate_priorities
        self.levels: tuple[deque[BufferedEntry], ...] = (deque(), deque(), deque())
        self.buffered = 0
        self.in_flight = 0

    @property
    def held(self) -> int:
        """Entries buffered or being flushed."""
        return self.buffered + self.in_flight

    @property
    def full(self) -> bool:
        return self.held >= self.capacity

    def level_of(self, priority: int) -> int:
        return priority if self.separate_priorities else 0

    def add(self, item: BufferedEntry) -> None:
        self.levels[self.level_of(item.priority)].append(item)
        self.buffered += 1

    def take(self, count: int) -> list[BufferedEntry]:
        """Remove up to ``count`` entries, urgent first, and mark them in flight."""
        batch: list[BufferedEntry] = []
        for level in reversed(self.levels):
            while level and len(batch) < count:
                batch.append(level.popleft())
        self.buffered -= len(batch)
        self.in_flight += len(batch)
        return batch

    def settle(self, count: int) -> None:
        """``count`` in-flight entries left for good (flushed or dead-lettered)."""
        self.in_flight -= count

    def put_back(self, batch: Iterable[BufferedEntry]) -> None:
        """Return in-flight entries to the front of their levels, in their order."""
        returned = list(batch)
        for item in reversed(returned):
            self.levels[self.level_of(item.priority)].appendleft(item)
        self.buffered += len(returned)
        self.in_flight -= len(returned)

    def drop_oldest(self) -> BufferedEntry | None:
        """Remove the oldest entry of the lowest non-empty level, if any."""
        for level in self.levels:
            if level:
                self.buffered -= 1
                return level.popleft()
        return None

    def drain(self) -> list[BufferedEntry]:
        """Remove every buffered entry (urgent first) without marking it in flight."""
        left = [item for level in reversed(self.levels) for item in level]
        for level in self.levels:
            level.clear()
        self.buffered = 0
        return left

    def oldest_queued_at(self) -> float | None:
        heads = [level[0].queued_at for level in self.levels if level]
        return min(heads) if heads else None

    def count(self, priority_levels: Iterable[int]) -> int:
        return sum(len(self.levels[level]) for level in priority_levels)

    def due(
        self, now: float, size_threshold: int, rules: FlushRules, memory_percent: float | None
    ) -> str | None:
        """Why a flush should start now, or None.

        Checked in order: size, age of the oldest entry of each level (urgent
        first), then memory pressure (``memory_percent`` None skips it).
        """
        if not self.buffered:
            return None
        if self.buffered >= min(size_threshold, self.capacity):
            return "size_threshold"
        for level in (2, 1, 0):
            queue = self.levels[level]
            if queue and now - queue[0].queued_at >= rules.max_age[level]:
                return _AGE_REASONS[level]
        if memory_percent is not None:
            if memory_percent > rules.emergency_memory_percent:
                return "memory_emergency"
            if memory_percent > rules.early_memory_percent and self.buffered >= rules.min_size:
                return "memory_early"
        return None

    def next_age_deadline(self, rules: FlushRules) -> float | None:
        """The earliest clock time at which an age trigger fires, if any entry waits."""
        deadlines = [
            level[0].queued_at + rules.max_age[index]
            for index, level in enumerate(self.levels)
            if level
        ]
        return min(deadlines) if deadlines else None

    def __repr__(self) -> str:
        sizes = "/".join(str(len(level)) for level in self.levels)
        return (
            f"EntryBuffer(buffered={self.buffered}, in_flight={self.in_flight}, "
            f"levels(normal/high/urgent)={sizes}, capacity={self.capacity})"
        )
