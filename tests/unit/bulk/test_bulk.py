"""map_batches: order, laziness, per-item failures, sizing, hooks and bad input."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot import AIMD, Fixed, RetryPolicy
from batchpilot._core.events import BatchRecord
from batchpilot.bulk import HISTORY_LIMIT, BulkProgress, ItemFailure, map_batches
from batchpilot.bulk.executors import SerialExecutor
from batchpilot.errors import BatchFailedError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(30)


def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


class InlineExecutor(SerialExecutor):
    """A user-supplied executor: runs each chunk at submit time, counting submits."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self.submitted = 0
        self.shut_down = False

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        self.submitted += 1
        return super().submit(task, *args)

    def shutdown(self) -> None:
        self.shut_down = True


class Counting:
    """An input generator that counts how many items were pulled from it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for value in range(self.count):
            self.pulled += 1
            yield value


@pytest.mark.parametrize("batch_size", ["auto", 1, 7, 1000, Fixed(3), AIMD(initial=4, max_size=9)])
def test_results_come_in_input_order_for_every_sizing_strategy(batch_size: Any) -> None:
    assert list(map_batches(double, range(500), batch_size=batch_size)) == [
        x * 2 for x in range(500)
    ]


def test_unordered_yields_every_result_exactly_once() -> None:
    out = list(map_batches(double, range(2000), batch_size=10, ordered=False, workers=4))
    assert sorted(out) == [x * 2 for x in range(2000)]


def test_empty_input_yields_nothing_and_finishes() -> None:
    run = map_batches(double, [])
    assert list(run) == []
    assert run.finished and run.stats()["chunks_processed"] == 0


def test_next_and_iter_agree() -> None:
    run = map_batches(double, range(5), batch_size=2)
    assert next(run) == 0
    assert list(run) == [2, 4, 6, 8]


def test_input_is_read_lazily_bounded_by_chunks_in_flight() -> None:
    source = Counting(1_000_000)
    run = map_batches(double, source, batch_size=10, workers=1)  # 2 chunks in flight
    assert source.pulled == 0  # nothing happens before iteration
    assert next(run) == 0
    assert source.pulled <= 20
    run.close()
    assert source.pulled <= 30


def test_a_bad_item_fails_alone_in_its_place() -> None:
    def picky(xs: list[int]) -> list[int]:
        if 13 in xs:
            raise ValueError("13 is unlucky")
        return [x * 2 for x in xs]

    run = map_batches(picky, range(40), batch_size=8)
    out = list(run)
    failure = out[13]
    assert isinstance(failure, ItemFailure)
    assert (failure.index, failure.item, str(failure.error)) == (13, 13, "13 is unlucky")
    assert [v for i, v in enumerate(out) if i != 13] == [x * 2 for x in range(40) if x != 13]
    assert run.failures == [failure]
    stats = run.stats()
    assert stats["items_failed"] == 1 and stats["error_types"] == {"ValueError": 1}
    assert stats["items_succeeded"] == 39


def test_wrong_result_count_fails_the_whole_chunk_without_bisecting() -> None:
    calls: list[int] = []

    def short(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        return [x * 2 for x in xs][:-1] if 5 in xs else [x * 2 for x in xs]

    out = list(map_batches(short, range(10), batch_size=5, executor="serial"))
    assert all(isinstance(v, ItemFailure) for v in out[5:])
    assert isinstance(out[5].error, BatchFailedError)
    assert out[:5] == [0, 2, 4, 6, 8]
    assert calls == [5, 5]  # the failing chunk ran once: no retry, no bisection


def test_fail_fast_raises_the_first_exception_and_stops() -> None:
    def boom(xs: list[int]) -> list[int]:
        if 3 in xs:
            raise KeyError(3)
        return xs

    executor = InlineExecutor()
    run = map_batches(boom, range(100), batch_size=2, fail_fast=True, executor=executor)
    with pytest.raises(KeyError):
        list(run)
    assert executor.shut_down
    assert executor.submitted == 2


def test_retry_policy_lets_a_flaky_chunk_succeed_after_waiting_on_the_clock() -> None:
    attempts: list[int] = []
    clock = FakeClock()

    def flaky(xs: list[int]) -> list[int]:
        attempts.append(xs[0])
        if len(attempts) == 1:
            raise ConnectionError("transient")
        return xs

    policy = RetryPolicy(max_retries=2, retry_delay=0.5)
    run = map_batches(flaky, range(4), batch_size=4, retry=policy, executor="serial", clock=clock)
    assert list(run) == [0, 1, 2, 3]
    assert run.failures == [] and attempts == [0, 0]
    assert clock.sleeps == [0.5]


def test_auto_sizing_doubles_until_the_latency_target_then_holds() -> None:
    clock = FakeClock()

    def timed(xs: list[int]) -> list[int]:
        clock.advance(0.001 * len(xs))  # 1 ms per item: 100 items hit the 0.1 s target
        return xs

    run = map_batches(timed, range(1000), executor="serial", clock=clock)
    assert list(run) == list(range(1000))
    assert run.batch_size_history[:9] == [1, 2, 4, 8, 16, 32, 64, 100, 100]
    assert sum(run.batch_size_history) == 1000
    assert run.batch_size == 100


def test_auto_sizing_splits_the_last_slow_chunks_so_workers_finish_together() -> None:
    clock = FakeClock()

    def timed(xs: list[int]) -> list[int]:
        clock.advance(0.001 * len(xs))
        return xs

    run = map_batches(timed, range(1000), executor=InlineExecutor(slots=4), clock=clock)
    assert list(run) == list(range(1000))
    history = run.batch_size_history
    done = 0
    for size in history:  # once chunks take >= 20 ms, none exceeds 1/4 of what is left
        if done >= 64:
            assert size <= -(-(1000 - done) // 4)
        done += size
    assert history[-3:] == [1, 1, 1] and max(history) == 100


def test_auto_sizing_leaves_quick_chunks_whole_at_the_end() -> None:
    run = map_batches(double, range(1000), executor="serial", clock=FakeClock())
    list(run)  # on a frozen clock every chunk takes 0 s: sizes double, the rest goes whole
    assert run.batch_size_history == [1, 2, 4, 8, 16, 32, 64, 128, 256, 489]


def test_a_size_controller_is_used_as_given() -> None:
    controller = Fixed(7)
    run = map_batches(double, range(30), batch_size=controller)
    list(run)
    assert run.controller is controller
    assert run.batch_size_history == [7, 7, 7, 7, 2]


def test_listeners_and_progress_hook_see_every_chunk() -> None:
    records: list[BatchRecord] = []
    snapshots: list[BulkProgress] = []
    run = map_batches(
        double,
        range(10),
        batch_size=4,
        executor="serial",
        listeners=[records.append],
        on_progress=snapshots.append,
        name="job-a",
    )
    list(run)
    assert [(r.engine, r.size, r.name) for r in records] == [
        ("bulk", 4, "job-a"),
        ("bulk", 4, "job-a"),
        ("bulk", 2, "job-a"),
    ]
    assert [s.done for s in snapshots] == [4, 8, 10]
    assert snapshots[-1].total == 10 and snapshots[-1].eta in (0.0, None)


def test_progress_bar_reaches_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    list(map_batches(double, range(50), batch_size=10, progress=True, name="bar"))
    assert "50/50" in capsys.readouterr().err


def test_close_stops_the_run_and_shuts_the_executor_down() -> None:
    executor = InlineExecutor()
    run = map_batches(double, range(100), batch_size=10, executor=executor)
    assert next(run) == 0
    run.close()
    run.close()
    assert executor.shut_down
    assert list(run) == []
    assert executor.submitted == 1


def test_context_manager_closes() -> None:
    executor = InlineExecutor()
    with map_batches(double, range(100), batch_size=10, executor=executor) as run:
        next(run)
    assert executor.shut_down


def test_repr_shows_live_state() -> None:
    run = map_batches(double, range(10), batch_size=5, name="r")
    list(run)
    text = repr(run)
    assert "name='r'" in text and "done=10" in text and "finished=True" in text


def test_async_functions_run_with_a_concurrency_limit() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    async def slow_double(xs: list[int]) -> list[int]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(0)
        with lock:
            running -= 1
        return [x * 2 for x in xs]

    out = list(map_batches(slow_double, range(200), batch_size=5, executor="asyncio", workers=3))
    assert out == [x * 2 for x in range(200)]
    assert 1 <= peak <= 3


def test_async_failures_are_isolated_too() -> None:
    async def picky(xs: list[int]) -> list[int]:
        if 2 in xs:
            raise ValueError("two")
        return xs

    out = list(map_batches(picky, range(6), batch_size=6, executor="asyncio"))
    assert isinstance(out[2], ItemFailure) and out[:2] + out[3:] == [0, 1, 3, 4, 5]


def reject_odd(xs: list[int]) -> list[int]:
    if any(x % 2 for x in xs):
        raise ValueError("odd")
    return xs


def test_processes_executor_runs_chunks_and_isolates_failures_in_workers() -> None:
    out = list(map_batches(double, range(300), batch_size=50, executor="processes", workers=2))
    assert out == [x * 2 for x in range(300)]
    mixed = list(map_batches(reject_odd, range(6), batch_size=3, executor="processes", workers=1))
    assert [v if isinstance(v, int) else (v.index, str(v.error)) for v in mixed] == [
        0,
        (1, "odd"),
        2,
        (3, "odd"),
        4,
        (5, "odd"),
    ]


# -- bad input: a clear error before any work --------------------------------


def test_non_callable_function_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        map_batches(42, range(3))  # type: ignore[arg-type]


def test_non_iterable_items_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="items must be iterable"):
        map_batches(double, 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": "huge"}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"batch_size": True}, TypeError, "bool"),
        ({"workers": 0}, ValueError, "workers"),
        ({"executor": "gpu"}, ValueError, "executor must be one of"),
        ({"retry": 3}, TypeError, "RetryPolicy"),
    ],
)
def test_invalid_options_are_rejected_at_call(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        map_batches(double, range(3), **options)


def test_async_function_needs_the_asyncio_executor() -> None:
    async def adouble(xs: list[int]) -> list[int]:
        return xs

    with pytest.raises(TypeError, match="asyncio"):
        map_batches(adouble, range(3), executor="threads")
    with pytest.raises(TypeError, match="not async def"):
        map_batches(double, range(3), executor="asyncio")


class _AsyncScorer:
    """A model object whose ``__call__`` is ``async def`` (as `batch` accepts)."""

    async def __call__(self, xs: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [x * 3 for x in xs]


def test_an_object_with_async_call_runs_on_the_asyncio_executor() -> None:
    out = list(map_batches(_AsyncScorer(), range(10), batch_size=4, executor="asyncio"))
    assert out == [x * 3 for x in range(10)]
    with pytest.raises(TypeError, match="asyncio"):
        map_batches(_AsyncScorer(), range(3), executor="processes")


def test_an_async_function_without_an_executor_runs_on_asyncio() -> None:
    loops: set[int] = set()

    async def adouble(xs: list[int]) -> list[int]:
        loops.add(id(asyncio.get_running_loop()))
        return [x * 2 for x in xs]

    run = map_batches(adouble, range(20), batch_size=4)
    assert "executor='asyncio'" in repr(run)
    assert list(run) == [x * 2 for x in range(20)]
    assert len(loops) == 1
    assert list(map_batches(_AsyncScorer(), range(5))) == [x * 3 for x in range(5)]


def test_unpicklable_function_with_processes_is_a_type_error_before_work() -> None:
    source = Counting(10)
    with pytest.raises(TypeError, match="picklable"):
        map_batches(lambda xs: xs, source, executor="processes")
    assert source.pulled == 0


@pytest.mark.parametrize(
    ("executor", "missing"), [("dask", "distributed"), ("ray", "ray"), ("ray", "cloudpickle")]
)
def test_a_cluster_executor_without_its_extra_names_what_to_install_before_work(
    monkeypatch: pytest.MonkeyPatch, executor: str, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # as when it is not installed
    source = Counting(10)
    # issue 22 item 5: the hint names the missing distribution, never a PyPI batchpilot[extra]
    with pytest.raises(
        ImportError, match=rf"executor='{executor}' needs {missing}, .*: pip install {missing}$"
    ):
        map_batches(double, source, executor=executor)
    assert source.pulled == 0  # was: ModuleNotFoundError 'cloudpickle' from the pickling check


def test_closing_an_async_run_cancels_chunks_still_awaiting() -> None:
    started = threading.Event()
    cancelled: list[int] = []

    async def forever(xs: list[int]) -> list[int]:
        if xs[0] == 0:
            return xs
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(xs[0])
            raise
        return xs

    run = map_batches(forever, range(10), batch_size=5, executor="asyncio", workers=2)
    assert next(run) == 0
    started.wait(5)
    run.close()
    assert cancelled == [5]


def test_serial_executor_runs_one_chunk_at_a_time_in_the_calling_thread() -> None:
    threads: set[int] = set()

    def where(xs: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        return xs

    run = map_batches(where, range(100), batch_size=10, executor="serial")
    assert list(run) == list(range(100))
    assert threads == {threading.get_ident()}


@pytest.mark.asyncio
async def test_async_for_iterates_without_blocking_the_event_loop() -> None:
    gate = threading.Event()

    def gated(xs: list[int]) -> list[int]:
        if not gate.wait(5):  # set by the event loop, so only if it keeps running
            raise RuntimeError("the event loop was blocked")
        return [x * 2 for x in xs]

    asyncio.get_running_loop().call_soon(gate.set)
    run = map_batches(gated, range(30), batch_size=10, fail_fast=True)
    out = [value async for value in run]
    assert out == [x * 2 for x in range(30)]


def test_a_failing_progress_callback_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(progress: BulkProgress) -> None:
        raise RuntimeError("dashboard down")

    run = map_batches(double, range(6), batch_size=3, executor="serial", on_progress=broken)
    assert list(run) == [0, 2, 4, 6, 8, 10]
    assert [r.getMessage().startswith("on_progress callback") for r in caplog.records] == [
        True,
        True,
    ]


@pytest.mark.asyncio
async def test_closing_after_a_cancelled_async_for_waits_for_the_chunk_in_flight() -> None:
    entered, release = threading.Event(), threading.Event()

    def held(xs: list[int]) -> list[int]:
        if xs[0] == 10:
            entered.set()
            release.wait(5)
        return xs

    run = map_batches(held, range(30), batch_size=10, executor="serial")

    async def consume() -> list[int]:
        return [value async for value in run]

    task = asyncio.create_task(consume())
    await asyncio.to_thread(entered.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closing = asyncio.create_task(asyncio.to_thread(run.close))
    await asyncio.sleep(0)
    assert not closing.done()  # close waits for the chunk still running
    release.set()
    await closing
    assert list(run) == []


@given(
    values=st.lists(st.integers(-50, 50), max_size=60),
    batch_size=st.integers(1, 20),
    bad=st.integers(2, 9),
)
@settings(max_examples=60, deadline=None)
def test_every_item_gets_exactly_one_outcome_in_its_place(
    values: list[int], batch_size: int, bad: int
) -> None:
    def reject(xs: list[int]) -> list[int]:
        if any(x % bad == 0 for x in xs):
            raise ValueError("bad")
        return [x + 1 for x in xs]

    out = list(map_batches(reject, values, batch_size=batch_size, executor="serial"))
    assert len(out) == len(values)
    for index, (value, result) in enumerate(zip(values, out, strict=True)):
        if value % bad == 0:
            assert isinstance(result, ItemFailure) and (result.index, result.item) == (index, value)
        else:
            assert result == value + 1


def test_chunks_finishing_behind_a_slow_head_are_settled_at_once() -> None:
    release = threading.Event()

    def head_waits(xs: list[int]) -> list[int]:
        if xs[0] == 0 and not release.wait(5):
            raise RuntimeError("the second chunk was not reported while the first ran")
        return xs

    def report(progress: BulkProgress) -> None:
        if progress.done == 10:  # only chunk 10..19 can finish first
            release.set()

    run = map_batches(
        head_waits, range(20), batch_size=10, workers=2, on_progress=report, fail_fast=True
    )
    assert list(run) == list(range(20))


class _Row:
    def __init__(self, n: int) -> None:
        self.n = n


def test_kept_failures_do_not_hold_their_chunk_alive() -> None:
    """A failure's traceback held every item of its chunk: RSS grew ~290 KB per failure."""
    refs: list[weakref.ref[_Row]] = []

    def rows() -> Iterator[_Row]:
        for n in range(8):
            row = _Row(n)
            refs.append(weakref.ref(row))
            yield row

    def score(batch: list[_Row]) -> list[int]:
        if any(row.n == 3 for row in batch):
            raise ValueError("3 is bad")
        return [row.n for row in batch]

    run = map_batches(score, rows(), batch_size=8, executor="serial")
    assert [v if isinstance(v, int) else "x" for v in run] == [0, 1, 2, "x", 4, 5, 6, 7]
    gc.collect()

    assert [ref() is not None for ref in refs] == [n == 3 for n in range(8)]
    (failure,) = run.failures
    assert str(failure.error) == "3 is bad"


