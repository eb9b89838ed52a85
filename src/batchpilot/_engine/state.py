"""What the parts of the online engine share: one lock, the lifecycle, the slot counters.

`Engine` (engine.py) is a facade over four parts, each in its own module: slots and
staging (slots.py), loop dispatch (dispatch.py), the worker pool (workers.py) and
deadlines (deadlines.py). They never import the facade; they share one `EngineState`
and get what else they need (``fail``, the current batch size) as callbacks. Every
field below is guarded by ``lock`` unless its comment says otherwise.
"""

from __future__ import annotations

import asyncio
import enum
import math
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from .._core.clock import Clock
from .._core.cost import CloseReason
from .queue import BoundedPriorityQueue
from .requests import Request
from .stats import BatchTally

__all__ = [
    "INLINE_ROUND",
    "LOOP_STOP_TIMEOUT",
    "REAP_SLICE",
    "WAIT_SLICE",
    "EngineState",
    "Fail",
    "Lifecycle",
    "Staged",
    "running_loop",
]

WAIT_SLICE = 0.0005  # a deliberate wait re-checks its budget at least this often (s)
INLINE_ROUND = 0.005  # seconds of inline batches per loop callback before yielding the loop
LOOP_STOP_TIMEOUT = 1.0  # seconds close() waits for the private loop thread to stop
REAP_SLICE = 0.05  # seconds the deadline thread waits at most before looking again


class Fail(Protocol):
    """The facade's ``fail``: close the engine after an internal error of a part.

    ``holding``: the failing thread holds a slot no batch owns; ``batch``: the batch
    it was running (still in flight if its outcomes were not delivered).
    """

    def __call__(
        self, exc: BaseException, *, holding: bool = False, batch: list[Request] | None = None
    ) -> None: ...


class Lifecycle(enum.Enum):
    """An engine's lifecycle: OPEN -> CLOSING -> CLOSED | FAILED (as starlette's
    ``WebSocketState``).

    OPEN takes items; CLOSING refuses them and drains (`Engine.close`); CLOSED has
    failed or cancelled whatever was left and stopped its threads. FAILED is CLOSED
    after an internal error (from any state; `EngineState.cause` says which).
    """

    OPEN = 0
    CLOSING = 1
    CLOSED = 2
    FAILED = 3


@dataclass
class Staged:
    """A batch taken from the queue ahead of a free slot, with its collated input
    (None when collating raised: the worker then collates and handles the error)."""

    batch: list[Request]
    prepared: tuple[Any, Any] | None


class EngineState:
    """The state the engine's parts share, under one lock (no part adds another)."""

    def __init__(
        self, queue: BoundedPriorityQueue[Request], clock: Clock, max_concurrent: int
    ) -> None:
        self.queue = queue  # the shared queue of waiting requests (locks itself)
        self.clock = clock  # the engine's clock (timestamps, deadlines, intervals)
        self.tally = BatchTally()  # counters and the cost model
        self.max_concurrent = max_concurrent  # batch slots
        self.new_locks()
        self.lifecycle = Lifecycle.OPEN  # read without the lock on the per-item paths
        self.cause: BaseException | None = None  # why it FAILED (the first internal error)
        self.paused = False  # no batch starts while paused
        self.active = 0  # batch slots taken now
        self.in_flight: dict[int, list[Request]] = {}  # running batches by id(batch)
        # Why each in-flight batch closed, by id(batch), until `Slots.record` counts it.
        self.close_reasons: dict[int, CloseReason] = {}
        self.staged: Staged | None = None  # the next batch, taken while every slot was busy
        self.last_start = -math.inf  # clock time the last batch from the queue started
        self.has_cfutures = False  # submit() futures exist: move them to RUNNING at claim
        self.idle_workers = 0  # workers waiting on ``work`` now
        self.worker_wake_threshold = 1  # queue length at which a waiting worker wants waking
        # Closed-loop callers expected back for the next batch: the last batch's items
        # (released, about to resubmit) plus those already waiting when it finished.
        self.returning_callers = 0
        self.started_at = clock.now()  # when the engine started (for its rate)

    def new_locks(self) -> None:
        """The lock and its conditions (anew in a forked child: a parent thread may hold them)."""
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)  # workers wait here for items
        self.drained = threading.Condition(self.lock)  # close() waits here

    @property
    def open(self) -> bool:
        """OPEN: items are taken (else close was called, or the engine failed)."""
        return self.lifecycle is Lifecycle.OPEN

    @property
    def finished(self) -> bool:
        """CLOSED or FAILED: nothing is pending any more and the engine's threads stop."""
        return self.lifecycle is Lifecycle.CLOSED or self.lifecycle is Lifecycle.FAILED

    def reset_after_fork(self) -> None:
        """In a forked child: new locks, no batch running, staged or awaited (counters kept)."""
        self.new_locks()
        self.queue.reset_after_fork()
        self.active = self.idle_workers = self.returning_callers = 0
        self.worker_wake_threshold = 1
        self.in_flight = {}
        self.close_reasons = {}
        self.staged = None


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None (no ``getpid`` check)."""
    return asyncio._get_running_loop()
