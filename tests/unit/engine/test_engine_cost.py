"""The online engine by cost: budgets, grouping by length, the oldest first, out of memory.

Deterministic: items are queued while the engine is paused, so what waits when a
slot frees is known; items are token counts and the batch function records batches.
"""

from __future__ import annotations

from typing import Any

import pytest

from batchpilot._engine.engine import Engine
from batchpilot._engine.queue import BoundedPriorityQueue
from batchpilot.errors import ConfigError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(10)


class Padded:
    """Items are token counts; records each batch; raises MemoryError above ``memory``
    padded tokens; answers each item doubled."""

    def __init__(self, memory: float = float("inf")) -> None:
        self.memory = memory
        self.batches: list[list[int]] = []
        self.ooms = 0

    def __call__(self, batch: list[int]) -> list[int]:
        if max(batch) * len(batch) > self.memory:
            self.ooms += 1
            raise MemoryError(f"{max(batch) * len(batch)} padded tokens")
        self.batches.append(list(batch))
        return [2 * x for x in batch]


def make(engines: list[Engine], fn: Any, **options: Any) -> Engine:
    options = {"collate": "list", "max_wait": 0.0, "cost": float, **options}
    engine = Engine(fn, **options)
    engines.append(engine)
    return engine


def queued(engine: Engine, items: list[int]) -> list[int]:
    engine.pause()
    futures = [engine.submit(item) for item in items]
    engine.resume()
    return [future.result(timeout=5) for future in futures]


LENGTHS = [30, 2, 31, 3, 29, 2, 28, 4, 33, 3]


def test_waiting_items_are_grouped_by_length_under_a_padded_budget(engines: list[Engine]) -> None:
    fn = Padded()
    engine = make(engines, fn, max_batch_cost=64, padded=True, sort_window=16)
    assert queued(engine, LENGTHS) == [2 * x for x in LENGTHS]
    assert all(max(b) * len(b) <= 64 for b in fn.batches)
    # The oldest (30) goes first with its like (29, 31): never with the short ones.
    assert sorted(fn.batches[0]) == [29, 30]
    short = [b for b in fn.batches if max(b) <= 4]
    assert sorted(x for b in short for x in b) == [2, 2, 3, 3, 4]
    padded = sum(max(b) * len(b) for b in fn.batches)
    assert padded < 1.15 * sum(LENGTHS)


def test_without_a_window_batches_are_first_in_first_out(engines: list[Engine]) -> None:
    fn = Padded()
    engine = make(engines, fn, max_batch_cost=64, padded=True)
    queued(engine, LENGTHS)
    assert sorted(fn.batches[0]) == [2, 30]  # 31 would make 3 x 31 = 93
    assert [x for b in fn.batches for x in b] != sorted(LENGTHS)


def test_the_oldest_waiting_item_is_always_in_the_next_batch(engines: list[Engine]) -> None:
    fn = Padded()
    engine = make(engines, fn, max_batch_cost=40, padded=True, sort_window=64)
    queued(engine, [2, 30, 3, 31, 2])
    firsts = [b[0] for b in fn.batches]
    assert 2 in fn.batches[0]  # the oldest, 2, went first with the other short ones
    assert fn.batches[0] == sorted(fn.batches[0])  # a padded batch is handed over by cost
    assert sorted(firsts) == sorted(set(firsts))


def test_an_idle_engine_runs_a_single_item_at_once(engines: list[Engine]) -> None:
    fn = Padded()
    engine = make(engines, fn, max_batch_cost=64, padded=True, sort_window=256, max_wait=60.0)
    assert engine.call(7) == 14  # a 60 s max_wait would time the test out if it waited
    assert fn.batches == [[7]]


def test_an_item_over_budget_runs_alone_and_succeeds(engines: list[Engine]) -> None:
    fn = Padded()
    engine = make(engines, fn, max_batch_cost=10, padded=True, sort_window=8)
    assert queued(engine, [3, 500, 4]) == [6, 1000, 8]
    assert [500] in fn.batches


def test_max_batch_size_still_bounds_the_count(engines: list[Engine]) -> None:
    fn = Padded()
    engine = make(engines, fn, max_batch_cost=10_000, max_batch_size=3, sort_window=8)
    queued(engine, [1] * 7)
    assert [len(b) for b in fn.batches] == [3, 3, 1]


def test_out_of_memory_splits_the_batch_lowers_the_cap_and_loses_nothing(
    engines: list[Engine],
) -> None:
    fn = Padded(memory=60)
    engine = make(engines, fn, max_batch_cost=240, padded=True, sort_window=32)
    items = [10, 12, 9, 11, 10, 8, 12, 10, 9, 11, 10, 12]
    assert queued(engine, items) == [2 * x for x in items]
    assert fn.ooms >= 1
    assert all(max(b) * len(b) <= 60 for b in fn.batches)
    statistics = engine.statistics()
    assert statistics.succeeded == len(items) and statistics.failed == 0
    assert engine._costing is not None
    assert engine._costing.splits == fn.ooms
    assert engine._costing.cap <= 120  # halved below what failed
    before = fn.ooms
    assert queued(engine, items) == [2 * x for x in items]
    assert fn.ooms - before < before  # the lowered cap spares most of the splits


def test_an_item_out_of_memory_alone_fails_alone(engines: list[Engine]) -> None:
    engine = make(engines, Padded(memory=50), max_batch_cost=1000, padded=True, sort_window=8)
    engine.pause()
    futures = [engine.submit(x) for x in (5, 60, 6)]
    engine.resume()
    assert futures[0].result(5) == 10 and futures[2].result(5) == 12
    with pytest.raises(MemoryError):
        futures[1].result(5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cost": 3}, "cost must be callable"),
        ({"cost": len, "batch_size_fn": len}, "not both"),
        ({"cost": len, "sort_window": -1}, "sort_window"),
        ({"cost": len, "max_batch_cost": 0}, "max_batch_cost"),
        ({"cost": len, "padded": 1}, "padded"),
        ({"cost": len, "is_oom": "MemoryError"}, "is_oom must be callable"),
    ],
)
def test_bad_cost_options_name_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Engine(Padded(), **options)


class Entry:
    def __init__(self, name: str, deadline: float | None = None) -> None:
        self.name = name
        self.deadline = deadline


def test_take_picked_returns_the_rest_to_their_levels_in_order() -> None:
    clock = FakeClock(10.0)
    queue: BoundedPriorityQueue[Entry] = BoundedPriorityQueue(10, levels=2, clock=clock)
    for name in ("a", "b", "c"):
        queue.put(Entry(name))
    queue.put(Entry("late", deadline=5.0))
    queue.put(Entry("H1"), priority=1)
    seen: list[list[str]] = []

    def pick(entries: list[Entry]) -> list[int]:
        seen.append([e.name for e in entries])
        return [0, 2]

    batch, expired = queue.take_picked(4, pick)
    assert seen == [["H1", "a", "b", "c"]]
    assert [e.name for e in batch] == ["H1", "b"]
    assert expired == []  # "late" was beyond the candidates
    assert len(queue) == 3
    batch, expired = queue.take_picked(10, lambda entries: list(range(len(entries))))
    assert [e.name for e in batch] == ["a", "c"] and [e.name for e in expired] == ["late"]
    assert len(queue) == 0
