"""RetryPolicy.retry_on: the policy decides which failures are worth another attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from batchpilot import BatchFailedError, RetryPolicy
from batchpilot._core.isolation import Outcome, arun_isolated, run_isolated
from batchpilot._core.retry import (
    NO_RETRY,
    is_permanent_error,
    retry_any_exception,
    retry_unless_batch_failed,
    retry_unless_permanent,
)
from batchpilot.errors import ConfigError
from batchpilot.testing import FakeClock


class Permanent(Exception):
    pass


def test_the_default_retries_every_exception_but_batch_failed() -> None:
    assert RetryPolicy().retry_on is retry_unless_batch_failed
    assert NO_RETRY.retry_on is retry_unless_batch_failed
    assert retry_unless_batch_failed(ConnectionError("blip"))
    assert retry_unless_batch_failed(ValueError("bad"))
    assert not retry_unless_batch_failed(BatchFailedError("wrong length"))


def test_retry_any_exception_also_retries_batch_failed() -> None:
    assert retry_any_exception(ValueError("bad"))
    assert retry_any_exception(BatchFailedError("wrong length"))


@pytest.mark.parametrize("predicate", [retry_any_exception, retry_unless_batch_failed])
def test_no_predicate_retries_an_interrupt_or_a_cancellation(predicate: object) -> None:
    for error in (KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()):
        assert not predicate(error)  # type: ignore[operator]


def test_retry_on_must_be_callable() -> None:
    with pytest.raises(TypeError, match="retry_on"):
        RetryPolicy(retry_on="ConnectionError")  # type: ignore[arg-type]


def test_the_predicate_is_part_of_equality_but_not_of_the_repr() -> None:
    assert RetryPolicy() == RetryPolicy(retry_on=retry_unless_batch_failed)
    assert RetryPolicy() != RetryPolicy(retry_on=retry_any_exception)
    assert repr(RetryPolicy()) == (
        "RetryPolicy(max_retries=3, retry_delay=1.0, backoff=2.0, max_delay=None)"
    )


def failing_on(bad: int, error: type[Exception], calls: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    """A batch call over items 0..n-1 that raises ``error`` whenever item ``bad`` is in it."""

    def call(start: int, stop: int) -> Sequence[int]:
        calls.append((start, stop))
        if start <= bad < stop:
            raise error(bad)
        return list(range(start, stop))

    return call


def test_a_rejected_error_is_not_retried_but_still_bisected() -> None:
    clock = FakeClock()
    calls: list[tuple[int, int]] = []
    seen: list[BaseException] = []

    def only_connection_errors(error: BaseException) -> bool:
        seen.append(error)
        return isinstance(error, ConnectionError)

    policy = RetryPolicy(max_retries=3, retry_delay=0.5, retry_on=only_connection_errors)
    outcomes = run_isolated(failing_on(2, Permanent, calls), 4, policy, clock.sleep)
    assert clock.sleeps == []
    assert calls == [(0, 4), (0, 2), (2, 4), (2, 3), (3, 4)]
    assert len(seen) == 1 and isinstance(seen[0], Permanent)
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert isinstance(outcomes[2].value, Permanent)


def test_an_accepted_error_is_retried_with_the_policy_waits() -> None:
    clock = FakeClock()
    calls: list[tuple[int, int]] = []
    policy = RetryPolicy(
        max_retries=2, retry_delay=0.5, retry_on=lambda e: isinstance(e, ConnectionError)
    )
    run_isolated(failing_on(2, ConnectionError, calls), 4, policy, clock.sleep)
    assert clock.sleeps == [0.5, 1.0]
    assert calls[:3] == [(0, 4)] * 3


def test_a_predicate_accepting_batch_failed_retries_it_yet_never_bisects() -> None:
    calls: list[tuple[int, int]] = []

    def wrong_length(start: int, stop: int) -> list[int]:
        calls.append((start, stop))
        raise BatchFailedError("batch function returned 1 results, expected 4")

    policy = RetryPolicy(max_retries=2, retry_delay=0, retry_on=retry_any_exception)
    outcomes = run_isolated(wrong_length, 4, policy, FakeClock().sleep)
    assert calls == [(0, 4)] * 3
    assert all(not o.ok and isinstance(o.value, BatchFailedError) for o in outcomes)


def test_the_async_driver_asks_the_same_predicate() -> None:
    sync_calls: list[tuple[int, int]] = []
    async_calls: list[tuple[int, int]] = []
    inner = failing_on(1, Permanent, async_calls)
    slept: list[float] = []

    async def acall(start: int, stop: int) -> Sequence[int]:
        return inner(start, stop)  # type: ignore[no-any-return]

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(max_retries=2, retry_delay=0.25, retry_on=lambda e: False)
    expected = run_isolated(failing_on(1, Permanent, sync_calls), 3, policy, FakeClock().sleep)
    got = asyncio.run(arun_isolated(acall, 3, policy, asleep))
    assert [(o.ok, repr(o.value)) for o in got] == [(o.ok, repr(o.value)) for o in expected]
    assert async_calls == sync_calls == [(0, 3), (0, 1), (1, 3), (1, 2), (2, 3)]
    assert slept == []
    assert got[0] == Outcome(True, 0)


# ----------------------------------------------------------------- field checks (issue 15)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", 2.5),
        ("max_retries", True),
        ("max_retries", "3"),
        ("max_retries", -1),
        ("retry_delay", float("nan")),
        ("retry_delay", float("inf")),
        ("retry_delay", "1"),
        ("retry_delay", -0.5),
        ("backoff", float("nan")),
        ("backoff", float("inf")),
        ("backoff", 0.5),
        ("backoff", False),
        ("max_delay", float("nan")),
        ("max_delay", -1.0),
    ],
)
def test_a_bad_field_is_a_config_error_naming_it(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_a_config_error_is_also_a_type_and_a_value_error() -> None:
    with pytest.raises(TypeError, match="max_retries"):
        RetryPolicy(max_retries="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_delay"):
        RetryPolicy(retry_delay=float("inf"))


def test_integral_and_real_numbers_are_accepted() -> None:
    policy = RetryPolicy(max_retries=2, retry_delay=1, backoff=1, max_delay=3)
    assert list(policy.delays()) == [1, 1]


# ------------------------------------------------------------ permanent errors (issue 13)


class IntegrityError(Exception):
    """Named like the DB-API 2 class: drivers and SQLAlchemy each define their own."""


def test_database_errors_about_the_data_are_permanent() -> None:
    import sqlite3

    assert is_permanent_error(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert is_permanent_error(sqlite3.ProgrammingError("bad SQL"))
    assert is_permanent_error(IntegrityError("duplicate key"))
    assert is_permanent_error(BatchFailedError("wrapped", cause=sqlite3.DataError("x")))
    assert not is_permanent_error(sqlite3.OperationalError("database is locked"))
    assert not is_permanent_error(ConnectionError("reset"))
    assert not is_permanent_error(BatchFailedError("the API rejected the batch"))


def test_retry_unless_permanent() -> None:
    assert retry_unless_permanent(ConnectionError("reset"))
    assert retry_unless_permanent(BatchFailedError("the API rejected the batch"))
    assert not retry_unless_permanent(IntegrityError("duplicate key"))
    assert not retry_unless_permanent(SystemExit(1))


def test_a_back_off_that_overflows_needs_a_cap() -> None:
    with pytest.raises(ConfigError, match=r"max_retries=1100 with backoff=2\.0"):
        RetryPolicy(max_retries=1100, retry_delay=1.0, backoff=2.0)
    capped = RetryPolicy(max_retries=1100, retry_delay=1.0, backoff=2.0, max_delay=60.0)
    assert capped.delay(1100) == 60.0  # was OverflowError
