"""Hostile conditions for the online engine (issue 15, issue 13 item 9).

Every case here once wedged the engine or gave a raw error: a batch function raising
a `BaseException`, the engine's own logic failing, a wrong result type, a batch run
on a loop that ends, deadlines while every slot is busy, `close` from inside the
batch function, a loop closed with items in its inbox, listeners racing results.
Each asserts the rule: every item gets exactly one outcome, and `close` returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

from batchpilot import Fixed, RetryPolicy
from batchpilot._engine.engine import Engine
from batchpilot.errors import BatchFailedError, ClosedError, ItemTimeoutError
from batchpilot.testing import FakeClock

pytestmark = pytest.mark.timeout(20)

WAIT = 5.0  # seconds a result may take before the test calls the engine wedged


class Fatal(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


def ident(items: list[Any]) -> list[Any]:
    return items


# -- 1. nothing from user code kills an engine thread ----------------------------------------


@pytest.mark.parametrize("fatal", [SystemExit, KeyboardInterrupt, Fatal])
def test_a_base_exception_reaches_its_callers_and_the_worker_keeps_serving(
    fatal: type[BaseException], engines: list[Engine]
) -> None:
    def fn(items: list[Any]) -> list[Any]:
        if "boom" in items:
            raise fatal("boom")
        return items

    engine = Engine(fn, collate="list", max_wait=0)
    engines.append(engine)

    doomed = engine.submit("boom")
    with pytest.raises(fatal):
        doomed.result(timeout=WAIT)
    with pytest.raises(fatal):
        engine.call("boom")  # a blocking thread caller gets it raised in its own thread

    assert engine.submit("next").result(timeout=WAIT) == "next"
    assert engine.call("again") == "again"
    engine.close()  # no timeout: it must return
    assert engine.statistics().failed_batches == 2


@pytest.mark.parametrize("fatal", [SystemExit, KeyboardInterrupt])
def test_the_private_loop_of_an_async_function_survives_a_base_exception(
    fatal: type[BaseException], engines: list[Engine]
) -> None:
    async def fn(items: list[Any]) -> list[Any]:
        if "boom" in items:
            raise fatal("boom")
        return items

    engine = Engine(fn, collate="list", max_wait=0)
    engines.append(engine)

    with pytest.raises(fatal):
        engine.submit("boom").result(timeout=WAIT)
    assert engine.submit("next").result(timeout=WAIT) == "next"
    engine.close()


def test_an_exception_escaping_isolation_fails_its_batch_and_the_worker_keeps_serving(
    engines: list[Engine],
) -> None:
    class OverflowingClock(FakeClock):
        """Sleeping for the retry back-off overflows, as ``sleep(inf)`` does."""

        def sleep(self, seconds: float) -> None:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")

    def fn(items: list[Any]) -> list[Any]:
        if "bad" in items:
            raise ValueError("bad item")
        return items

    engine = Engine(
        fn, collate="list", max_wait=0, retry=RetryPolicy(1, 0.5), clock=OverflowingClock()
    )
    engines.append(engine)

    with pytest.raises(OverflowError):
        engine.submit("bad").result(timeout=WAIT)
    assert engine.submit("good").result(timeout=WAIT) == "good"
    engine.close()


def test_a_failure_of_the_engine_itself_closes_it_and_fails_every_pending_item(
    engines: list[Engine],
) -> None:
    class BreakingController(Fixed):
        """A user's controller that starts raising once ``broken`` is set."""

        broken = threading.Event()

        def next_size(self) -> int:
            if self.broken.is_set():
                raise RuntimeError("controller broke")
            return super().next_size()

    controller = BreakingController(4)
    started, release = threading.Event(), threading.Event()

    def fn(items: list[Any]) -> list[Any]:
        started.set()
        release.wait(WAIT)
        return items

    engine = Engine(fn, collate="list", max_wait=0, controller=controller)
    engines.append(engine)
    running = engine.submit("first")
    assert started.wait(WAIT)
    queued = [engine.submit(i) for i in range(3)]
    controller.broken.set()
    release.set()

    assert running.result(timeout=WAIT) == "first"
    for future in queued:
        with pytest.raises(ClosedError, match="controller broke"):
            future.result(timeout=WAIT)
    with pytest.raises(ClosedError, match="controller broke"):
        engine.submit("late")
    engine.close()  # no timeout: it must return
    assert engine.closed


