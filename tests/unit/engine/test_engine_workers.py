"""The worker pool (`_engine/workers.py`): the worker loop's named steps, waking, and
internal errors going to ``fail`` (issue 24 item 1)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from batchpilot._core.collate import get_collator
from batchpilot._engine.execute import BatchRunner
from batchpilot._engine.options import EngineOptions
from batchpilot._engine.policy import PlacementProbe
from batchpilot._engine.queue import BoundedPriorityQueue
from batchpilot._engine.requests import Request
from batchpilot._engine.slots import Slots
from batchpilot._engine.state import EngineState, Lifecycle
from batchpilot._engine.workers import WorkerPool

from .parts import future_request, new_slots, new_state

pytestmark = pytest.mark.timeout(20)

WAIT = 5.0


class Fail:
    """Stands in for the facade's ``fail``."""

    def __init__(self) -> None:
        self.calls: list[tuple[BaseException, bool, Any]] = []
        self.called = threading.Event()

    def __call__(self, exc: BaseException, *, holding: bool = False, batch: Any = None) -> None:
        self.calls.append((exc, holding, batch))
        self.called.set()


def _pool(state: EngineState, slots: Slots, fail: Fail, *, max_wait: float = 0.0) -> WorkerPool:
    runner = BatchRunner(
        lambda items: [item * 2 for item in items],
        EngineOptions(collate="list"),
        get_collator("list"),
        (),
        PlacementProbe(),
        slots.record,
        state.queue.__len__,
    )
    return WorkerPool(state, slots, runner, lambda: 2, max_wait, None, "t-worker", fail)


def _stop(state: EngineState, pool: WorkerPool) -> None:
    with state.lock:
        state.lifecycle = Lifecycle.CLOSED
        state.work.notify_all()
    for thread in pool.threads:
        thread.join(WAIT)


def test_workers_run_queued_batches_and_never_exceed_the_slots() -> None:
    state = new_state(max_concurrent=2)
    slots = new_slots(state)
    pool = _pool(state, slots, Fail())
    requests = [future_request(i) for i in range(5)]
    try:
        for request in requests:
            state.queue.put(request)
            pool.wake()
        assert [request.sink.result(timeout=WAIT) for request in requests] == [0, 2, 4, 6, 8]
        assert len(pool.threads) <= 2
        assert state.tally.items == 5
    finally:
        _stop(state, pool)
    assert not any(thread.is_alive() for thread in pool.threads)


def test_a_worker_runs_a_staged_batch_with_the_slot_it_frees() -> None:
    state = new_state(max_concurrent=1)
    slots = new_slots(state)
    pool = _pool(state, slots, Fail())
    requests = [future_request(i) for i in (1, 2)]
    for request in requests:
        state.queue.put(request)
    state.has_cfutures = True
    state.active = 1  # every slot busy: the batch is staged ahead
    slots.stage_next()
    assert state.staged is not None
    try:
        pool.wake()
        with state.lock:
            slots.release_locked()  # the running batch ends
        assert [request.sink.result(timeout=WAIT) for request in requests] == [2, 4]
    finally:
        _stop(state, pool)


def test_an_internal_error_in_a_step_goes_to_fail_with_the_slot_it_holds() -> None:
    def broken(
        queue: BoundedPriorityQueue[Request], size: int
    ) -> tuple[list[Request], list[Request]]:
        raise RuntimeError("claim failed")

    state = new_state()
    slots = new_slots(state, take=broken)
    fail = Fail()
    pool = _pool(state, slots, fail)
    state.queue.put(future_request(1))
    pool.wake()
    try:
        assert fail.called.wait(WAIT)
        exc, holding, batch = fail.calls[0]
        assert isinstance(exc, RuntimeError) and holding and batch is None
    finally:
        _stop(state, pool)


def test_planned_wait_follows_the_fitted_cost_model_up_to_max_wait() -> None:
    state = new_state()
    pool = _pool(state, new_slots(state), Fail(), max_wait=0.005)
    assert pool.planned_wait(queued=1, expected=32) == 0.0  # no fit yet: never wait
    for size in (1, 8, 32):
        state.tally.add_batch(size, 0.002 + 0.00002 * size, 0, True)
    assert pool.current_fit() == pytest.approx((0.002, 0.00002))
    assert pool.planned_wait(queued=1, expected=32) == pytest.approx(0.005)
    assert pool.planned_wait(queued=32, expected=32) == 0.0
    pool.max_wait = 0.0
    assert pool.planned_wait(queued=1, expected=32) == 0.0
