"""The asyncio fast path: batches run inline straight from a loop's inbox.

Items awaited in one loop iteration wait in that loop's inbox; the dispatch callback
runs them as batches without making queue entries. These tests pin what that path
must keep from the general one: cancellation, isolation of a failing item (the
function is not called twice), statistics, order behind queued items, and the
time bound that hands the rest of a large inbox to the queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from batchpilot._engine.engine import Engine
from batchpilot.testing import FakeClock

pytestmark = [pytest.mark.timeout(10), pytest.mark.asyncio]


class Calls:
    """Doubles items (a list batch); records every call; raises on negative items."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(list(batch))
        if any(x < 0 for x in batch):
            raise ValueError(f"negative item in {batch}")
        return [x * 2 for x in batch]


def inline_engine(engines: list[Engine], fn: Any, **options: Any) -> Engine:
    engine = Engine(fn, placement="inline", max_wait=0.0, collate="list", **options)
    engines.append(engine)
    return engine


async def test_an_iteration_of_awaited_items_runs_as_batches(engines: list[Engine]) -> None:
    fn = Calls()
    engine = inline_engine(engines, fn, max_batch_size=3)
    futures = [engine.afuture(x) for x in range(1, 8)]
    assert engine.queue_size == 7  # waiting in the inbox until the loop turns
    assert await asyncio.gather(*futures) == [2, 4, 6, 8, 10, 12, 14]
    assert fn.batches == [[1, 2, 3], [4, 5, 6], [7]]
    stats = engine.statistics()
    assert (stats.batches, stats.items, stats.succeeded, stats.queue_size) == (3, 7, 7, 0)


async def test_a_failing_batch_is_isolated_without_a_second_whole_call(
    engines: list[Engine],
) -> None:
    fn = Calls()
    engine = inline_engine(engines, fn)
    futures = [engine.afuture(x) for x in (1, 2, -3, 4)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[:2] == [2, 4] and results[3] == 8
    assert isinstance(results[2], ValueError)
    assert fn.batches.count([1, 2, -3, 4]) == 1
    stats = engine.statistics()
    assert (stats.succeeded, stats.failed, stats.failed_batches) == (3, 1, 1)


async def test_cancelled_items_are_dropped_and_free_their_slot(engines: list[Engine]) -> None:
    fn = Calls()
    engine = inline_engine(engines, fn)
    doomed = engine.afuture(1)
    kept = engine.afuture(2)
    doomed.cancel()
    assert await kept == 4
    assert fn.batches == [[2]]
    only = engine.afuture(3)
    only.cancel()
    await asyncio.sleep(0)  # a batch of nothing but a cancelled item
    assert await engine.afuture(5) == 10  # its slot was released
    assert fn.batches == [[2], [5]]
    assert engine.statistics().cancelled == 2


async def test_items_queued_earlier_are_served_first(engines: list[Engine]) -> None:
    fn = Calls()
    engine = inline_engine(engines, fn, max_batch_size=2)
    engine.pause()
    earlier = engine.submit(1)  # a thread-side caller, queued while paused
    await asyncio.sleep(0)
    engine.resume()
    later = [engine.afuture(2), engine.afuture(3)]
    assert await asyncio.gather(*later) == [4, 6]
    assert earlier.result(5) == 2
    assert fn.batches[0][0] == 1


async def test_the_time_bound_hands_the_rest_of_the_inbox_to_the_queue(
    engines: list[Engine],
) -> None:
    clock = FakeClock()
    calls: list[list[int]] = []

    def slow(batch: list[int]) -> list[int]:
        calls.append(list(batch))
        clock.advance(1.0)  # far past the time one loop callback may spend on batches
        return [x * 2 for x in batch]

    engine = inline_engine(engines, slow, max_batch_size=2, clock=clock)
    futures = [engine.afuture(x) for x in range(1, 7)]
    assert await futures[0] == 2
    assert calls == [[1, 2]]
    assert engine.queue_size == 4  # the rest waits in the queue for the next callback
    assert await asyncio.gather(*futures) == [2, 4, 6, 8, 10, 12]
    assert calls == [[1, 2], [3, 4], [5, 6]]
