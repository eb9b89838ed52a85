"""Retry-then-bisect isolates failing items; sync and async drivers agree."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from batchpilot import BatchFailedError, RetryPolicy
from batchpilot._core.isolation import Outcome, arun_isolated, run_isolated
from batchpilot.testing import FakeClock


class Poisoned(Exception):
    pass


def make_call(items: list[int], bad: set[int], calls: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def call(start: int, stop: int) -> Sequence[int]:
        calls.append((start, stop))
        chunk = items[start:stop]
        hit = [x for x in chunk if x in bad]
        if hit:
            raise Poisoned(hit[0])
        return [x * 10 for x in chunk]

    return call


def test_success_needs_one_call() -> None:
    calls: list[tuple[int, int]] = []
    outcomes = run_isolated(make_call([1, 2, 3], set(), calls), 3, RetryPolicy(), FakeClock().sleep)
    assert outcomes == [Outcome(True, 10), Outcome(True, 20), Outcome(True, 30)]
    assert calls == [(0, 3)]


def test_retries_with_backoff_then_bisects_to_the_bad_item() -> None:
    clock = FakeClock()
    calls: list[tuple[int, int]] = []
    items = list(range(8))
    policy = RetryPolicy(max_retries=2, retry_delay=0.5)
    outcomes = run_isolated(make_call(items, {5}, calls), 8, policy, clock.sleep)
    assert clock.sleeps == [0.5, 1.0]
    assert calls[:3] == [(0, 8)] * 3
    assert calls[3:] == [(0, 4), (4, 8), (4, 6), (4, 5), (5, 6), (6, 8)]
    assert [o.ok for o in outcomes] == [True] * 5 + [False] + [True] * 2
    assert isinstance(outcomes[5].value, Poisoned)
    assert outcomes[5].value.args == (5,)
    assert outcomes[7] == Outcome(True, 70)


def test_transient_failure_recovers_on_retry() -> None:
    attempts = []

    def flaky(start: int, stop: int) -> list[int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("blip")
        return list(range(start, stop))

    outcomes = run_isolated(flaky, 4, RetryPolicy(retry_delay=0), FakeClock().sleep)
    assert all(o.ok for o in outcomes)
    assert len(attempts) == 2


def test_batch_failed_error_fails_the_whole_slice_without_bisecting() -> None:
    calls = []

    def wrong_length(start: int, stop: int) -> list[int]:
        calls.append((start, stop))
        raise BatchFailedError("batch function returned 1 results, expected 4")

    outcomes = run_isolated(wrong_length, 4, RetryPolicy(retry_delay=0), FakeClock().sleep)
    assert calls == [(0, 4)]
    assert all(not o.ok and isinstance(o.value, BatchFailedError) for o in outcomes)


def test_every_item_failing_each_gets_its_own_exception() -> None:
    items = [1, 2, 3]
    outcomes = run_isolated(
        make_call(items, {1, 2, 3}, []), 3, RetryPolicy(max_retries=0), FakeClock().sleep
    )
    assert [o.value.args for o in outcomes] == [(1,), (2,), (3,)]


def test_async_driver_matches_sync_driver() -> None:
    items = list(range(6))
    sync_calls: list[tuple[int, int]] = []
    async_calls: list[tuple[int, int]] = []
    sync_call = make_call(items, {0, 4}, sync_calls)
    async_inner = make_call(items, {0, 4}, async_calls)
    slept: list[float] = []

    async def acall(start: int, stop: int) -> Sequence[int]:
        return async_inner(start, stop)  # type: ignore[no-any-return]

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(max_retries=1, retry_delay=0.25)
    expected = run_isolated(sync_call, 6, policy, FakeClock().sleep)
    got = asyncio.run(arun_isolated(acall, 6, policy, asleep))
    assert [(o.ok, repr(o.value)) for o in got] == [(o.ok, repr(o.value)) for o in expected]
    assert async_calls == sync_calls
    assert slept == [0.25]


def test_bisect_on_refuses_the_split_and_fails_every_item_with_the_last_error() -> None:
    """The stop-bisecting rule is a driver parameter (the buffer's rule: no split while
    the last whole-batch error is transient); both drivers honour it, only at the top."""
    policy = RetryPolicy(max_retries=1, retry_delay=0.0, retry_on=lambda e: "down" in str(e))
    sync_calls: list[tuple[int, int]] = []

    def down(start: int, stop: int) -> list[int]:
        sync_calls.append((start, stop))
        raise Poisoned("down")

    async def adown(start: int, stop: int) -> list[int]:
        return down(start, stop)

    async def asleep(seconds: float) -> None:
        pass

    def transient(error: BaseException) -> bool:
        return not policy.retry_on(error)

    outcomes = run_isolated(down, 4, policy, FakeClock().sleep, bisect_on=transient)
    assert sync_calls == [(0, 4), (0, 4)]  # tried and retried whole, never split
    assert [o.ok for o in outcomes] == [False] * 4
    assert len({id(o.value) for o in outcomes}) == 1
    sync_calls.clear()
    got = asyncio.run(arun_isolated(adown, 4, policy, asleep, bisect_on=transient))
    assert sync_calls == [(0, 4), (0, 4)] and not any(o.ok for o in got)
    # a permanent error is still split down to the bad item, and halves are not asked
    bad = make_call(list(range(4)), {2}, calls := [])
    outcomes = run_isolated(bad, 4, policy, FakeClock().sleep, bisect_on=transient)
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert calls == [(0, 4), (0, 2), (2, 4), (2, 3), (3, 4)]


def test_retry_policy_delays_and_validation() -> None:
    policy = RetryPolicy(max_retries=4, retry_delay=1.0, backoff=2.0, max_delay=3.0)
    assert list(policy.delays()) == [1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        policy.delay(0)
    for bad in (
        {"max_retries": -1},
        {"retry_delay": -0.1},
        {"backoff": 0.5},
        {"max_delay": -1.0},
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]
