"""A batch function raising `KeyboardInterrupt` or `SystemExit`: the caller of the run gets it.

No executor's thread dies of it and leaves the run hanging (the asyncio executor's
loop thread once did: the task raised out of ``run_forever`` and the run waited forever).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from batchpilot.bulk import map_batches

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0  # seconds a run may take before the test calls it hung


def breaking(fatal: type[BaseException]) -> Any:
    def fn(xs: list[int]) -> list[int]:
        if 5 in xs:
            raise fatal("boom")
        return xs

    async def afn(xs: list[int]) -> list[int]:
        return fn(xs)

    return fn, afn


def outcome_of(run: Any) -> BaseException | None:
    """What consuming ``run`` raised, consumed on a daemon thread so a hung run fails the test."""
    raised: list[BaseException | None] = []

    def consume() -> None:
        try:
            list(run)
            raised.append(None)
        except BaseException as exc:
            raised.append(exc)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(WAIT)
    assert raised, f"the run hung for {WAIT} s after the batch function raised"
    return raised[0]


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "batchpilot-bulk-asyncio"]


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("executor", ["serial", "threads", "asyncio"])
def test_a_base_exception_of_the_function_reaches_the_caller_and_the_run_ends(
    executor: str, fatal: type[BaseException]
) -> None:
    fn, afn = breaking(fatal)
    run = map_batches(
        afn if executor == "asyncio" else fn, range(40), batch_size=4, executor=executor
    )
    error = outcome_of(run)
    assert isinstance(error, fatal) and str(error) == "boom"
    assert loop_threads() == []  # the executor shut down: its loop thread ended

    def double(xs: list[int]) -> list[int]:
        return [x * 2 for x in xs]

    async def adouble(xs: list[int]) -> list[int]:
        return double(xs)

    again = map_batches(adouble if executor == "asyncio" else double, range(8), executor=executor)
    assert list(again) == [x * 2 for x in range(8)]
