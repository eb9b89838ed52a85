"""Deadlines of queued items (``item_timeout``): add, next, expire, as trio's ``Deadlines``.

Each queued `Request` carries its own deadline (the queue keeps them in order per
level, so the earliest is at a level's head). `Deadlines.add` gives a new item its
deadline and starts the deadline thread on first use; that thread sleeps until
`Deadlines.next` and fails what expired (`Deadlines.expire`), even while every batch
slot is busy. A claim that meets expired items fails them through `expire` too.
"""

from __future__ import annotations

import asyncio
import math
import threading

from ..errors import ItemTimeoutError
from .requests import Request, deliver
from .state import REAP_SLICE, EngineState, Fail

__all__ = ["Deadlines"]


class Deadlines:
    """The deadlines of an engine whose items time out after ``timeout`` seconds.

    Args:
        state: the shared state (queue, clock, counters, lifecycle).
        timeout: seconds an item may wait in the queue, or None (no deadlines).
        thread_name: the deadline thread's name.
        fail: closes the engine after an error of the deadline thread.
    """

    def __init__(
        self, state: EngineState, timeout: float | None, thread_name: str, fail: Fail
    ) -> None:
        self._state = state
        self.timeout = timeout  # seconds an item may wait, or None
        self._thread_name = thread_name
        self._fail = fail
        self._thread: threading.Thread | None = None  # started by the first add()
        self._stop = threading.Event()  # set when the engine shuts down

    def add(self, now: float) -> float | None:
        """The deadline of an item queued at ``now`` (None without a timeout)."""
        if self.timeout is None:
            return None
        if self._thread is None:
            self._start()
        return now + self.timeout

    def next(self) -> float | None:
        """The earliest deadline of a queued item, or None."""
        return self._state.queue.earliest_deadline()

    def expire(self, expired: list[Request], here: asyncio.AbstractEventLoop | None) -> None:
        """Fail ``expired`` with `ItemTimeoutError`; those their callers cancelled stay so."""
        live = [request for request in expired if not request.cancelled()]
        state = self._state
        with state.lock:
            state.tally.expired += len(live)
            state.tally.cancelled += len(expired) - len(live)
        errors = [
            ItemTimeoutError(f"item expired after {self.timeout} s in the queue") for _ in live
        ]
        deliver(live, errors, [False] * len(live), here)

    def stop(self) -> None:
        """Let the deadline thread end (the engine shut down)."""
        self._stop.set()

    def reset_after_fork(self) -> None:
        """In a forked child: no deadline thread (the parent's is not here)."""
        self._stop = threading.Event()
        self._thread = None

    def _start(self) -> None:
        state = self._state
        with state.lock:
            if self._thread is not None or state.finished:
                return
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The deadline thread: fail queued items at their deadline.

        Whatever it meets (a caller's done-callback raising `KeyboardInterrupt` as an
        expired future resolves, say) closes the engine like a worker's internal error,
        so no item waits for a deadline thread that is gone.
        """
        state = self._state
        queue = state.queue
        try:
            while not state.finished:
                deadline = self.next()
                if deadline is None and not len(queue):
                    queue.wait()  # until an item is queued or the queue is closed
                    continue
                remaining = math.inf if deadline is None else deadline - state.clock.now()
                if remaining > 0:
                    self._stop.wait(min(remaining, REAP_SLICE))
                    continue
                expired = queue.expire()
                if expired:
                    self.expire(expired, None)
        except BaseException as exc:
            self._fail(exc)
