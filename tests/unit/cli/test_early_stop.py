"""The systematic-failure guard and the stop rules, called directly."""

from __future__ import annotations

import asyncio

import pytest

from batchpilot.cli.early_stop import StopRules, SystematicFailure, guard


def test_the_guard_stops_calling_after_the_first_like_failures() -> None:
    calls: list[int] = []

    def missing_column(records: list[dict]) -> list[int]:
        calls.append(len(records))
        return [r["price"] for r in records]

    guarded = guard(missing_column, threshold=3)
    with pytest.raises(KeyError):
        guarded([{}, {}])  # a chunk: not counted, only single records are
    for _ in range(3):
        with pytest.raises(KeyError):
            guarded([{}])
    with pytest.raises(SystematicFailure, match="first 3 records all failed with KeyError"):
        guarded([{}])
    assert calls == [2, 1, 1, 1]


def test_a_success_or_another_kind_of_error_keeps_the_guard_open() -> None:
    def sometimes(records: list[dict]) -> list[int]:
        return [1 / r["x"] for r in records]

    guarded = guard(sometimes, threshold=2)
    assert guarded([{"x": 1}]) == [1.0]
    for _ in range(5):
        with pytest.raises(ZeroDivisionError):
            guarded([{"x": 0}])
    mixed = guard(sometimes, threshold=2)
    for record in ({"x": 0}, {}, {"x": 0}):
        with pytest.raises((ZeroDivisionError, KeyError)):
            mixed([record])


def test_an_async_function_gets_an_async_guard() -> None:
    async def failing(records: list[dict]) -> list[int]:
        raise ValueError("no")

    guarded = guard(failing, threshold=1)
    with pytest.raises(ValueError):
        asyncio.run(guarded([{}]))
    with pytest.raises(SystematicFailure):
        asyncio.run(guarded([{}]))
    assert guard(failing, threshold=0) is failing


def test_the_rules_stop_at_n_like_failures_from_the_start_while_records_are_left() -> None:
    rules = StopRules(systematic=3, max_failures=None)
    assert rules.on_failure(KeyError("a"), 2, before=0, left=True) is None
    assert rules.on_failure(KeyError("a"), 3, before=1, left=True) is None
    reason = rules.on_failure(KeyError("a"), 4, before=2, left=True)
    assert reason == "the first 3 records all failed with KeyError (first: line 2: KeyError: 'a')"
    last = StopRules(systematic=2, max_failures=None)
    last.on_failure(KeyError("a"), 1, before=0, left=True)
    assert last.on_failure(KeyError("a"), 2, before=1, left=False) is None  # nothing left


def test_the_rules_do_not_call_failures_after_a_success_systematic() -> None:
    rules = StopRules(systematic=2, max_failures=3)
    assert rules.on_failure(ValueError("x"), 3, before=1, left=True) is None
    assert rules.on_failure(ValueError("x"), 4, before=2, left=True) is None
    assert rules.on_failure(ValueError("x"), 5, before=3, left=True) is None
    reason = rules.on_failure(ValueError("x"), 6, before=4, left=True)
    assert reason is not None and reason.startswith("more than --max-failures 3 records failed")
