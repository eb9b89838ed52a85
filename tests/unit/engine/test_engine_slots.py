"""Slots and staging (`_engine/slots.py`): who may start a batch, which items it takes,
and counting it when done (issue 24 item 1)."""

from __future__ import annotations

from batchpilot._core.cost import CloseReason
from batchpilot._engine.queue import BoundedPriorityQueue
from batchpilot._engine.requests import Request
from batchpilot._engine.slots import Taken, take_by_budget, take_by_count
from batchpilot._engine.state import EngineState

from .parts import future_request, new_slots, new_state


def _queue(state: EngineState, *items: object, priority: int = 0) -> list[Request]:
    requests = [future_request(item) for item in items]
    for request in requests:
        state.queue.put(request, priority)
    return requests


def test_a_slot_needs_room_work_and_no_pause() -> None:
    state = new_state(max_concurrent=1)
    slots = new_slots(state)
    assert not slots.acquire()  # nothing queued
    assert slots.acquire(inbox=True)  # the caller holds an inbox to run
    assert not slots.acquire(inbox=True)  # the only slot is taken
    with state.lock:
        slots.release_locked()
    state.paused = True
    assert not slots.acquire(inbox=True)
    assert state.active == 0


def test_claim_takes_the_next_batch_in_priority_order_and_marks_it_in_flight() -> None:
    state = new_state()
    slots = new_slots(state, size=2)
    state.has_cfutures = True  # submit() was used: claims move its futures to RUNNING
    low = _queue(state, "a", "b")
    high = _queue(state, "c", priority=1)
    assert slots.acquire()
    batch = slots.claim()
    assert batch == [high[0], low[0]]
    assert state.in_flight == {id(batch): batch}
    assert all(request.sink.running() for request in batch)  # executor protocol: RUNNING
    assert len(state.queue) == 1


def test_a_claim_of_only_cancelled_items_frees_its_slot() -> None:
    state = new_state()
    slots = new_slots(state)
    state.has_cfutures = True
    (request,) = _queue(state, "gone")
    request.sink.cancel()
    assert slots.acquire()
    assert slots.claim() == []
    assert (state.active, state.tally.cancelled, state.in_flight) == (0, 1, {})


def test_the_take_policy_alone_decides_which_items_form_the_batch() -> None:
    """The one step a cost-aware selection replaces: here, the newest item alone."""

    def newest_first(queue: BoundedPriorityQueue[Request], size: int) -> Taken:
        everything, expired = queue.take(queue.maxsize)
        for request in everything[:-1]:
            queue.put(request)
        return everything[-1:], expired, CloseReason.COUNT

    state = new_state()
    slots = new_slots(state, size=2, take=newest_first)
    requests = _queue(state, "a", "b", "c")
    assert slots.acquire()
    assert slots.claim() == [requests[2]]


def test_take_by_budget_stops_before_the_item_over_the_byte_budget() -> None:
    state = new_state()
    requests = _queue(state, "a", "b", "c")
    for request, nbytes in zip(requests, (4, 4, 4), strict=True):
        request.cost, request.nbytes = 1.0, nbytes
    batch, expired, reason = take_by_budget(8)(state.queue, 10)
    assert (batch, expired, reason) == (requests[:2], [], CloseReason.BUDGET)
    assert take_by_count(state.queue, 10) == ([requests[2]], [], CloseReason.IDLE_WORKER)


def test_record_frees_the_slot_and_says_whether_outcomes_are_still_owed() -> None:
    state = new_state()
    slots = new_slots(state)
    _queue(state, "a", "b", "c")
    assert slots.acquire()
    batch = slots.claim()
    assert slots.record(size=2, duration=0.5, failed=1, ok=True, batch_id=id(batch))
    assert (state.active, state.returning_callers) == (0, 3)  # 2 released + 1 waiting
    assert (state.tally.batches, state.tally.succeeded, state.tally.failed) == (1, 1, 1)

    assert slots.acquire()
    orphan = slots.claim()
    state.in_flight.clear()  # close() failed its items meanwhile
    assert not slots.record(size=1, duration=0.1, failed=0, ok=True, batch_id=id(orphan))
    assert state.tally.items == 2  # the orphan's items are counted by close, not here


def test_stage_next_takes_and_collates_a_full_batch_only_while_every_slot_is_busy() -> None:
    state = new_state(max_concurrent=1)
    slots = new_slots(state, size=2)
    _queue(state, 1, 2, 3)
    slots.stage_next()
    assert state.staged is None  # a slot is free: a worker takes the batch itself
    assert slots.acquire()
    slots.stage_next()
    assert state.staged is not None
    assert [request.item for request in state.staged.batch] == [1, 2]
    assert state.staged.prepared is not None
    assert id(state.staged.batch) in state.in_flight
    with state.lock:
        staged = slots.take_staged_locked()
    assert staged is not None and state.staged is None


def test_interval_remaining_counts_from_the_last_start() -> None:
    state = new_state()
    slots = new_slots(state, min_interval=1.0)
    _queue(state, "a")
    assert slots.interval_remaining() == 0.0
    assert slots.acquire()
    slots.claim()
    state.clock.advance(0.25)  # type: ignore[attr-defined]
    assert slots.interval_remaining() == 0.75
