"""Deadlines (`_engine/deadlines.py`): add, next, expire and the deadline thread
(issue 24 item 1)."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from batchpilot._engine.deadlines import Deadlines
from batchpilot._engine.state import Lifecycle
from batchpilot.errors import ItemTimeoutError

from .parts import future_request, new_state

pytestmark = pytest.mark.timeout(20)

WAIT = 5.0  # seconds before the test calls the deadline thread wedged


class Recorder:
    """Stands in for the facade's ``fail``."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.called = threading.Event()

    def __call__(self, exc: BaseException, *, holding: bool = False, batch: object = None) -> None:
        self.errors.append(exc)
        self.called.set()


def test_without_a_timeout_nothing_has_a_deadline() -> None:
    deadlines = Deadlines(new_state(), None, "t-deadlines", Recorder())
    assert deadlines.add(5.0) is None
    assert not any(t.name == "t-deadlines" for t in threading.enumerate())


def test_add_gives_the_deadline_and_next_is_the_earliest_queued() -> None:
    state = new_state(expiring=True)
    deadlines = Deadlines(state, 2.0, "t-deadlines-next", Recorder())
    try:
        assert deadlines.next() is None
        for now in (1.0, 3.0):
            state.queue.put(future_request(now, deadlines.add(now)))
        assert deadlines.next() == 3.0
    finally:
        state.lifecycle = Lifecycle.CLOSED
        deadlines.stop()
        state.queue.close()


def test_expire_fails_live_items_and_counts_cancelled_ones_apart() -> None:
    state = new_state()
    deadlines = Deadlines(state, 1.5, "t", Recorder())
    live, cancelled = future_request("live"), future_request("gone")
    cancelled.sink.cancel()
    deadlines.expire([live, cancelled], None)
    assert isinstance(live.sink.exception(timeout=0), ItemTimeoutError)
    assert "1.5 s" in str(live.sink.exception(timeout=0))
    assert (state.tally.expired, state.tally.cancelled) == (1, 1)


def test_the_thread_fails_an_item_at_its_deadline() -> None:
    state = new_state(expiring=True)
    deadlines = Deadlines(state, 1.0, "t-deadlines-run", Recorder())
    request = future_request("x", deadlines.add(state.clock.now()))
    state.queue.put(request)
    try:
        state.clock.advance(1.0)  # type: ignore[attr-defined]
        assert isinstance(request.sink.exception(timeout=WAIT), ItemTimeoutError)
        assert len(state.queue) == 0
    finally:
        state.lifecycle = Lifecycle.CLOSED
        deadlines.stop()
        state.queue.close()


def test_an_error_in_the_thread_goes_to_fail() -> None:
    """A done-callback raising `KeyboardInterrupt` as the expired future resolves."""
    state = new_state(expiring=True)
    fail = Recorder()
    deadlines = Deadlines(state, 1.0, "t-deadlines-fail", fail)
    request = future_request("x", deadlines.add(state.clock.now()))

    def interrupt(future: concurrent.futures.Future[object]) -> None:
        raise KeyboardInterrupt

    request.sink.add_done_callback(interrupt)
    state.queue.put(request)
    try:
        state.clock.advance(1.0)  # type: ignore[attr-defined]
        assert fail.called.wait(WAIT)
        assert isinstance(fail.errors[0], KeyboardInterrupt)
    finally:
        state.lifecycle = Lifecycle.CLOSED
        deadlines.stop()
        state.queue.close()
