"""Building blocks for the unit tests of the engine's parts (no `Engine` involved)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchpilot._core.collate import get_collator
from batchpilot._core.sizing import Fixed
from batchpilot._engine.queue import BoundedPriorityQueue
from batchpilot._engine.requests import CFUTURE, Request
from batchpilot._engine.slots import Slots, TakeBatch, take_by_count
from batchpilot._engine.state import EngineState
from batchpilot.testing import FakeClock


def new_state(
    max_concurrent: int = 1, *, expiring: bool = False, clock: FakeClock | None = None
) -> EngineState:
    clock = clock or FakeClock()
    queue: BoundedPriorityQueue[Request] = BoundedPriorityQueue(100, 2, clock, expiring=expiring)
    return EngineState(queue, clock, max_concurrent)


def new_slots(
    state: EngineState,
    size: int = 2,
    *,
    take: TakeBatch = take_by_count,
    expire: Callable[[list[Request], Any], None] | None = None,
    min_interval: float = 0.0,
) -> Slots:
    def ignore(requests: list[Request], here: Any) -> None:
        raise AssertionError(f"nothing should expire here, got {requests}")

    return Slots(
        state,
        lambda: size,
        get_collator("list"),
        Fixed(size),
        take,
        expire or ignore,
        min_interval,
    )


def future_request(item: Any, deadline: float | None = None) -> Request:
    """A queued item whose outcome goes to a `concurrent.futures.Future` (``.sink``)."""
    import concurrent.futures

    return Request(item, concurrent.futures.Future(), CFUTURE, None, deadline, 0.0)
