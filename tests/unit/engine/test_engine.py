"""The online engine: dispatch, accumulation, waits, errors, priorities, deadlines, close.

Deterministic: items are queued while the engine is paused (or while a batch is
held on a threading.Event) so batch boundaries are known; time is a FakeClock;
nothing sleeps to wait for behaviour. ``max_wait=0`` unless a test is about waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from batchpilot import AIMD, BatchFailedError, ClosedError, ItemTimeoutError, RetryPolicy
from batchpilot._core.events import BatchRecord
from batchpilot._engine.engine import Engine
from batchpilot.errors import QueueFullError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(10)


class Recorder:
    """A batch function (list collate) that records each batch and doubles items."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]] | None = None) -> None:
        self.batches: list[list[Any]] = []
        self._fn = fn or (lambda batch: [x * 2 for x in batch])

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.batches.append(list(batch))
        return self._fn(batch)

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def make(engines: list[Engine], fn: Callable[[Any], Any], **options: Any) -> Engine:
    options.setdefault("max_wait", 0.0)
    options.setdefault("collate", "list")
    engine = Engine(fn, **options)
    engines.append(engine)
    return engine


def queued_then_resumed(engine: Engine, items: list[Any], **submit: Any) -> list[Any]:
    """Queue ``items`` while paused, resume, return their results in order."""
    engine.pause()
    futures = [engine.submit(item, **submit) for item in items]
    engine.resume()
    return [future.result(timeout=5) for future in futures]


# -- dispatch -------------------------------------------------------------------------


def test_idle_engine_dispatches_a_single_item_at_once(engines: list[Engine]) -> None:
    # A 60 s max_wait would hang this test (timeout 10 s) if the engine waited for more.
    fn = Recorder()
    engine = make(engines, fn, max_wait=60.0, max_batch_size=64)
    assert engine.call(21) == 42
    assert fn.sizes == [1]
    assert engine.statistics().waits == 0


@pytest.mark.asyncio
async def test_idle_engine_dispatches_a_single_awaited_item_at_once(
    engines: list[Engine],
) -> None:
    fn = Recorder()
    engine = make(engines, fn, max_wait=60.0, placement="inline")
    assert await engine.asubmit(5) == 10
    assert await engine.afuture(6) == 12
    assert fn.sizes == [1, 1]


def test_items_accumulate_while_the_worker_is_busy(engines: list[Engine]) -> None:
    started, release = threading.Event(), threading.Event()

    def blocking(batch: list[int]) -> list[int]:
        started.set()
        release.wait(5)
        return [x * 2 for x in batch]

    fn = Recorder(blocking)
    engine = make(engines, fn, max_batch_size=64)
    first = engine.submit(1)
    assert started.wait(5)
    rest = [engine.submit(x) for x in (2, 3, 4)]
    assert engine.queue_size == 3 and engine.active_batches == 1
    release.set()
    assert [f.result(5) for f in (first, *rest)] == [2, 4, 6, 8]
    assert fn.batches == [[1], [2, 3, 4]]


def test_concurrent_batches_up_to_the_limit(engines: list[Engine]) -> None:
    barrier = threading.Barrier(2, timeout=5)  # both batches must be running at once

    def meet(batch: list[int]) -> list[int]:
        barrier.wait()
        return batch

    engine = make(engines, meet, max_batch_size=1, max_concurrent_batches=2)
    assert queued_then_resumed(engine, [1, 2]) == [1, 2]


