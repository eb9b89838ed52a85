"""EntryBuffer and RecentKeys: order, room, triggers, with exact numbers."""

from __future__ import annotations

import pytest

from batchpilot.buffer.state import BufferedEntry, EntryBuffer, FlushRules, RecentKeys

RULES = FlushRules(
    max_age=(300.0, 120.0, 60.0),
    early_memory_percent=85.0,
    emergency_memory_percent=95.0,
    min_size=5,
)


def entry(name: str, priority: int = 0, at: float = 0.0) -> BufferedEntry:
    return BufferedEntry(name, "test", name, priority, at, 1000.0 + at)


def uuids(batch: list[BufferedEntry]) -> list[str]:
    return [item.uuid for item in batch]


def test_urgent_leave_first_fifo_within_level() -> None:
    buffer = EntryBuffer(10)
    for name, priority in [("n1", 0), ("h1", 1), ("u1", 2), ("n2", 0), ("u2", 2)]:
        buffer.add(entry(name, priority))
    assert uuids(buffer.take(4)) == ["u1", "u2", "h1", "n1"]
    assert (buffer.buffered, buffer.in_flight, buffer.held) == (1, 4, 5)


def test_without_separate_priorities_arrival_order_is_kept() -> None:
    buffer = EntryBuffer(10, separate_priorities=False)
    for name, priority in [("n1", 0), ("u1", 2), ("h1", 1)]:
        buffer.add(entry(name, priority))
    batch = buffer.take(3)
    assert uuids(batch) == ["n1", "u1", "h1"]
    assert [item.priority for item in batch] == [0, 2, 1]


def test_put_back_restores_order_and_settle_frees_room() -> None:
    buffer = EntryBuffer(3)
    for name in ["a", "b", "c"]:
        buffer.add(entry(name))
    assert buffer.full
    batch = buffer.take(2)
    assert buffer.full  # in-flight entries still occupy room
    buffer.put_back(batch)
    assert uuids(buffer.take(3)) == ["a", "b", "c"]
    buffer.settle(3)
    assert (buffer.held, buffer.full) == (0, False)


def test_drop_oldest_takes_lowest_priority_first() -> None:
    buffer = EntryBuffer(5)
    buffer.add(entry("u", 2))
    buffer.add(entry("n1", 0))
    buffer.add(entry("n2", 0))
    assert buffer.drop_oldest() == entry("n1", 0)
    assert buffer.drop_oldest() == entry("n2", 0)
    assert buffer.drop_oldest() == entry("u", 2)
    assert buffer.drop_oldest() is None
    assert buffer.buffered == 0


def test_due_on_size() -> None:
    buffer = EntryBuffer(100)
    for i in range(24):
        buffer.add(entry(str(i)))
    assert buffer.due(0.0, 25, RULES, None) is None
    buffer.add(entry("last"))
    assert buffer.due(0.0, 25, RULES, None) == "size_threshold"


def test_size_trigger_never_exceeds_capacity() -> None:
    buffer = EntryBuffer(3)
    for name in "abc":
        buffer.add(entry(name))
    assert buffer.due(0.0, 25, RULES, None) == "size_threshold"


@pytest.mark.parametrize(
    ("priority", "age", "reason"),
    [(0, 300.0, "age_normal"), (1, 120.0, "age_priority"), (2, 60.0, "age_emergency")],
)
def test_due_on_age_per_level(priority: int, age: float, reason: str) -> None:
    buffer = EntryBuffer(100)
    buffer.add(entry("x", priority, at=10.0))
    assert buffer.due(10.0 + age - 0.001, 25, RULES, None) is None
    assert buffer.due(10.0 + age, 25, RULES, None) == reason
    assert buffer.next_age_deadline(RULES) == 10.0 + age


def test_due_on_memory() -> None:
    buffer = EntryBuffer(100)
    for i in range(4):
        buffer.add(entry(str(i)))
    assert buffer.due(0.0, 25, RULES, 85.0) is None  # not above 85
    assert buffer.due(0.0, 25, RULES, 90.0) is None  # early flush needs min_size entries
    assert buffer.due(0.0, 25, RULES, 95.5) == "memory_emergency"
    buffer.add(entry("5th"))
    assert buffer.due(0.0, 25, RULES, 85.1) == "memory_early"


def test_empty_buffer_is_never_due() -> None:
    assert EntryBuffer(10).due(1e9, 1, RULES, 100.0) is None
    assert EntryBuffer(10).next_age_deadline(RULES) is None


def test_drain_empties_urgent_first() -> None:
    buffer = EntryBuffer(10)
    buffer.add(entry("n", 0))
    buffer.add(entry("u", 2))
    assert uuids(buffer.drain()) == ["u", "n"]
    assert buffer.buffered == 0


def test_recent_keys_window() -> None:
    keys = RecentKeys(3)
    for key in ["a", "b", "c", "a"]:
        keys.add(key)
    assert len(keys) == 3
    keys.add("d")
    assert "a" not in keys
    assert all(key in keys for key in "bcd")


def test_recent_keys_zero_capacity_remembers_nothing() -> None:
    keys = RecentKeys(0)
    keys.add("a")
    assert "a" not in keys


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EntryBuffer(0)
    with pytest.raises(ValueError, match="capacity"):
        RecentKeys(-1)
