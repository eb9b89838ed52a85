"""The public `batch` decorator and `Batcher`: calls from threads and coroutines."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np
import pytest

from batchpilot import BatchFailedError, ClosedError, Fixed
from batchpilot.batching import Batcher, batch

pytestmark = pytest.mark.timeout(10)


def test_decorated_function_takes_single_items_from_threads() -> None:
    seen: list[tuple[int, ...]] = []

    @batch(max_batch_size=8, max_wait=0)
    def double(xs: np.ndarray) -> np.ndarray:
        seen.append(xs.shape)
        return xs * 2

    with double:
        np.testing.assert_array_equal(double(np.arange(3)), [0, 2, 4])
        future = double.submit(np.ones(3))
        assert isinstance(future, concurrent.futures.Future)
        np.testing.assert_array_equal(future.result(5), [2, 2, 2])
    assert seen[0] == (1, 3)  # stacked along a new first axis
    assert double.closed
    assert double.__name__ == "double" and isinstance(double, Batcher)


def test_bare_decorator_and_wrong_arity() -> None:
    @batch
    def ident(xs: list[int]) -> list[int]:
        return xs

    with ident:
        assert ident(4) == 4
        with pytest.raises(TypeError):
            ident(1, 2)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ident()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="not both"):
        batch(ident, max_batch_size=2)  # type: ignore[call-overload]


@pytest.mark.asyncio
async def test_awaited_from_coroutines_and_blocking_from_threads_at_once() -> None:
    @batch(max_batch_size=16, max_wait=0, collate="list")
    def square(xs: list[int]) -> list[int]:
        return [x * x for x in xs]

    async with square:
        thread_results: list[int] = []
        worker = threading.Thread(
            target=lambda: thread_results.extend(square(i) for i in range(30))
        )
        worker.start()
        awaited = await asyncio.gather(*(square(i) for i in range(50)))
        coroutine_result = await square.acall(9)
        await asyncio.to_thread(worker.join, 5)
    assert awaited == [i * i for i in range(50)]
    assert thread_results == [i * i for i in range(30)]
    assert coroutine_result == 81
    stats = square.statistics()
    assert stats.succeeded == 81 and stats.failed == 0


@pytest.mark.asyncio
async def test_async_def_batch_function() -> None:
    @batch(max_wait=0)
    async def plus_one(xs: np.ndarray) -> np.ndarray:
        await asyncio.sleep(0)
        return xs + 1

    async with plus_one:
        results = await asyncio.gather(*(plus_one(np.full(2, i)) for i in range(5)))
    assert [int(r[0]) for r in results] == [1, 2, 3, 4, 5]
    assert plus_one.statistics().placement == "task"


def test_bad_results_fail_the_items_with_batch_failed_error() -> None:
    wrong = Batcher(lambda xs: xs[:1], max_wait=0, collate="list")
    with wrong:
        wrong.pause()
        futures = [wrong.submit(i) for i in range(3)]
        wrong.resume()
        for future in futures:
            with pytest.raises(BatchFailedError, match="returned 1 results, expected 3"):
                future.result(5)


def test_setters_and_live_state() -> None:
    sizes: list[int] = []
    batcher = Batcher(lambda xs: sizes.append(len(xs)) or xs, max_wait=0, collate="list")
    with batcher:
        batcher.pause()
        futures = [batcher.submit(i) for i in range(5)]
        assert batcher.queue_size == 5 and "paused" in repr(batcher)
        batcher.set_max_batch_size(2)
        batcher.set_max_wait(0.001)
        batcher.resume()
        concurrent.futures.wait(futures, timeout=5)
        assert sizes == [2, 2, 1]
        assert batcher.current_batch_size == 2 and batcher.active_batches == 0
        assert batcher.statistics().max_wait == 0.001
        assert isinstance(batcher.engine.controller, Fixed)


def test_call_after_close_raises_closed_error() -> None:
    batcher = Batcher(lambda xs: xs, collate="list")
    batcher.close()
    with pytest.raises(ClosedError):
        batcher(1)
    with pytest.raises(ClosedError):
        batcher.submit(1)


def test_statistics_speak_the_shared_vocabulary() -> None:
    """Issue 24 item 8: the snapshot is a `Statistics` (shared fields first), keeps every
    field it had, and its rate is items per second since start, by the engine's clock."""
    from dataclasses import fields

    from batchpilot._core.statistics import Statistics
    from batchpilot.testing import FakeClock

    clock = FakeClock()

    @batch(max_batch_size=4, max_wait=0, clock=clock)
    def double(xs: np.ndarray) -> np.ndarray:
        return xs * 2

    with double:
        assert double.statistics().rate == 0.0
        for i in range(6):
            double(np.array([i]))
        clock.advance(2.0)
        stats = double.statistics()

    assert isinstance(stats, Statistics)
    names = [field.name for field in fields(stats)]
    assert names[:8] == [field.name for field in fields(Statistics)]
    assert {"queue_size", "active_batches", "placement", "cost_per_item"} <= set(names)
    assert (stats.items, stats.queue_depth, stats.queue_size) == (6, 0, 0)
    assert stats.rate == pytest.approx(3.0)
    assert stats.as_dict()["queue_depth"] == 0