@pytest.mark.asyncio
async def test_async_batch_function_from_tasks_and_threads(engines: list[Engine]) -> None:
    async def double(batch: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [x * 2 for x in batch]

    engine = make(engines, double)
    assert engine.placement == "task"
    from_tasks = await asyncio.gather(*(engine.asubmit(i) for i in range(10)))
    from_thread = await asyncio.to_thread(engine.call, 7)
    assert from_tasks == [i * 2 for i in range(10)]
    assert from_thread == 14


@pytest.mark.asyncio
async def test_thread_and_asyncio_callers_mixed_on_one_engine(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn, max_batch_size=8)
    thread_results: list[list[int]] = []

    def thread_caller(base: int) -> None:
        thread_results.append([engine.call(base + i) for i in range(20)])

    threads = [threading.Thread(target=thread_caller, args=(1000 * t,)) for t in (1, 2)]
    for thread in threads:
        thread.start()
    awaited = await asyncio.gather(*(engine.afuture(i) for i in range(100)))
    futures = [engine.submit(-i) for i in range(1, 11)]
    await asyncio.to_thread(lambda: [thread.join(5) for thread in threads])
    assert awaited == [2 * i for i in range(100)]
    assert [f.result(5) for f in futures] == [-2 * i for i in range(1, 11)]
    assert sorted(map(tuple, thread_results)) == [
        tuple(2 * (1000 + i) for i in range(20)),
        tuple(2 * (2000 + i) for i in range(20)),
    ]
    assert max(fn.sizes) <= 8
    assert engine.statistics().succeeded == 150


# -- the cost model's wait decision ----------------------------------------------------


def scripted_device(clock: FakeClock, fixed: float, per_item: float) -> Recorder:
    """A batch function whose duration on ``clock`` is ``fixed + per_item * n``."""

    def run(batch: list[Any]) -> list[Any]:
        clock.advance(fixed + per_item * len(batch))
        return batch

    return Recorder(run)


def test_large_fixed_cost_makes_waiting_for_resubmitters_pay(engines: list[Engine]) -> None:
    clock = FakeClock()
    fn = scripted_device(clock, fixed=0.002, per_item=0.00002)
    engine = make(engines, fn, clock=clock, max_wait=0.005, max_batch_size=64)
    for size in (1, 8, 32):
        queued_then_resumed(engine, list(range(size)))
    stats = engine.statistics()
    assert stats.cost_fixed == pytest.approx(0.002)
    assert stats.cost_per_item == pytest.approx(0.00002)
    # 1 item in hand, 31 callers about to resubmit: wait up to max_wait (5 ms).
    assert engine.planned_wait(queued=1, expected=32) == pytest.approx(0.005)
    # 31 in hand: waiting pays only while w < fixed * 1 / 31.
    assert engine.planned_wait(queued=31, expected=32) == pytest.approx(0.002 / 31)
    assert engine.planned_wait(queued=32, expected=32) == 0.0
    engine.set_max_wait(0.0)
    assert engine.planned_wait(queued=1, expected=32) == 0.0


def test_tiny_fixed_cost_waits_at_most_a_fixed_cost(engines: list[Engine]) -> None:
    clock = FakeClock()
    fn = scripted_device(clock, fixed=0.000001, per_item=0.000001)
    engine = make(engines, fn, clock=clock, max_wait=0.005)
    for size in (1, 8, 32):
        queued_then_resumed(engine, list(range(size)))
    assert engine.planned_wait(queued=1, expected=32) == pytest.approx(0.000031)
    assert engine.planned_wait(queued=16, expected=32) == pytest.approx(0.000001)


def test_latency_target_caps_the_wait(engines: list[Engine]) -> None:
    clock = FakeClock()
    fn = scripted_device(clock, fixed=0.002, per_item=0.00002)
    engine = make(engines, fn, clock=clock, max_wait=0.005, latency_target=0.004)
    for size in (1, 8, 32):
        queued_then_resumed(engine, list(range(size)))
    # a batch of 32 takes 2.64 ms, so at most 1.36 ms of waiting fits in 4 ms
    assert engine.planned_wait(queued=1, expected=32) == pytest.approx(0.004 - 0.00264)


def test_no_wait_without_a_fit(engines: list[Engine]) -> None:
    engine = make(engines, Recorder(), max_wait=0.005)
    assert engine.planned_wait(queued=1, expected=32) == 0.0


# -- runtime control ------------------------------------------------------------------


def test_set_max_batch_size_applies_to_the_next_batch(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn, max_batch_size=64)
    engine.pause()
    futures = [engine.submit(i) for i in range(10)]
    engine.set_max_batch_size(3)
    engine.resume()
    assert [f.result(5) for f in futures] == [2 * i for i in range(10)]
    assert fn.sizes == [3, 3, 3, 1]
    assert engine.current_batch_size == 3
    engine.set_max_batch_size(5)
    queued_then_resumed(engine, list(range(7)))
    assert fn.sizes[4:] == [5, 2]


def test_set_max_batch_size_caps_an_adaptive_controller(engines: list[Engine]) -> None:
    controller = AIMD(initial=8, max_size=16)
    engine = make(engines, Recorder(), controller=controller)
    engine.set_max_batch_size(4)
    assert controller.max_size == 4 and engine.current_batch_size == 4
    with pytest.raises(ValueError, match="max_batch_size"):
        engine.set_max_batch_size(0)
    with pytest.raises(ValueError, match="max_wait"):
        engine.set_max_wait(-1)


def test_pause_holds_batches_and_resume_releases_them(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn, max_batch_size=64)
    engine.pause()
    futures = [engine.submit(i) for i in range(5)]
    assert engine.paused and engine.queue_size == 5 and fn.batches == []
    engine.resume()
    assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8]
    assert fn.sizes == [5]


