"""`BulkOptions`: the one list of `map_batches`' settings, frozen, checked once (issue 24)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

from batchpilot import RetryPolicy
from batchpilot.bulk import BulkRun, map_batches
from batchpilot.bulk.options import BulkOptions

pytestmark = pytest.mark.timeout(30)


def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def test_map_batches_takes_exactly_the_fields_of_bulk_options() -> None:
    parameters = list(inspect.signature(map_batches).parameters.values())
    assert [p.name for p in parameters[:2]] == ["fn", "items"]
    keywords = {p.name: p.default for p in parameters[2:]}
    fields = {
        f.name: f.default
        for f in dataclasses.fields(BulkOptions)
        if f.init  # the derived fields are not settings
    }
    assert keywords == fields
    assert list(keywords) == list(fields)  # same order as well
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters[2:])
    assert "sort_window:" in (map_batches.__doc__ or "")  # map_batches keeps its own docs


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"workers": True}, TypeError, "workers"),
        ({"executor": "gpu"}, ValueError, "executor must be one of"),
        ({"retry": 3}, TypeError, "RetryPolicy"),
        ({"serializer": "yaml"}, ValueError, "serializer"),
        ({"retry_failed": True}, ValueError, "needs a job file"),
        ({"quarantine_damaged": 1}, TypeError, "quarantine_damaged"),
        ({"cost": 5}, TypeError, "cost must be a function"),
        ({"cost": len, "batch_size": 2.5}, TypeError, "with cost="),
        ({"cost": len, "sort_window": -1}, ValueError, "sort_window"),
        ({"listeners": [5]}, TypeError, "listener"),
    ],
)
def test_options_are_checked_when_constructed_without_a_function(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        BulkOptions(**options)


def test_options_are_frozen_and_derive_their_plain_forms_once(tmp_path: Path) -> None:
    seen: list[Any] = []
    options = BulkOptions(job=tmp_path / "job.db", listeners=[seen.append], executor="serial")
    assert options.job == str(tmp_path / "job.db")
    assert options.spec is not None and options.spec.kind == "serial"
    assert len(options.hooks) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.workers = 2  # type: ignore[misc]


def test_a_run_takes_an_options_object_and_makes_its_own_controller() -> None:
    options = BulkOptions(executor="serial", retry=RetryPolicy(max_retries=1))
    first, second = BulkRun(double, range(5), options), BulkRun(double, range(3), options)
    assert first.controller is not second.controller  # "auto" state is per run
    assert list(first) == [0, 2, 4, 6, 8] and list(second) == [0, 2, 4]


def test_binding_checks_what_depends_on_the_function() -> None:
    async def adouble(xs: list[int]) -> list[int]:
        return xs

    with pytest.raises(TypeError, match="executor='asyncio'"):
        BulkOptions(executor="threads").bind(adouble)
    assert BulkOptions().bind(adouble).executor.kind == "asyncio"  # default by fn's kind
    with pytest.raises(ValueError, match="async def is not supported"):
        BulkOptions(cost=len).bind(adouble)
