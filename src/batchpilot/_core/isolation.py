"""Per-item error isolation, written once for sync and async engines.

When a batch function raises, the batch is retried per the `RetryPolicy` (as
often as it allows, while its ``retry_on`` accepts the error); if it still
fails, it is split in halves and each half is tried again, recursively, until
every failing item is alone. Healthy items get their results; each failing item
gets the exception its own call raised. A `BatchFailedError` (e.g. the function
returned the wrong number of results) fails the whole slice at once, because no
single item caused it. A driver's ``bisect_on`` predicate may refuse the split: a
batch whose last whole-batch error it rejects fails whole, every item with that
error (the buffer does not bisect while its sink is down).

The algorithm is a generator (`isolation_plan`) that yields the slices to call
and receives their outcomes; `run_isolated` and `arun_isolated` are the sync and
async drivers. Only the drivers differ between the two worlds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple

from ..errors import BatchFailedError
from .retry import RetryPolicy

__all__ = [
    "Attempt",
    "OnReply",
    "Outcome",
    "arun_isolated",
    "bisect_always",
    "isolation_plan",
    "run_isolated",
]


class Attempt(NamedTuple):
    """Call the batch function on items ``[start, stop)`` after waiting ``delay`` s."""

    start: int
    stop: int
    delay: float


class Outcome(NamedTuple):
    """One item's outcome: ``ok`` and its result, or not ``ok`` and its exception."""

    ok: bool
    value: Any


#: What the driver sends back into the plan: the slice's results, or its exception.
Reply = Sequence[Any] | BaseException
Plan = Generator[Attempt, Reply, list[Outcome]]


def bisect_always(error: BaseException) -> bool:
    """The default ``bisect_on``: every failed batch is split to find its bad items."""
    return True


#: ``on_reply(start, stop, reply)``: told of each call's reply, as it comes.
OnReply = Callable[[int, int, Reply], None]


def isolation_plan(
    size: int,
    policy: RetryPolicy,
    bisect_on: Callable[[BaseException], bool] = bisect_always,
    on_reply: OnReply | None = None,
) -> Plan:
    """Yield the calls needed to give each of ``size`` items its outcome.

    ``bisect_on(error)``: whether a batch that failed every try, last with
    ``error``, is bisected; if not, every item fails with ``error``.
    ``on_reply``: told of every call's reply (e.g. to count out-of-memory errors).
    """
    plan = _plan(size, policy, bisect_on)
    return plan if on_reply is None else _observed(plan, on_reply)


def _observed(plan: Plan, on_reply: OnReply) -> Plan:
    attempt = next(plan)
    while True:
        reply = yield attempt
        on_reply(attempt.start, attempt.stop, reply)
        try:
            attempt = plan.send(reply)
        except StopIteration as done:
            return done.value


def _plan(size: int, policy: RetryPolicy, bisect_on: Callable[[BaseException], bool]) -> Plan:
    outcomes: list[Outcome] = [Outcome(False, None)] * size
    reply = yield Attempt(0, size, 0.0)
    for delay in policy.delays():
        if not isinstance(reply, BaseException) or not policy.retry_on(reply):
            break
        reply = yield Attempt(0, size, delay)
    if isinstance(reply, BaseException) and not bisect_on(reply):
        return [Outcome(False, reply)] * size
    yield from _settle(outcomes, 0, size, reply)
    return outcomes


def _settle(
    outcomes: list[Outcome], start: int, stop: int, reply: Reply
) -> Generator[Attempt, Reply, None]:
    if not isinstance(reply, BaseException):
        outcomes[start:stop] = [Outcome(True, value) for value in reply]
        return
    if stop - start == 1 or isinstance(reply, BatchFailedError):
        outcomes[start:stop] = [Outcome(False, reply)] * (stop - start)
        return
    middle = (start + stop) // 2
    for low, high in ((start, middle), (middle, stop)):
        half_reply = yield Attempt(low, high, 0.0)
        yield from _settle(outcomes, low, high, half_reply)


def run_isolated(
    call: Callable[[int, int], Sequence[Any]],
    size: int,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    bisect_on: Callable[[BaseException], bool] = bisect_always,
    on_reply: OnReply | None = None,
) -> list[Outcome]:
    """Drive `isolation_plan` with a blocking ``call(start, stop)``."""
    plan = isolation_plan(size, policy, bisect_on, on_reply)
    attempt = next(plan)
    while True:
        if attempt.delay > 0:
            sleep(attempt.delay)
        reply: Reply
        try:
            reply = call(attempt.start, attempt.stop)
        except Exception as exc:
            reply = exc
        try:
            attempt = plan.send(reply)
        except StopIteration as done:
            return done.value


async def arun_isolated(
    call: Callable[[int, int], Awaitable[Sequence[Any]]],
    size: int,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[Any]],
    bisect_on: Callable[[BaseException], bool] = bisect_always,
    on_reply: OnReply | None = None,
) -> list[Outcome]:
    """Drive `isolation_plan` with an awaitable ``call(start, stop)``."""
    plan = isolation_plan(size, policy, bisect_on, on_reply)
    attempt = next(plan)
    while True:
        if attempt.delay > 0:
            await sleep(attempt.delay)
        reply: Reply
        try:
            reply = await call(attempt.start, attempt.stop)
        except Exception as exc:
            reply = exc
        try:
            attempt = plan.send(reply)
        except StopIteration as done:
            return done.value