# -- errors ----------------------------------------------------------------------------


def test_one_bad_item_fails_alone(engines: list[Engine]) -> None:
    def strict(batch: list[int]) -> list[int]:
        if any(x < 0 for x in batch):
            raise ValueError(f"negative item in {batch}")
        return [x * 2 for x in batch]

    fn = Recorder(strict)
    engine = make(engines, fn)
    engine.pause()
    futures = [engine.submit(x) for x in (1, 2, -3, 4)]
    engine.resume()
    assert [futures[i].result(5) for i in (0, 1, 3)] == [2, 4, 8]
    with pytest.raises(ValueError, match=r"negative item in \[-3\]"):
        futures[2].result(5)
    assert fn.batches[0] == [1, 2, -3, 4]  # tried whole first, then bisected
    stats = engine.statistics()
    assert (stats.succeeded, stats.failed, stats.failed_batches) == (3, 1, 1)


def test_retries_sleep_on_the_clock_before_bisecting(engines: list[Engine]) -> None:
    clock = FakeClock()
    calls = Recorder(lambda batch: 1 / 0)  # always fails
    engine = make(engines, calls, clock=clock, retry=RetryPolicy(max_retries=2, retry_delay=0.5))
    with pytest.raises(ZeroDivisionError):
        engine.call(1)
    assert clock.sleeps == [0.5, 1.0]
    assert calls.sizes == [1, 1, 1]


def test_on_error_raise_gives_every_item_the_batch_error(engines: list[Engine]) -> None:
    fn = Recorder(lambda batch: [1 / x for x in batch])
    engine = make(engines, fn, on_error="raise")
    engine.pause()
    futures = [engine.submit(x) for x in (1, 0, 2)]
    engine.resume()
    for future in futures:
        with pytest.raises(ZeroDivisionError):
            future.result(5)
    assert fn.sizes == [3]  # no bisection


@pytest.mark.parametrize(
    ("result", "message"),
    [(lambda batch: 42, "must return a sequence"), (lambda batch: batch[:-1], "expected 3")],
)
def test_non_sequence_or_wrong_length_fails_the_batch(
    engines: list[Engine], result: Callable[[list[int]], Any], message: str
) -> None:
    fn = Recorder(result)
    engine = make(engines, fn)
    engine.pause()
    futures = [engine.submit(x) for x in (1, 2, 3)]
    engine.resume()
    for future in futures:
        with pytest.raises(BatchFailedError, match=message):
            future.result(5)
    assert fn.sizes == [3]  # not retried, not bisected


def test_failed_batches_are_observed_as_not_ok(engines: list[Engine]) -> None:
    controller = AIMD(initial=8, max_size=16)
    fn = Recorder(lambda batch: 1 / 0 if len(batch) > 1 else batch)
    engine = make(engines, fn, controller=controller, max_batch_size=16)
    engine.pause()
    futures = [engine.submit(x) for x in range(8)]
    engine.resume()
    assert [f.result(5) for f in futures] == list(range(8))  # bisection rescued every item
    assert controller.size == 4  # halved once: the batch of 8 raised


