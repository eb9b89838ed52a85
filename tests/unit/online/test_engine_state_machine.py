"""Stateful property: whatever callers and operators do, every item gets exactly one outcome.

Hypothesis drives the online engine through `batchpilot.batching.Batcher` and the
seed-001 `batchpilot.online.BatchProcessor` with random sequences of submits (of
healthy items, items that make their batch raise, and "slow" items whose batch
blocks on a gate until a rule opens it), caller cancellations, pause, resume,
jumps of a `FakeClock` past the items' deadline, draining, and ``close`` with and
without a grace period. After every step each finished future must hold an
outcome its item allows (its result, its own exception, `ItemTimeoutError`,
`ClosedError` only after a close that cut it short, a cancellation only by its
caller or such a close), and no future completes twice. After ``close`` no future
is pending; an item submitted after it raises `ClosedError`. When everything is
over, the engine's counters (`Batcher.statistics`, `BatchProcessor.get_stats`)
equal the outcomes the callers saw.

The hostile variants add items whose batch raises a `BaseException` (issue 13
item 9): that batch's callers get it, and the engine keeps serving (or says
`ClosedError`), so the invariant is unchanged.

No sleeps: slow batches wait on `threading.Event` gates, time moves on the fake
clock, and waiting for behaviour is `concurrent.futures.wait` with a generous
limit that only a wedged engine reaches.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from batchpilot import Batcher, RetryPolicy
from batchpilot.errors import ClosedError, ItemTimeoutError
from batchpilot.online import BatchProcessor, BatchProcessorConfig
from batchpilot.testing import FakeClock

ITEM_TIMEOUT = 10.0
WAIT = 10.0  # seconds a result may take before the engine is called wedged
GATE_LIMIT = 30.0  # a gated batch gives up waiting after this (only if the test is broken)

# No shrinking phase: a failing example here often waits out WAIT on a wedged engine,
# and shrinking replays it hundreds of times (minutes). The failing rule sequence is
# still printed; add Phase.shrink locally to minimise it.
SETTINGS = settings(
    phases=[Phase.explicit, Phase.generate],
    max_examples=40,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Poisoned(Exception):
    """Raised by the batch function for any batch holding a "fail" item."""


class Fatal(BaseException):
    """Raised by the batch function for any batch holding a "fatal" item."""


class Script:
    """The batch function: blocks batches with a "slow" item on that item's gate,
    raises `Fatal` for a "fatal" item, `Poisoned` for a "fail" item, else returns
    ``("done", index)`` per item. Records every item it was called with."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.gates: dict[int, threading.Event] = {}
        self.stuck: list[int] = []  # slow items whose gate never opened (a broken test)
        self._lock = threading.Lock()

    def gate(self, index: int) -> None:
        with self._lock:
            self.gates[index] = threading.Event()

    def open_gates(self) -> None:
        with self._lock:
            gates = list(self.gates.values())
        for gate in gates:
            gate.set()

    def __call__(self, items: list[tuple[int, str]]) -> list[tuple[str, int]]:
        indexes = [index for index, _ in items]
        with self._lock:
            self.seen.update(indexes)
            gates = [self.gates[index] for index, kind in items if kind == "slow"]
        for gate in gates:
            if not gate.wait(GATE_LIMIT):
                self.stuck.extend(indexes)
        kinds = {kind for _, kind in items}
        if "fatal" in kinds:
            raise Fatal(indexes)
        if "fail" in kinds:
            raise Poisoned(indexes)
        return [("done", index) for index in indexes]


@dataclass
class Tracked:
    """One submitted item, its future, and what the test knows about it."""

    index: int
    kind: str
    future: cf.Future[Any]
    deadline: float
    caller_cancelled: bool = False
    completions: int = 0
    completed_at: float | None = None


