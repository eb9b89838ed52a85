"""The one set of argument checks: bool is not a number, NaN never, inf only on request."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from batchpilot._core.callables import is_async_callable
from batchpilot._core.validate import check_flag, check_int, check_number, positive_int
from batchpilot.errors import BatchpilotError, ConfigError
from batchpilot.online import BatchProcessorConfig


def test_config_error_is_both_builtin_kinds_and_ours() -> None:
    assert issubclass(ConfigError, TypeError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, BatchpilotError)


@pytest.mark.parametrize("value", [True, False, 2.5, "3", None, [1]])
def test_check_int_rejects_what_is_not_an_int(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^size must be an int"):
        check_int("size", value)


def test_check_int_accepts_numpy_integers_and_returns_an_int() -> None:
    value = check_int("size", np.int64(7), minimum=1)
    assert value == 7 and type(value) is int


def test_positive_int_names_the_bound() -> None:
    with pytest.raises(ConfigError, match=r"^workers must be >= 1, got 0$"):
        positive_int("workers", 0)


@pytest.mark.parametrize("value", [True, "0.1", None])
def test_check_number_rejects_what_is_not_a_number(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^delay must be a number"):
        check_number("delay", value)


def test_check_number_rejects_nan_always_and_inf_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="delay must not be NaN"):
        check_number("delay", math.nan, allow_inf=True)
    with pytest.raises(ConfigError, match="delay must be finite"):
        check_number("delay", math.inf)
    assert check_number("delay", math.inf, allow_inf=True) == math.inf


def test_check_number_bounds() -> None:
    assert check_number("delay", 0, minimum=0) == 0
    with pytest.raises(ConfigError, match=r"delay must be > 0"):
        check_number("delay", 0, minimum=0, strict=True)
    with pytest.raises(ConfigError, match=r"delay must be >= 0"):
        check_number("delay", -0.5, minimum=0)


def test_check_flag() -> None:
    assert check_flag("on", True) is True
    with pytest.raises(ConfigError, match=r"on must be a bool \(True or False\), got 1"):
        check_flag("on", 1)


@pytest.mark.parametrize(
    "field", ["max_batch_memory_mb", "min_batch_interval", "health_check_interval"]
)
def test_online_config_rejects_infinity_where_it_would_crash_later(field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field} must be finite"):
        BatchProcessorConfig(**{field: math.inf})


class _AsyncCall:
    async def __call__(self, batch: list[int]) -> list[int]:
        return batch


class _SyncCall:
    def __call__(self, batch: list[int]) -> list[int]:
        return batch


async def _async_fn(batch: list[int]) -> list[int]:
    return batch


def test_is_async_callable_sees_async_functions_and_async_call_objects() -> None:
    assert is_async_callable(_async_fn)
    assert is_async_callable(_AsyncCall())
    assert not is_async_callable(_SyncCall())
    assert not is_async_callable(len)
    assert not is_async_callable(lambda batch: batch)