def test_listeners_get_one_record_per_batch(engines: list[Engine]) -> None:
    records: list[BatchRecord] = []
    clock = FakeClock()
    fn = Recorder(lambda batch: [1 / x for x in batch])
    engine = make(engines, fn, listeners=[records.append], clock=clock, name="scorer")
    engine.pause()
    futures = [engine.submit(x) for x in (1, 0)]
    clock.advance(2.0)
    engine.resume()
    concurrent.futures.wait(futures, timeout=5)
    (record,) = records
    assert (record.engine, record.name, record.size) == ("online", "scorer", 2)
    assert (record.succeeded, record.failed) == (1, 1)
    assert record.error_types == {"ZeroDivisionError": 1}
    assert record.queue_time == pytest.approx(2.0)


# -- priorities, deadlines and size budgets -------------------------------------------------


def test_higher_priority_is_served_first(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn, priority_levels=3, max_batch_size=1)
    engine.pause()
    futures = [
        engine.submit(item, priority=level) for item, level in [(1, 0), (2, 2), (3, 1), (4, 2)]
    ]
    engine.resume()
    concurrent.futures.wait(futures, timeout=5)
    assert fn.batches == [[2], [4], [3], [1]]
    with pytest.raises(ValueError, match="priority"):
        engine.submit(5, priority=3)


def test_expired_items_fail_with_item_timeout_and_are_not_processed(
    engines: list[Engine],
) -> None:
    clock = FakeClock()
    fn = Recorder()
    engine = make(engines, fn, clock=clock, item_timeout=1.0)
    engine.pause()
    stale = engine.submit(1)
    clock.advance(1.5)
    fresh = engine.submit(2)
    engine.resume()
    assert fresh.result(5) == 4
    with pytest.raises(ItemTimeoutError):
        stale.result(5)
    assert fn.batches == [[2]]
    assert engine.statistics().expired == 1


def test_max_batch_bytes_caps_a_batch_but_always_takes_one(engines: list[Engine]) -> None:
    fn = Recorder(lambda batch: batch)
    engine = make(engines, fn, max_batch_bytes=250)
    items = [np.zeros(100, np.uint8) for _ in range(5)] + [np.zeros(1000, np.uint8)]
    queued_then_resumed(engine, items)
    assert fn.sizes == [2, 2, 1, 1]  # the 1000-byte item goes alone


def test_batch_size_fn_counts_item_costs_against_the_size(engines: list[Engine]) -> None:
    fn = Recorder(lambda batch: batch)
    engine = make(engines, fn, max_batch_size=10, batch_size_fn=len)
    items = [[0] * 4, [1] * 4, [2] * 4, [3] * 8, [4] * 2, [5] * 30]
    assert queued_then_resumed(engine, items) == items
    assert fn.sizes == [2, 1, 2, 1]  # 4+4 | 4 | 8+2 | 30 alone
    with pytest.raises(ValueError, match="cost >= 0"):
        make(engines, fn, batch_size_fn=lambda item: -1).submit([1])


# -- cancellation and close ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_an_awaiting_task_drops_its_item(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn)
    engine.pause()
    doomed = asyncio.ensure_future(engine.asubmit(1))
    kept = engine.afuture(2)
    await asyncio.sleep(0)  # let the task queue its item
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    engine.resume()
    assert await kept == 4
    assert fn.batches == [[2]]
    assert engine.statistics().cancelled == 1


def test_cancelled_submit_future_is_not_processed(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn)
    engine.pause()
    doomed, kept = engine.submit(1), engine.submit(2)
    assert doomed.cancel()
    engine.resume()
    assert kept.result(5) == 4
    assert fn.batches == [[2]]


