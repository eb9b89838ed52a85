"""The worker pool: threads that run batches while items wait, for plain-``def`` functions.

Each worker repeats four named steps (as ``_ExecutorManagerThread.run`` in CPython's
``concurrent/futures/process.py``):

1. `WorkerPool._wait_for_slot`: sleep until a slot is free and there is work (a
   staged batch or queued items); when the callers the last batch released are
   worth waiting for (`wait_budget`), sleep until all are back or the wait stops
   paying. Returns None when the engine shut down.
2. run a staged batch at once, if one was handed over with the slot;
3. else `WorkerPool._gather`: honour ``min_batch_interval`` and wait, holding the
   slot, for released callers to resubmit while it pays (`_wait_for_stragglers`);
4. claim the batch and run it (`BatchRunner.run_sync`); after a deliberate wait
   a batch that did not fill closes for ``max_wait``.

Anything escaping those steps is an error of the engine's own logic: ``fail``
closes the engine (user code never gets here: `BatchRunner` gives a batch's items
whatever its function raised).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .execute import BatchRunner
from .policy import wait_budget
from .requests import Request
from .slots import Slots
from .state import WAIT_SLICE, EngineState, Fail, Staged

__all__ = ["WorkerPool"]


class _Claim:
    """What a worker took in `WorkerPool._wait_for_slot`: a slot, and maybe a staged batch."""

    __slots__ = ("deliberate", "since", "staged")

    def __init__(self, staged: Staged | None, deliberate: bool, since: float) -> None:
        self.staged = staged  # the batch staged for this slot (in flight already), or None
        self.deliberate = deliberate  # it slept on purpose for returning callers
        self.since = since  # when it began waiting for them (``time.monotonic``)


class WorkerPool:
    """Worker threads for one engine, started on demand up to ``max_concurrent``.

    Args:
        state: the shared state (lock, queue, counters, lifecycle).
        slots: claims batches and frees slots.
        runner: runs a batch in the worker's thread.
        current_size: the size limit of the next batch.
        max_wait: upper bound of a deliberate wait, seconds.
        latency_target: a deliberate wait never pushes a batch past this, or None.
        thread_name: the prefix of the workers' names.
        fail: closes the engine after an internal error (`Fail`).
    """

    def __init__(
        self,
        state: EngineState,
        slots: Slots,
        runner: BatchRunner,
        current_size: Callable[[], int],
        max_wait: float,
        latency_target: float | None,
        thread_name: str,
        fail: Fail,
    ) -> None:
        self._state = state
        self._slots = slots
        self._runner = runner
        self._current_size = current_size
        self.max_wait = max_wait  # upper bound of a deliberate wait (set_max_wait)
        self._latency_target = latency_target
        self._thread_name = thread_name
        self._fail = fail
        self.threads: list[threading.Thread] = []  # the workers started (guarded by the lock)

    # -- waking -----------------------------------------------------------------------

    def wake(self) -> None:
        """Wake a waiting worker for queued items, or start one if none is idle."""
        # Lock-free fast path: the queue was appended to before reading the idle count,
        # and a worker raises the idle count before checking the queue (_wait_for_slot),
        # so one of the two always sees the other.
        state = self._state
        if state.idle_workers:
            if len(state.queue) >= state.worker_wake_threshold:
                with state.lock:
                    state.work.notify()
        elif len(self.threads) < state.max_concurrent:
            self._start()

    def wake_all(self) -> None:
        """Start workers for the queued items and wake every waiting one (resume, close)."""
        state = self._state
        while (
            len(self.threads) < min(state.max_concurrent, len(state.queue)) and not state.finished
        ):
            self._start()
        with state.lock:
            state.work.notify_all()

    def _start(self) -> None:
        state = self._state
        with state.lock:
            if len(self.threads) >= state.max_concurrent or state.finished:
                return
            worker = threading.Thread(
                target=self._run, name=f"{self._thread_name}-{len(self.threads)}", daemon=True
            )
            self.threads.append(worker)
        worker.start()

    def forget_current_locked(self) -> None:
        """Drop this thread from the pool (it is a worker ending; the lock is held)."""
        thread = threading.current_thread()
        if thread in self.threads:
            self.threads.remove(thread)

    # -- the worker loop --------------------------------------------------------------

    def _run(self) -> None:
        """A worker thread: run batches while there are items, wait while there are none."""
        holding = False  # a slot taken and not yet handed to a batch (or released)
        batch: list[Request] | None = None
        try:
            while True:
                batch = None
                expected = min(self._state.returning_callers, self._current_size())
                claim = self._wait_for_slot(expected)
                if claim is None:
                    return
                holding = True
                if claim.staged is not None:  # in flight since it was staged: the slot is its
                    batch, holding = claim.staged.batch, False
                    self._runner.run_sync(claim.staged.batch, None, claim.staged.prepared)
                    continue
                waited = self._gather(expected, claim)
                batch = self._slots.claim(waited=waited)
                holding = False  # the batch holds the slot now, or it was released
                if batch:
                    self._runner.run_sync(batch, None)
        except BaseException as exc:
            self._fail(exc, holding=holding, batch=batch)

    def _wait_for_slot(self, expected: int) -> _Claim | None:
        """Step 1: wait until a slot is free and there is work; take the slot.

        Callers the last batch released are expected back; when the cost model says
        they are worth waiting for, sleep until all are back (one wake-up, not one per
        arrival) or the wait stops paying. None: the engine shut down.
        """
        state = self._state
        patience = 0.0
        if expected > 1 and len(state.queue) < expected:
            patience = self.planned_wait(1, expected)
        since = time.monotonic()
        deliberate = False
        with state.lock:
            state.idle_workers += 1
            while (
                state.paused
                or state.active >= state.max_concurrent
                or (not len(state.queue) and state.staged is None)
            ):
                if state.finished:
                    state.idle_workers -= 1
                    return None
                if patience > 0:
                    state.worker_wake_threshold = expected
                    state.work.wait(patience)
                    patience, deliberate = 0.0, True
                else:
                    state.worker_wake_threshold = 1
                    state.work.wait()
            state.worker_wake_threshold = 1
            state.idle_workers -= 1
            state.active += 1
            staged = self._slots.take_staged_locked()
            spare = state.active < state.max_concurrent and len(state.queue) > 1
        if spare:  # more items than this batch may take: let another worker start one
            self.wake()
        return _Claim(staged, deliberate, since)

    def _gather(self, expected: int, claim: _Claim) -> bool:
        """Step 3: holding a slot, keep ``min_batch_interval``, then let released callers
        resubmit while it pays (counting ``claim``'s wait for them); count the wait if
        there was one, and return whether there was (the batch then closes for
        ``max_wait`` unless it filled)."""
        delay = self._slots.interval_remaining()
        if delay > 0:
            self._state.clock.sleep(delay)
        waited = self._wait_for_stragglers(expected, claim.since) or claim.deliberate
        if waited:
            with self._state.lock:
                self._state.tally.waits += 1
        return waited

    def _wait_for_stragglers(self, expected: int, since: float) -> bool:
        """Holding a slot, wait for released callers to resubmit while it pays (`wait_budget`).

        ``since`` is when the wait for them began (``time.monotonic``). Returns whether
        it waited.
        """
        state = self._state
        waited = False
        while state.open and not state.paused:
            remaining = self.planned_wait(len(state.queue), expected) - (time.monotonic() - since)
            if remaining <= 0:
                break
            waited = True
            with state.lock:
                state.idle_workers += 1
                state.worker_wake_threshold = expected
                if len(state.queue) < expected:
                    state.work.wait(min(remaining, WAIT_SLICE))
                state.worker_wake_threshold = 1
                state.idle_workers -= 1
        return waited

    # -- the waiting policy -----------------------------------------------------------

    def planned_wait(self, queued: int, expected: int) -> float:
        """Seconds worth waiting for ``expected`` items with ``queued`` in hand, per the
        fitted cost model (`wait_budget`); 0 means dispatch now."""
        if self.max_wait <= 0 or queued >= expected:
            return 0.0
        return wait_budget(
            self.current_fit(),
            queued=queued,
            expected=expected,
            max_wait=self.max_wait,
            latency_target=self._latency_target,
        )

    def current_fit(self) -> tuple[float, float] | None:
        """The latest cost-model fit (`BatchTally.fit`)."""
        with self._state.lock:
            return self._state.tally.fit()

    def reset_after_fork(self) -> None:
        """In a forked child: no workers (the parent's threads are not here)."""
        self.threads = []
