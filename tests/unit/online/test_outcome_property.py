"""Property: every item submitted to the online processor gets exactly one outcome.

Hypothesis draws a mix of healthy items, items that make the batch function raise,
items that pass their deadline (on a `FakeClock`) before any batch picks them up,
items whose caller cancels, and an optional early ``stop``. Whatever the mix and
the thread interleaving, each future ends done exactly once, with an outcome its
kind allows: its result, its own exception, `ItemTimeoutError`, `ClosedError` or
cancellation. Expired and cancelled items never reach the batch function, and no
item is delivered a result twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchpilot.errors import ClosedError, ItemTimeoutError
from batchpilot.online import BatchProcessor, BatchProcessorConfig
from batchpilot.testing import FakeClock

KINDS = ("ok", "fail", "expire", "cancel")
ITEM_TIMEOUT = 10.0

#: How the run ends: drain everything then stop; stop while paused; stop right after resume.
ENDINGS = ("drain", "stop_paused", "stop_running")


class Poisoned(Exception):
    """Raised by the batch function for any batch holding a "fail" item."""


class Recorder:
    """The batch function: fails batches with a "fail" item, records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.succeeded: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, items: list[tuple[int, str]]) -> list[tuple[str, int]]:
        with self._lock:
            self.seen.extend(items)
        if any(kind == "fail" for _, kind in items):
            raise Poisoned(items)
        with self._lock:
            self.succeeded.update(index for index, _ in items)
        return [("done", index) for index, _ in items]


@settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=12),
    workers=st.integers(1, 3),
    batch_size=st.integers(1, 4),
    retries=st.integers(0, 1),
    ending=st.sampled_from(ENDINGS),
)
@pytest.mark.timeout(60)
def test_every_item_gets_exactly_one_allowed_outcome(
    kinds: list[str], workers: int, batch_size: int, retries: int, ending: str
) -> None:
    clock = FakeClock()
    recorder = Recorder()
    processor: BatchProcessor[Any, Any] = BatchProcessor(
        BatchProcessorConfig(
            collate="list",
            max_workers=workers,
            initial_batch_size=batch_size,
            max_batch_size=4,
            max_retries=retries,
            retry_delay=0.0,
            item_timeout=ITEM_TIMEOUT,
            enable_health_monitoring=False,
        ),
        clock=clock,
    )
    processor.start(recorder)
    processor.pause()

    futures: dict[int, cf.Future[Any]] = {}
    completions: Counter[int] = Counter()
    completions_lock = threading.Lock()

    def completed(index: int) -> None:
        with completions_lock:
            completions[index] += 1

    def submit(index: int) -> None:
        future = processor.enqueue_predict((index, kinds[index]))
        future.add_done_callback(lambda _f, i=index: completed(i))
        futures[index] = future

    # Items that must expire wait longer than item_timeout before anything runs.
    for index, kind in enumerate(kinds):
        if kind == "expire":
            submit(index)
    clock.advance(ITEM_TIMEOUT + 1)
    for index, kind in enumerate(kinds):
        if kind != "expire":
            submit(index)
    for index, kind in enumerate(kinds):
        if kind == "cancel":
            assert futures[index].cancel()

    if ending == "drain":
        processor.resume()
        cf.wait(futures.values(), timeout=20)
        processor.stop()
    elif ending == "stop_paused":
        processor.stop(timeout=0.0)
    else:
        processor.resume()
        processor.stop(timeout=0.0)

    _, not_done = cf.wait(futures.values(), timeout=20)
    assert not not_done, "a caller would wait forever"
    stopped_early = ending != "drain"
    for index, kind in enumerate(kinds):
        future = futures[index]
        assert completions[index] == 1, f"item {index} completed {completions[index]} times"
        _assert_allowed(future, index, kind, stopped_early)

    never_run = {index for index, kind in enumerate(kinds) if kind in ("expire", "cancel")}
    assert never_run.isdisjoint(index for index, _ in recorder.seen)
    assert all(count == 1 for count in recorder.succeeded.values()), "a result delivered twice"


def _assert_allowed(future: cf.Future[Any], index: int, kind: str, stopped_early: bool) -> None:
    if future.cancelled():
        assert kind == "cancel" or stopped_early, f"{kind} item {index} was cancelled"
        return
    error = future.exception(timeout=0)
    if error is None:
        assert kind == "ok", f"{kind} item {index} got a result"
        assert future.result(timeout=0) == ("done", index)
    elif isinstance(error, Poisoned):
        assert kind == "fail", f"{kind} item {index} got the poisoned batch's error"
        assert (index, "fail") in error.args[0], "a failing item got another item's error"
    elif isinstance(error, ItemTimeoutError):
        assert kind == "expire", f"{kind} item {index} timed out"
    elif isinstance(error, ClosedError):
        assert stopped_early, f"{kind} item {index} got ClosedError without an early stop"
    else:
        raise AssertionError(f"{kind} item {index} got an unexpected {error!r}")