class BadBatch(Exception):
    """An error that carries the batch it failed on, as many database errors do."""


def _rows_with_refs(refs: list[weakref.ref[_Row]]) -> Iterator[_Row]:
    for n in range(8):
        row = _Row(n)
        refs.append(weakref.ref(row))
        yield row


def _reject_row_3(batch: list[_Row]) -> list[int]:
    if any(row.n == 3 for row in batch):
        raise BadBatch("row 3 is bad", batch)
    return [row.n for row in batch]


async def _areject_row_3(batch: list[_Row]) -> list[int]:
    return _reject_row_3(batch)


@pytest.mark.parametrize("executor", ["serial", "threads", "asyncio"])
def test_a_kept_failure_does_not_chain_to_its_chunks_error(executor: str) -> None:
    """The item's error was raised while the chunk's was handled, so it kept it as
    ``__context__``, and with it every row of the chunk the chunk's error carried.

    With the garbage collector off: the rest of the chunk must be freed at once,
    not left in a reference cycle (an exception whose traceback holds a frame
    that names it) for the collector to find later.
    """
    refs: list[weakref.ref[_Row]] = []
    fn = _areject_row_3 if executor == "asyncio" else _reject_row_3
    gc.collect()
    gc.disable()
    try:
        run = map_batches(fn, _rows_with_refs(refs), batch_size=8, executor=executor)
        assert [isinstance(v, ItemFailure) for v in run] == [n == 3 for n in range(8)]
        alive = [ref() is not None for ref in refs]
    finally:
        gc.enable()

    assert alive == [n == 3 for n in range(8)]
    (failure,) = run.failures
    assert failure.error.args[1] == [failure.item]
    assert failure.error.__context__ is None


def test_batch_size_history_keeps_the_last_chunks_only() -> None:
    """One list entry per chunk grew without bound on a long job of small chunks."""
    run = map_batches(double, range(2 * HISTORY_LIMIT + 3), batch_size=2, executor="serial")
    for _ in run:
        pass
    history = run.batch_size_history
    assert len(history) == HISTORY_LIMIT
    assert history[-1] == 1 and sum(history) == 2 * HISTORY_LIMIT - 1
    assert run.stats()["chunks_processed"] == HISTORY_LIMIT + 2
    assert run.stats()["batch_size_history"] == history
