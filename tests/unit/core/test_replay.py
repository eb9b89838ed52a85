"""replay_first: the isolation plan's first attempt is the failure already seen, not a new call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from batchpilot import RetryPolicy
from batchpilot._core.isolation import arun_isolated, run_isolated
from batchpilot._core.replay import replay_first
from batchpilot.testing import FakeClock


class Poisoned(Exception):
    pass


ITEMS = [1, 2, 3, 4]


def double_unless_three(calls: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def call(start: int, stop: int) -> Sequence[int]:
        calls.append((start, stop))
        chunk = ITEMS[start:stop]
        if 3 in chunk:
            raise Poisoned(start, stop)
        return [x * 2 for x in chunk]

    return call


def test_the_first_invocation_raises_the_error_without_calling() -> None:
    calls: list[tuple[int, int]] = []
    seen = Poisoned("seen")
    replayed = replay_first(seen, double_unless_three(calls))

    with pytest.raises(Poisoned) as raised:
        replayed(0, 4)

    assert raised.value is seen
    assert calls == []
    assert replayed(0, 2) == [2, 4]
    assert calls == [(0, 2)]


def test_isolation_after_a_failed_whole_batch_call_skips_that_call() -> None:
    calls: list[tuple[int, int]] = []
    call = double_unless_three(calls)
    with pytest.raises(Poisoned) as first:
        call(0, 4)  # the engine's fast path
    calls.clear()

    outcomes = run_isolated(
        replay_first(first.value, call), len(ITEMS), RetryPolicy(1, 0.5), FakeClock().sleep
    )

    assert [outcome.value for outcome in outcomes if outcome.ok] == [2, 4, 8]
    assert [type(outcome.value) for outcome in outcomes if not outcome.ok] == [Poisoned]
    # one retry of the whole batch, then the halves and the quarters of the failing half
    assert calls == [(0, 4), (0, 2), (2, 4), (2, 3), (3, 4)]


def test_a_coroutine_function_is_replayed_the_same_way() -> None:
    calls: list[tuple[int, int]] = []
    sync_call = double_unless_three(calls)

    async def call(start: int, stop: int) -> Sequence[int]:
        return sync_call(start, stop)

    async def sleep(seconds: float) -> None:
        pass

    outcomes = asyncio.run(
        arun_isolated(replay_first(Poisoned("seen"), call), len(ITEMS), RetryPolicy(0, 0.0), sleep)
    )

    assert [outcome.ok for outcome in outcomes] == [True, True, False, True]
    assert calls == [(0, 2), (2, 4), (2, 3), (3, 4)]
