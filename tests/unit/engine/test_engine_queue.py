"""`BoundedPriorityQueue.put_many`, the bulk put the engine's asyncio inbox flushes with."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from batchpilot import ClosedError
from batchpilot._engine.queue import BoundedPriorityQueue


@dataclass(eq=False)
class Entry:
    value: int
    deadline: float | None = None


def test_put_many_adds_what_fits_in_order() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(maxsize=3, levels=2)
    entries = [Entry(i) for i in range(5)]
    assert queue.put_many(entries[:2], priority=1) == 2
    assert queue.put_many(entries[2:]) == 1  # room for one more
    assert len(queue) == 3
    batch, _ = queue.take(10)
    assert [e.value for e in batch] == [0, 1, 2]
    with pytest.raises(ValueError, match="priority"):
        queue.put_many(entries, priority=2)
    queue.close()
    with pytest.raises(ClosedError):
        queue.put_many(entries)
