"""One set of argument checks for every engine and config: the error names the field.

Every check raises `batchpilot.errors.ConfigError` (a `TypeError` and a
`ValueError`). ``bool`` is never accepted as a number, NaN never, and infinity only
where the caller says it means "no limit".
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from ..errors import ConfigError

__all__ = ["check_flag", "check_int", "check_number", "positive_int"]


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` (as an int), or raise naming ``name``.

    Args:
        name: the field's name, used in the message.
        value: the value to check; any integral number (not bool).
        minimum: the smallest allowed value, if any.
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an int{bound}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be{bound}, got {value}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """`check_int` with a minimum of 1: a count or a size."""
    return check_int(name, value, minimum=1)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strict: bool = False,
    allow_inf: bool = False,
) -> Any:
    """Return ``value`` unchanged if it is an acceptable number, or raise naming ``name``.

    Args:
        name: the field's name, used in the message.
        value: the value to check; any real number (not bool, never NaN).
        minimum: the smallest allowed value, if any.
        strict: whether ``minimum`` itself is excluded (``> minimum``).
        allow_inf: whether +/-infinity is allowed (a field where it means "no limit").
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ConfigError(f"{name} must not be NaN")
    if math.isinf(number) and not allow_inf:
        raise ConfigError(f"{name} must be finite, got {number}")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {minimum}, got {number}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, or raise naming ``name``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be a bool (True or False), got {value!r}")
    return value
