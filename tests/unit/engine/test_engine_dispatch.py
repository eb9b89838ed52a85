"""Loop dispatch (`_engine/dispatch.py`): inboxes, the dispatch round on each loop and
inline runs (issue 24 item 1)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from batchpilot._core.collate import get_collator
from batchpilot._engine.dispatch import Inbox, LoopDispatch
from batchpilot._engine.execute import BatchRunner
from batchpilot._engine.options import EngineOptions
from batchpilot._engine.policy import PlacementProbe
from batchpilot._engine.slots import Slots
from batchpilot._engine.state import EngineState
from batchpilot.errors import ClosedError

from .parts import new_slots, new_state

pytestmark = pytest.mark.timeout(20)


class Fail:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def __call__(self, exc: BaseException, *, holding: bool = False, batch: Any = None) -> None:
        self.errors.append(exc)


def _dispatch(
    state: EngineState, slots: Slots, fail: Fail, calls: list[list[int]], **kwargs: Any
) -> LoopDispatch:
    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [item * 2 for item in items]

    probe = PlacementProbe()
    runner = BatchRunner(
        double,
        EngineOptions(collate="list"),
        get_collator("list"),
        (),
        probe,
        slots.record,
        state.queue.__len__,
    )
    settings: dict[str, Any] = {
        "is_async": False,
        "placement": "inline",
        "inline_allowed": True,
        "current_size": lambda: 2,
        "wake_worker": lambda: None,
        "loop_name": "t-loop",
        "fail": fail,
    }
    settings.update(kwargs)
    return LoopDispatch(state, slots, runner, probe, **settings)


def _submit(dispatch: LoopDispatch, loop: asyncio.AbstractEventLoop, items: list[int]) -> list[Any]:
    inbox = dispatch.inboxes.setdefault(loop, Inbox(100))
    futures = [loop.create_future() for _ in items]
    inbox.items += items
    inbox.futures += futures
    dispatch.schedule(loop, threadsafe=False)
    return futures


def test_a_round_runs_the_inbox_inline_in_batches_without_the_queue() -> None:
    state = new_state()
    slots = new_slots(state, size=2)
    calls: list[list[int]] = []
    dispatch = _dispatch(state, slots, Fail(), calls)

    async def main() -> list[int]:
        futures = _submit(dispatch, asyncio.get_running_loop(), [1, 2, 3])
        return list(await asyncio.gather(*futures))

    assert asyncio.run(main()) == [2, 4, 6]
    assert calls == [[1, 2], [3]]
    assert state.tally.batches == 2 and state.active == 0
    assert not dispatch.inboxes and not dispatch.pending_loops


def test_with_placement_thread_a_round_queues_the_inbox_and_wakes_a_worker() -> None:
    state = new_state()
    slots = new_slots(state, size=2)
    woken = threading.Event()
    dispatch = _dispatch(state, slots, Fail(), [], placement="thread", wake_worker=woken.set)

    async def main() -> None:
        _submit(dispatch, asyncio.get_running_loop(), [1, 2, 3])
        await asyncio.sleep(0)

    asyncio.run(main())
    assert woken.is_set() and len(state.queue) == 3


def test_an_internal_error_of_a_round_goes_to_fail_and_its_items_wait_in_the_queue() -> None:
    state = new_state()
    slots = new_slots(state)
    fail = Fail()

    def broken() -> int:
        raise RuntimeError("size failed")

    dispatch = _dispatch(state, slots, fail, [], current_size=broken)

    async def main() -> None:
        _submit(dispatch, asyncio.get_running_loop(), [1, 2])
        await asyncio.sleep(0)

    asyncio.run(main())
    assert [type(exc) for exc in fail.errors] == [RuntimeError]
    assert len(state.queue) == 2  # requeued, for close() to fail
    assert not dispatch.dispatching


def test_the_items_of_a_closed_loops_inbox_get_closed_error() -> None:
    state = new_state()
    dispatch = _dispatch(state, new_slots(state), Fail(), [])
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    dispatch.inboxes[loop] = Inbox(10)
    dispatch.inboxes[loop].items.append(1)
    dispatch.inboxes[loop].futures.append(future)
    loop.close()
    dispatch.fail_dead_inboxes()
    assert isinstance(future.exception(), ClosedError)
    assert not dispatch.inboxes


def test_a_second_loop_makes_async_batches_use_the_private_loop() -> None:
    state = new_state()
    dispatch = _dispatch(state, new_slots(state), Fail(), [], is_async=True)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        dispatch.note_loop(first)
        dispatch.note_loop(first)
        assert dispatch.home_loop is first and not dispatch._shared
        dispatch.note_loop(second)
        assert dispatch._shared
    finally:
        first.close()
        second.close()
