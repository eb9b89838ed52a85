"""The engine's lifecycle as one state (`Lifecycle`): OPEN -> CLOSING -> CLOSED | FAILED
(issue 24 item 2)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from batchpilot._engine.engine import Engine
from batchpilot._engine.state import Lifecycle
from batchpilot.errors import ClosedError

pytestmark = pytest.mark.timeout(20)

WAIT = 5.0


def test_close_goes_through_closing_while_it_drains_to_closed(engines: list[Engine]) -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[Lifecycle] = []

    def fn(items: list[Any]) -> list[Any]:
        started.set()
        release.wait(WAIT)
        return items

    engine = Engine(fn, collate="list", max_wait=0)
    engines.append(engine)
    assert engine._state.lifecycle is Lifecycle.OPEN
    future = engine.submit(1)
    assert started.wait(WAIT)
    closer = threading.Thread(target=engine.close)
    closer.start()
    while engine._state.lifecycle is Lifecycle.OPEN:
        closer.join(0.001)
    seen.append(engine._state.lifecycle)
    assert engine.closed  # CLOSING refuses items already
    with pytest.raises(ClosedError):
        engine.submit(2)
    release.set()
    closer.join(WAIT)
    assert future.result(timeout=0) == 1
    assert seen == [Lifecycle.CLOSING]
    assert engine._state.lifecycle is Lifecycle.CLOSED and engine._state.cause is None


def test_an_internal_error_ends_in_failed_with_its_cause_and_a_later_close_keeps_it(
    engines: list[Engine],
) -> None:
    engine = Engine(lambda items: items, collate="list", max_wait=0)
    engines.append(engine)
    error = RuntimeError("broken part")
    engine._fail_engine(error)
    assert engine._state.lifecycle is Lifecycle.FAILED and engine._state.cause is error
    engine._fail_engine(RuntimeError("second"))  # the first error stays the cause
    engine.close()
    assert engine._state.lifecycle is Lifecycle.FAILED and engine._state.cause is error
    with pytest.raises(ClosedError, match="broken part"):
        engine.call(1)