def test_a_base_exception_on_the_deadline_thread_closes_the_engine_naming_it(
    engines: list[Engine],
) -> None:
    """A done-callback raising as the deadline thread expires its future: that thread
    is gone, so the engine closes itself rather than leave later items unexpired."""
    started, release = threading.Event(), threading.Event()

    def fn(items: list[Any]) -> list[Any]:
        started.set()
        release.wait(WAIT)
        return items

    def interrupt(future: concurrent.futures.Future[Any]) -> None:
        raise KeyboardInterrupt

    engine = Engine(fn, collate="list", max_wait=0, item_timeout=0.2)
    engines.append(engine)
    busy = engine.submit("busy")
    assert started.wait(WAIT)
    late = engine.submit("late")
    late.add_done_callback(interrupt)

    with pytest.raises(ItemTimeoutError):
        late.result(timeout=WAIT)
    with pytest.raises(ClosedError, match="KeyboardInterrupt"):
        engine.submit("later").result(timeout=WAIT)  # was: pending until its caller gave up
    with pytest.raises(ClosedError, match="KeyboardInterrupt"):
        busy.result(timeout=WAIT)
    release.set()
    engine.close()  # no timeout: it must return
    assert engine.closed


def test_an_inline_base_exception_stops_the_loop_and_the_rest_of_its_inbox_still_runs(
    engines: list[Engine],
) -> None:
    def fn(items: list[Any]) -> list[Any]:
        if "boom" in items:
            raise KeyboardInterrupt
        return items

    engine = Engine(fn, collate="list", max_wait=0, max_batch_size=2, placement="inline")
    engines.append(engine)
    loop = asyncio.new_event_loop()
    futures: list[asyncio.Future[Any]] = []

    async def main() -> list[Any]:
        futures.extend(engine.afuture(item) for item in ["boom", "x", "y", "z"])
        return await asyncio.gather(*futures[2:])

    task = loop.create_task(main())
    try:
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C in a batch reaches the loop's caller
            loop.run_until_complete(task)
        rest = loop.run_until_complete(task)
    finally:
        loop.close()
    assert rest == ["y", "z"]
    assert isinstance(futures[0].exception(), KeyboardInterrupt)
    assert isinstance(futures[1].exception(), KeyboardInterrupt)  # same batch as "boom"
    engine.close()


# -- 2. a wrong result type is a BatchFailedError ----------------------------------------------


@pytest.mark.parametrize("result", [{"a": 1, "b": 2}, 7, None, [1, 2, 3]])
def test_a_result_that_is_not_one_per_item_fails_with_batch_failed_error(
    result: Any, engines: list[Engine]
) -> None:
    engine = Engine(lambda items: result, collate="list", max_wait=0, max_batch_size=2)
    engines.append(engine)
    engine.pause()
    futures = [engine.submit(i) for i in range(2)]
    engine.resume()
    for future in futures:
        with pytest.raises(BatchFailedError, match="expected"):
            future.result(timeout=WAIT)


# -- 3. a batch never runs on a loop that may end before it ----------------------------------


def test_a_loop_that_ends_does_not_cancel_the_batches_of_another_loop(
    engines: list[Engine],
) -> None:
    started: concurrent.futures.Future[None] = concurrent.futures.Future()
    release: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def fn(items: list[Any]) -> list[Any]:
        if not started.done():
            started.set_result(None)
        await asyncio.wrap_future(release)
        return items

    # priority > 0 takes the shared queue directly, so loop A's dispatch sees B's item.
    engine = Engine(fn, collate="list", max_wait=0, priority_levels=2)
    engines.append(engine)
    b_queued, a_ended = threading.Event(), threading.Event()
    b_outcome: list[Any] = []

    def loop_b() -> None:
        async def main() -> None:
            future = engine.afuture("b", priority=1)
            b_queued.set()
            a_ended.wait(WAIT)  # blocks loop B, so only loop A can dispatch meanwhile
            try:
                b_outcome.append(await future)
            except BaseException as exc:
                b_outcome.append(exc)

        asyncio.run(main())

    thread_b = threading.Thread(target=loop_b)
    thread_b.start()
    assert b_queued.wait(WAIT)

    async def loop_a() -> None:
        engine.afuture("a", priority=1)
        await asyncio.wait_for(asyncio.wrap_future(started), WAIT)  # B's item's batch runs

    asyncio.run(loop_a())  # loop A ends while that batch waits
    a_ended.set()
    release.set_result(None)
    thread_b.join(WAIT)
    assert b_outcome == ["b"]


# -- 4. deadlines are kept while every slot is busy -------------------------------------------


def test_an_item_expires_at_its_deadline_while_every_slot_is_busy(
    engines: list[Engine],
) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[Any] = []

    def fn(items: list[Any]) -> list[Any]:
        ran.extend(items)
        started.set()
        release.wait(WAIT)
        return items

    engine = Engine(fn, collate="list", max_wait=0, item_timeout=0.2)
    engines.append(engine)
    busy = engine.submit("busy")
    assert started.wait(WAIT)
    submitted = time.monotonic()
    late = engine.submit("late")

    with pytest.raises(ItemTimeoutError):
        late.result(timeout=WAIT)
    waited = time.monotonic() - submitted
    assert not release.is_set() and 0.19 <= waited < 2.0
    release.set()
    assert busy.result(timeout=WAIT) == "busy"
    engine.close()
    assert ran == ["busy"]  # never run late
    assert engine.statistics().expired == 1


