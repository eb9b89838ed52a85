"""The bounded priority queue: order, deadlines, cost caps, backpressure, close."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from batchpilot import ClosedError, QueueFullError
from batchpilot._engine.queue import BoundedPriorityQueue
from batchpilot.testing import FakeClock


@dataclass(eq=False)
class Entry:
    name: str
    deadline: float | None = None
    cost: float = 1.0


def names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


def test_higher_levels_first_fifo_within_a_level() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10, levels=4)
    for name, level in [("n1", 1), ("low", 0), ("crit", 3), ("n2", 1), ("high", 2)]:
        queue.put(Entry(name), priority=level)
    batch, expired = queue.take(10)
    assert names(batch) == ["crit", "high", "n1", "n2", "low"]
    assert expired == []
    assert len(queue) == 0


def test_take_respects_max_items() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10)
    for i in range(5):
        queue.put(Entry(str(i)))
    assert names(queue.take(2)[0]) == ["0", "1"]
    assert len(queue) == 3


@pytest.mark.parametrize("expiring", [True, False])
def test_bulk_and_checked_take_agree_on_order_and_limits(expiring: bool) -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10, levels=3, expiring=expiring)
    for name, level in [("a0", 0), ("b2", 2), ("c1", 1), ("d2", 2), ("e0", 0), ("f1", 1)]:
        queue.put(Entry(name), priority=level)
    assert names(queue.take(3)[0]) == ["b2", "d2", "c1"]
    assert names(queue.take(2)[0]) == ["f1", "a0"]
    assert len(queue) == 1
    assert names(queue.take(5)[0]) == ["e0"]
    assert queue.take(5) == ([], [])


def test_a_queue_without_expiry_never_checks_deadlines() -> None:
    clock = FakeClock()
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10, clock=clock, expiring=False)
    queue.put(Entry("old", deadline=1.0))
    clock.advance(5.0)
    batch, expired = queue.take(10)
    assert names(batch) == ["old"]
    assert expired == []


def test_expired_entries_are_returned_separately_not_batched() -> None:
    clock = FakeClock()
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10, clock=clock)
    queue.put(Entry("old", deadline=1.0))
    queue.put(Entry("fresh", deadline=10.0))
    queue.put(Entry("forever"))
    clock.advance(1.0)
    batch, expired = queue.take(10)
    assert names(batch) == ["fresh", "forever"]
    assert names(expired) == ["old"]


def test_cost_cap_stops_before_overflow_but_always_takes_one() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10)
    for name, cost in [("a", 3), ("b", 3), ("c", 1)]:
        queue.put(Entry(name, cost=cost))
    batch, _ = queue.take(10, max_cost=5, cost=lambda e: e.cost)
    assert names(batch) == ["a"]
    huge = BoundedPriorityQueue[Entry](10)
    huge.put(Entry("big", cost=100))
    assert names(huge.take(10, max_cost=5, cost=lambda e: e.cost)[0]) == ["big"]


def test_full_queue_raises_after_timeout_and_unblocks_when_drained() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(1)
    queue.put(Entry("a"))
    with pytest.raises(QueueFullError):
        queue.put(Entry("b"), timeout=0)
    with pytest.raises(QueueFullError):
        queue.put(Entry("b"), timeout=0.01)
    started = threading.Event()
    done = threading.Event()

    def blocked_put() -> None:
        started.set()
        queue.put(Entry("c"), timeout=None)
        done.set()

    thread = threading.Thread(target=blocked_put)
    thread.start()
    started.wait()
    assert names(queue.take(1)[0]) == ["a"]
    assert done.wait(5)
    thread.join()
    assert names(queue.take(1)[0]) == ["c"]


def test_close_returns_leftovers_and_wakes_blocked_putters() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(1, levels=2)
    queue.put(Entry("a"), priority=1)
    errors: list[BaseException] = []
    started = threading.Event()

    def blocked_put() -> None:
        started.set()
        try:
            queue.put(Entry("b"))
        except ClosedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=blocked_put)
    thread.start()
    started.wait()
    left = queue.close()
    thread.join(5)
    assert names(left) == ["a"]
    assert len(errors) == 1
    assert queue.closed
    assert queue.wait(timeout=0) is True  # closed wakes waiters
    with pytest.raises(ClosedError):
        queue.put(Entry("c"))


def test_wait_and_discard() -> None:
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(5)
    assert queue.wait(timeout=0) is False
    entry = Entry("x")
    queue.put(entry)
    assert queue.wait(timeout=0) is True
    assert queue.discard(entry) is True
    assert queue.discard(entry) is False
    assert len(queue) == 0
    assert "size=0" in repr(queue)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        BoundedPriorityQueue(0)
    with pytest.raises(ValueError):
        BoundedPriorityQueue(1, levels=0)
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(1, levels=2)
    with pytest.raises(ValueError, match="priority"):
        queue.put(Entry("x"), priority=2)