@pytest.mark.asyncio
async def test_close_fails_or_cancels_every_pending_item(engines: list[Engine]) -> None:
    engine = make(engines, Recorder())
    engine.pause()
    futures = [engine.submit(i) for i in range(3)]
    awaited = engine.afuture(9)
    blocked_error: list[BaseException] = []
    entered = threading.Event()

    def blocked_caller() -> None:
        entered.set()
        try:
            engine.call(7)
        except BaseException as exc:
            blocked_error.append(exc)

    thread = threading.Thread(target=blocked_caller)
    thread.start()
    assert entered.wait(5)
    while engine.queue_size < 5:  # the thread's item is queued right after `entered`
        await asyncio.sleep(0)
    await engine.aclose(timeout=0)
    thread.join(5)
    _, not_done = concurrent.futures.wait(futures, timeout=5)
    assert not not_done and all(f.cancelled() for f in futures)
    with pytest.raises(ClosedError):
        await awaited
    assert isinstance(blocked_error[0], ClosedError)
    with pytest.raises(ClosedError):
        engine.submit(1)
    with pytest.raises(ClosedError):
        engine.afuture(1)
    engine.close()  # idempotent
    assert engine.closed


def test_close_waits_for_queued_work_then_stops(engines: list[Engine]) -> None:
    fn = Recorder()
    engine = make(engines, fn, max_batch_size=2)
    engine.pause()
    futures = [engine.submit(i) for i in range(5)]
    engine.resume()
    engine.close(timeout=5)
    assert [f.result(0) for f in futures] == [0, 2, 4, 6, 8]


def test_close_abandons_a_stuck_batch_with_closed_error(engines: list[Engine]) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(batch: list[int]) -> list[int]:
        started.set()
        release.wait(5)
        return batch

    engine = make(engines, stuck)
    future = engine.submit(1)
    assert started.wait(5)
    engine.close(timeout=0)
    with pytest.raises(ClosedError):
        future.result(0)
    release.set()  # the late result is dropped, not delivered twice


@pytest.mark.asyncio
async def test_full_queue_refuses_asyncio_callers_at_once(engines: list[Engine]) -> None:
    engine = make(engines, Recorder(), max_queue_size=2)
    engine.pause()
    first, second = engine.afuture(1), engine.afuture(2)
    assert engine.queue_size == 2  # counted before the loop moves them into the queue
    with pytest.raises(QueueFullError):
        engine.afuture(3)
    engine.resume()
    assert [await first, await second] == [2, 4]


@pytest.mark.asyncio
async def test_batches_on_a_worker_thread_complete_asyncio_callers(
    engines: list[Engine],
) -> None:
    fn = Recorder()
    engine = make(engines, fn, placement="thread", max_batch_size=4)
    assert engine.placement == "thread"
    results = await asyncio.gather(*(engine.afuture(i) for i in range(10)))
    assert results == [2 * i for i in range(10)]
    assert max(fn.sizes) <= 4


def test_full_queue_blocks_up_to_timeout(engines: list[Engine]) -> None:
    engine = make(engines, Recorder(), max_queue_size=2)
    engine.pause()
    engine.submit(1)
    engine.submit(2)
    with pytest.raises(QueueFullError):
        engine.submit(3, timeout=0)


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_batch_size": 0}, ValueError),
        ({"max_batch_size": 2.5}, TypeError),
        ({"max_wait": -1}, ValueError),
        ({"max_concurrent_batches": 0}, ValueError),
        ({"item_timeout": -1}, ValueError),
        ({"latency_target": 0}, ValueError),
        ({"on_error": "ignore"}, ValueError),
        ({"placement": "gpu"}, ValueError),
        ({"collate": "zip"}, ValueError),
        ({"controller": object()}, TypeError),
        ({"retry": 3}, TypeError),
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Engine(lambda batch: batch, **options)


def test_repr_and_statistics_show_live_state(engines: list[Engine]) -> None:
    engine = make(engines, Recorder(), name="scorer", max_batch_size=4)
    engine.pause()
    engine.submit(1)
    assert "scorer" in repr(engine) and "paused" in repr(engine) and "queue_size=1" in repr(engine)
    stats = engine.statistics()
    assert (stats.queue_size, stats.paused, stats.current_batch_size) == (1, True, 4)
    with pytest.raises(AttributeError):
        stats.queue_size = 3  # type: ignore[misc]