def test_an_expiring_item_of_an_async_function_expires_while_its_slot_is_busy(
    engines: list[Engine],
) -> None:
    started: concurrent.futures.Future[None] = concurrent.futures.Future()
    release: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def fn(items: list[Any]) -> list[Any]:
        if not started.done():
            started.set_result(None)
        await asyncio.wrap_future(release)
        return items

    engine = Engine(fn, collate="list", max_wait=0, item_timeout=0.2)
    engines.append(engine)

    async def main() -> None:
        busy = engine.afuture("busy")
        await asyncio.wrap_future(started)
        with pytest.raises(ItemTimeoutError):
            await asyncio.wait_for(engine.afuture("late"), WAIT)
        release.set_result(None)
        assert await busy == "busy"

    asyncio.run(main())
    engine.close()


# -- 5. close() from inside the batch function -------------------------------------------------


def test_close_from_inside_the_batch_function_on_a_worker_raises(engines: list[Engine]) -> None:
    errors: list[BaseException] = []
    engine: Engine

    def fn(items: list[Any]) -> list[Any]:
        try:
            engine.close()
        except RuntimeError as exc:
            errors.append(exc)
        return items

    engine = Engine(fn, collate="list", max_wait=0)
    engines.append(engine)
    assert engine.submit(1).result(timeout=WAIT) == 1
    assert len(errors) == 1 and "inside the batch function" in str(errors[0])
    assert not engine.closed
    engine.close()


def test_close_from_inside_an_inline_batch_on_a_loop_raises(engines: list[Engine]) -> None:
    errors: list[BaseException] = []
    engine: Engine

    def fn(items: list[Any]) -> list[Any]:
        try:
            engine.close()
        except RuntimeError as exc:
            errors.append(exc)
        return items

    engine = Engine(fn, collate="list", max_wait=0, placement="inline")
    engines.append(engine)

    async def main() -> Any:
        return await engine.afuture(1)

    assert asyncio.run(main()) == 1
    assert len(errors) == 1 and "inside the batch function" in str(errors[0])
    engine.close()


# -- 6. a loop closed with items in its inbox ------------------------------------------------


def test_items_left_in_the_inbox_of_a_closed_loop_are_failed_and_not_counted(
    engines: list[Engine],
) -> None:
    engine = Engine(ident, collate="list", max_wait=0)
    engines.append(engine)
    loop = asyncio.new_event_loop()
    futures = [engine.afuture_on(loop, i) for i in range(5)]  # the loop never runs again
    loop.close()

    assert engine.queue_size == 0  # a closed loop's inbox cannot run: nothing waits
    engine.close()
    assert engine.queue_size == 0
    assert all(future.done() for future in futures)
    assert all(isinstance(future.exception(), ClosedError) for future in futures)


# -- 8. listeners (metrics) see a batch before its callers see their results ------------------


def test_listeners_see_a_batch_before_its_futures_resolve(engines: list[Engine]) -> None:
    futures: list[concurrent.futures.Future[Any]] = []
    seen_done: list[bool] = []

    def listener(record: Any) -> None:
        seen_done.extend(future.done() for future in futures)

    engine = Engine(ident, collate="list", max_wait=0, listeners=[listener])
    engines.append(engine)
    engine.pause()
    futures.extend(engine.submit(i) for i in range(3))
    engine.resume()
    assert [future.result(timeout=WAIT) for future in futures] == [0, 1, 2]
    assert seen_done == [False, False, False]
    assert engine.statistics().batches == 1


# -- 10. set_max_batch_size narrows only controllers with bounds -----------------------------


def test_set_max_batch_size_leaves_a_controller_without_bounds_alone(
    engines: list[Engine],
) -> None:
    class HalfBounded:
        """Has ``set_bounds`` and ``min_size`` but no ``max_size``: not a BoundedController."""

        min_size = 1

        def __init__(self) -> None:
            self.bounds: list[tuple[int, int]] = []

        def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
            pass

        def next_size(self) -> int:
            return 8

        def set_bounds(self, min_size: int, max_size: int) -> None:
            self.bounds.append((min_size, max_size))

    controller = HalfBounded()
    engine = Engine(ident, collate="list", controller=controller, max_batch_size=16)
    engines.append(engine)
    engine.set_max_batch_size(4)
    assert controller.bounds == []
    assert engine.current_batch_size == 4  # the engine's own cap still applies