class EngineMachine(RuleBasedStateMachine):
    """Rules and invariants shared by both front ends; subclasses adapt the calls."""

    KINDS: tuple[str, ...] = ("ok", "ok", "fail", "slow")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1000.0)
        self.script = Script()
        self.items: list[Tracked] = []
        self.lock = threading.Lock()
        self.paused = False
        self.closed = False
        self.cut_short = False  # a close that may fail or cancel items (timeout 0, paused)
        self.refused = False  # the engine refused a submit with ClosedError by itself

    # -- adapters ------------------------------------------------------------------------

    def start(self, workers: int, batch_size: int, retries: int, retry_delay: float) -> None:
        raise NotImplementedError

    def submit_item(self, item: tuple[int, str]) -> cf.Future[Any]:
        raise NotImplementedError

    def close_engine(self, timeout: float) -> None:
        raise NotImplementedError

    def pause_engine(self) -> None:
        raise NotImplementedError

    def resume_engine(self) -> None:
        raise NotImplementedError

    def check_counters(self, outcomes: dict[str, int]) -> None:
        raise NotImplementedError

    # -- rules -----------------------------------------------------------------------------

    @initialize(
        workers=st.integers(1, 2),
        batch_size=st.integers(1, 4),
        retries=st.integers(0, 1),
        retry_delay=st.sampled_from([0.0, 3.0]),
        paused=st.booleans(),
    )
    def setup(
        self, workers: int, batch_size: int, retries: int, retry_delay: float, paused: bool
    ) -> None:
        self.start(workers, batch_size, retries, retry_delay)
        if paused:
            self.pause()

    @precondition(lambda self: not self.closed)
    @rule(kind=st.sampled_from(KINDS))
    def submit(self, kind: str) -> None:
        self._submit(kind)

    def _submit(self, kind: str) -> None:
        index = len(self.items)
        if kind == "slow":
            self.script.gate(index)
        deadline = self.clock.now() + ITEM_TIMEOUT
        try:
            future = self.submit_item((index, kind))
        except ClosedError:
            assert self.fatal_seen(), "a submit to an open engine raised ClosedError"
            self.refused = True
            self.closed = self.cut_short = True  # the engine closed itself
            return
        tracked = Tracked(index, kind, future, deadline)
        self.items.append(tracked)
        future.add_done_callback(functools.partial(self._completed, tracked))

    def _completed(self, tracked: Tracked, _future: cf.Future[Any]) -> None:
        with self.lock:
            tracked.completions += 1
            tracked.completed_at = self.clock.now()

    @precondition(lambda self: not self.closed)
    @rule(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
    def submit_many(self, kinds: list[str]) -> None:
        for kind in kinds:
            self._submit(kind)

    @precondition(lambda self: self.closed)
    @rule(kind=st.sampled_from(KINDS))
    def submit_after_close(self, kind: str) -> None:
        with pytest.raises(ClosedError):
            self.submit_item((-1, kind))

    @precondition(lambda self: bool(self.items))
    @rule(pick=st.integers(0, 10_000))
    def cancel(self, pick: int) -> None:
        tracked = self.items[pick % len(self.items)]
        if tracked.future.cancel():
            tracked.caller_cancelled = True

    @rule()
    def pause(self) -> None:
        self.pause_engine()
        self.paused = True

    @rule()
    def resume(self) -> None:
        self.resume_engine()
        self.paused = False

    @rule(seconds=st.sampled_from([1.0, ITEM_TIMEOUT + 1]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def release_slow_batches(self) -> None:
        self.script.open_gates()

    @precondition(lambda self: not self.closed)
    @rule()
    def drain(self) -> None:
        """Open every gate and resume: every item submitted so far finishes."""
        self.script.open_gates()
        self.resume()
        pending = [t.future for t in self.items]
        _, not_done = cf.wait(pending, timeout=WAIT)
        assert not not_done, f"{len(not_done)} items never finished on a running engine"

    @precondition(lambda self: not self.closed and len(self.items) >= 3)
    @rule()
    def close_now(self) -> None:
        """``close(timeout=0)``: queued items are cancelled, running ones fail."""
        self.closed = self.cut_short = True
        self.close_engine(0.0)
        self._all_done_after_close()

    @precondition(lambda self: not self.closed and len(self.items) >= 3)
    @rule()
    def close_draining(self) -> None:
        """Open every gate, then close with a grace period: unpaused, everything finishes."""
        self.script.open_gates()
        self.closed = True
        self.cut_short = self.cut_short or self.paused
        self.close_engine(WAIT)
        self._all_done_after_close()

    def _all_done_after_close(self) -> None:
        pending = [t.index for t in self.items if not t.future.done()]
        assert not pending, f"items {pending} still pending after close() returned"

    # -- invariants ------------------------------------------------------------------------

    def fatal_seen(self) -> bool:
        return any(_error(t.future, Fatal) for t in self.items if t.future.done())

    @invariant()
    def every_finished_item_has_one_allowed_outcome(self) -> None:
        for tracked in list(self.items):
            if tracked.future.done():
                self._check_outcome(tracked)

    def _check_outcome(self, tracked: Tracked) -> None:
        index, kind, future = tracked.index, tracked.kind, tracked.future
        with self.lock:
            completions, completed_at = tracked.completions, tracked.completed_at
        assert completions <= 1, f"item {index} completed {completions} times"
        if future.cancelled():
            assert tracked.caller_cancelled or self.cut_short or self.fatal_seen(), (
                f"{kind} item {index} was cancelled without a caller or a cutting close"
            )
            assert index not in self.script.seen, f"cancelled item {index} reached the function"
            return
        error = future.exception(timeout=0)
        assert not tracked.caller_cancelled
        if error is None:
            assert kind in ("ok", "slow"), f"{kind} item {index} got a result"
            assert future.result(timeout=0) == ("done", index)
        elif isinstance(error, Poisoned):
            assert kind == "fail", f"{kind} item {index} got a failing batch's error"
            assert index in error.args[0], "an item got another batch's error"
        elif isinstance(error, Fatal):
            assert index in error.args[0], "an item got another batch's BaseException"
        elif isinstance(error, ItemTimeoutError):
            assert completed_at is None or completed_at >= tracked.deadline, (
                f"item {index} timed out before its deadline"
            )
            assert index not in self.script.seen, f"expired item {index} reached the function"
        elif isinstance(error, ClosedError):
            assert self.cut_short or self.fatal_seen(), (
                f"{kind} item {index} got ClosedError from a close that had time to finish it"
            )
        else:
            raise AssertionError(f"{kind} item {index} got an unexpected {error!r}")

    def teardown(self) -> None:
        try:
            if not self.closed:
                self.close_now()
            self.script.open_gates()
            self.close_engine(WAIT)  # idempotent; returns once no batch is running
            for tracked in self.items:
                self._check_outcome(tracked)
                assert tracked.completions == 1, (
                    f"item {tracked.index} completed {tracked.completions} times"
                )
            assert not self.script.stuck, "a gate never opened (the test is broken)"
            for outcome, count in self._outcomes().items():
                if count:
                    event(f"outcome: {outcome}")
            self.check_counters(self._outcomes())
        finally:
            self.script.open_gates()

    def _outcomes(self) -> dict[str, int]:
        counts = dict.fromkeys(("result", "failed", "expired", "cancelled", "closed"), 0)
        for tracked in self.items:
            future = tracked.future
            if future.cancelled():
                counts["cancelled"] += 1
            elif future.exception(timeout=0) is None:
                counts["result"] += 1
            elif _error(future, (Poisoned, Fatal)):
                counts["failed"] += 1
            elif _error(future, ItemTimeoutError):
                counts["expired"] += 1
            else:
                counts["closed"] += 1
        return counts


def _error(future: cf.Future[Any], kinds: type[BaseException] | tuple[type, ...]) -> bool:
    return not future.cancelled() and isinstance(future.exception(timeout=0), kinds)


class BatcherMachine(EngineMachine):
    """The engine behind ``@batch`` / `Batcher`, through ``submit``."""

    def start(self, workers: int, batch_size: int, retries: int, retry_delay: float) -> None:
        self.batcher: Batcher[Any, Any] = Batcher(
            self.script,
            collate="list",
            max_batch_size=batch_size,
            max_wait=0.0,
            max_concurrent_batches=workers,
            retry=RetryPolicy(retries, retry_delay),
            item_timeout=ITEM_TIMEOUT,
            clock=self.clock,
        )

    def submit_item(self, item: tuple[int, str]) -> cf.Future[Any]:
        return self.batcher.submit(item)

    def close_engine(self, timeout: float) -> None:
        self.batcher.close(timeout)

    def pause_engine(self) -> None:
        self.batcher.pause()

    def resume_engine(self) -> None:
        self.batcher.resume()

    def check_counters(self, outcomes: dict[str, int]) -> None:
        stats = self.batcher.statistics()
        assert stats.active_batches == 0 and stats.queue_size == 0
        counted = {
            "result": stats.succeeded,
            "failed": stats.failed,
            "expired": stats.expired,
            "cancelled": stats.cancelled,
        }
        seen = {key: outcomes[key] for key in counted}
        assert counted == seen, f"statistics {counted} != outcomes {outcomes}"
        assert stats.items == stats.succeeded + stats.failed


class ProcessorMachine(EngineMachine):
    """The seed-001 `BatchProcessor`, through ``enqueue_predict`` and ``stop``."""

    def start(self, workers: int, batch_size: int, retries: int, retry_delay: float) -> None:
        self.processor: BatchProcessor[Any, Any] = BatchProcessor(
            BatchProcessorConfig(
                collate="list",
                max_workers=workers,
                initial_batch_size=batch_size,
                max_batch_size=4,
                batch_timeout=0.0,
                max_retries=retries,
                retry_delay=retry_delay,
                item_timeout=ITEM_TIMEOUT,
                enable_health_monitoring=False,
            ),
            clock=self.clock,
        )
        self.processor.start(self.script)

    def submit_item(self, item: tuple[int, str]) -> cf.Future[Any]:
        return self.processor.enqueue_predict(item)

    def close_engine(self, timeout: float) -> None:
        self.processor.stop(timeout)

    def pause_engine(self) -> None:
        self.processor.pause()

    def resume_engine(self) -> None:
        self.processor.resume()

    def check_counters(self, outcomes: dict[str, int]) -> None:
        stats = self.processor.get_stats()
        assert stats["active_batches"] == 0 and stats["queue_size"] == 0
        counted = {
            "processed": int(stats["total_processed"]),
            "failed": int(stats["error_count"]),
        }
        seen = {
            "processed": outcomes["result"] + outcomes["failed"],
            "failed": outcomes["failed"],
        }
        assert counted == seen, f"get_stats {counted} != outcomes {outcomes}"


class HostileBatcherMachine(BatcherMachine):
    """`BatcherMachine` with items whose batch raises a `BaseException`."""

    @precondition(lambda self: not self.closed)
    @rule(kinds=st.lists(st.sampled_from((*EngineMachine.KINDS, "fatal")), min_size=1, max_size=6))
    def submit_many_with_fatal(self, kinds: list[str]) -> None:
        for kind in kinds:
            self._submit(kind)


class HostileProcessorMachine(ProcessorMachine):
    """`ProcessorMachine` with items whose batch raises a `BaseException`."""

    @precondition(lambda self: not self.closed)
    @rule(kinds=st.lists(st.sampled_from((*EngineMachine.KINDS, "fatal")), min_size=1, max_size=6))
    def submit_many_with_fatal(self, kinds: list[str]) -> None:
        for kind in kinds:
            self._submit(kind)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "machine",
    [BatcherMachine, ProcessorMachine, HostileBatcherMachine, HostileProcessorMachine],
    ids=["batcher", "processor", "batcher-base-exception", "processor-base-exception"],
)
def test_every_item_gets_exactly_one_outcome(machine: type[EngineMachine]) -> None:
    run_state_machine_as_test(machine, settings=SETTINGS)
