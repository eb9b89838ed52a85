"""`BatchProcessingConfig`: the frozen settings of the flush buffer (seed 003).

Every field of the seed exists with the seed's default; the fields after them
make the seed's fixed numbers (120 s priority age, 85 % memory, ...) and the
reliability features (retries, overflow, de-duplication) configurable. Six
fields can come from ``BATCH_*`` environment variables via `from_env`; a bad
value raises a `ValueError` that names the variable.

Thresholds that contradict each other are refused: a fixed ``size_threshold``
above ``max_buffer_size`` could never fire (a full buffer flushes at once).
To flush on time only, turn adaptive sizing off and set ``size_threshold`` to
``max_buffer_size`` (docs/buffer.md, "Flush on time only").
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

__all__ = ["ENV_VARS", "BatchProcessingConfig", "OverflowPolicy"]

OverflowPolicy = Literal["block", "raise", "drop_oldest"]
_OVERFLOW_POLICIES = ("block", "raise", "drop_oldest")

ENV_VARS: Mapping[str, str] = {
    "BATCH_MAX_BUFFER_SIZE": "max_buffer_size",
    "BATCH_SIZE_THRESHOLD": "size_threshold",
    "BATCH_TIME_THRESHOLD_SEC": "time_threshold_seconds",
    "BATCH_ENABLE_ADAPTIVE_SIZING": "enable_adaptive_sizing",
    "BATCH_ENABLE_PRIORITY_FLUSHING": "enable_priority_flushing",
    "BATCH_PERFORMANCE_TARGET_MS": "performance_target_ms",
}
"""Environment variable -> config field read by `BatchProcessingConfig.from_env`."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class BatchProcessingConfig:
    """Settings of a `batchpilot.buffer.BatchStateManager`.

    Attributes:
        max_buffer_size: entries held at most (buffered plus being flushed).
        size_threshold: flush when this many entries are buffered (the start
            value when adaptive sizing is on); at most ``max_buffer_size``.
        time_threshold_seconds: flush when the oldest normal entry is this old
            (high and urgent entries never wait longer than normal ones).
        enable_adaptive_sizing: move the size threshold between
            ``min_size_threshold`` and ``max_size_threshold`` so that a flush
            takes about ``performance_target_ms`` (shared `TargetLatency`).
        enable_priority_flushing: keep priority 1 and 2 entries in a separate
            buffer that leaves first and ages faster.
        enable_performance_monitoring: keep the moving-window flush statistics.
        performance_target_ms: target duration of one flush callback.
        throughput_target_eps: target entries per second (reported against).
        priority_time_threshold_seconds: age trigger for priority 1 entries.
        emergency_time_threshold_seconds: age trigger for priority 2 entries.
        min_size_threshold: lower bound of the adaptive size threshold.
        max_size_threshold: upper bound of the adaptive size threshold.
        memory_early_flush_percent: above this system memory use, flush as soon
            as ``min_size_threshold`` entries are buffered.
        memory_emergency_flush_percent: above this, flush everything buffered.
        memory_check_interval_seconds: how often memory is sampled.
        max_retries: retries of a failed flush before it is dead-lettered or kept.
        retry_delay: wait before the first retry; doubles for each further one.
        overflow: what ``queue_entry`` does when the buffer is full: ``"block"``
            (up to ``overflow_timeout_seconds``, then `QueueFullError`),
            ``"raise"`` (`QueueFullError` at once) or ``"drop_oldest"`` (drop and
            dead-letter the oldest lowest-priority entry; gives up no-loss).
        overflow_timeout_seconds: longest ``"block"`` wait; None waits forever.
        dedup_window: how many recent uuids are remembered to ignore repeats.
        max_concurrent_flushes: flusher threads; 1 means flushes never overlap.
    """

    max_buffer_size: int = 1000
    size_threshold: int = 25
    time_threshold_seconds: float = 300.0
    enable_adaptive_sizing: bool = True
    enable_priority_flushing: bool = True
    enable_performance_monitoring: bool = True
    performance_target_ms: float = 2000.0
    throughput_target_eps: float = 10.0
    priority_time_threshold_seconds: float = 120.0
    emergency_time_threshold_seconds: float = 60.0
    min_size_threshold: int = 5
    max_size_threshold: int = 50
    memory_early_flush_percent: float = 85.0
    memory_emergency_flush_percent: float = 95.0
    memory_check_interval_seconds: float = 1.0
    max_retries: int = 3
    retry_delay: float = 1.0
    overflow: OverflowPolicy = "block"
    overflow_timeout_seconds: float | None = 30.0
    dedup_window: int = 10_000
    max_concurrent_flushes: int = 1

    def __post_init__(self) -> None:
        for item in fields(self):
            _check_field(item.name, getattr(self, item.name), item.name)
        if not self.min_size_threshold <= self.max_size_threshold:
            raise ValueError(
                f"min_size_threshold ({self.min_size_threshold}) must be <= "
                f"max_size_threshold ({self.max_size_threshold})"
            )
        if self.enable_adaptive_sizing and not (
            self.min_size_threshold <= self.size_threshold <= self.max_size_threshold
        ):
            raise ValueError(
                f"size_threshold ({self.size_threshold}) must lie in [min_size_threshold, "
                f"max_size_threshold] = [{self.min_size_threshold}, {self.max_size_threshold}] "
                "when enable_adaptive_sizing is on; with enable_adaptive_sizing=False it is "
                "a fixed threshold"
            )
        if not self.enable_adaptive_sizing and self.size_threshold > self.max_buffer_size:
            raise ValueError(
                f"size_threshold ({self.size_threshold}) must be <= max_buffer_size "
                f"({self.max_buffer_size}): a full buffer flushes at once, so this threshold "
                "could never fire. To flush on time only, set size_threshold=max_buffer_size "
                "(docs/buffer.md, 'Flush on time only')"
            )
        if self.memory_early_flush_percent > self.memory_emergency_flush_percent:
            raise ValueError(
                f"memory_early_flush_percent ({self.memory_early_flush_percent}) must be <= "
                f"memory_emergency_flush_percent ({self.memory_emergency_flush_percent})"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> BatchProcessingConfig:
        """Build a config from the ``BATCH_*`` variables in `ENV_VARS`.

        Unset or empty variables keep the defaults; ``overrides`` win over both.

        Args:
            environ: the variables to read; ``os.environ`` when omitted.
            **overrides: field values that take precedence.

        Raises:
            ValueError: a variable is not a valid value; the message names it.
        """
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            raw = source.get(var, "").strip()
            if raw:
                values[name] = _parse(var, name, raw)
        values.update(overrides)
        try:
            return cls(**values)
        except ValueError as exc:
            used = ", ".join(f"{v}={source[v]!r}" for v in ENV_VARS if source.get(v, "").strip())
            raise ValueError(f"{exc} (environment: {used or 'no BATCH_* variables set'})") from exc


def _parse(var: str, name: str, raw: str) -> Any:
    kind = _FIELD_TYPES[name]
    if kind is bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{var} must be a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"{var} must be {noun}, got {raw!r}") from None
    _check_field(name, value, var)
    return value


_FIELD_TYPES: dict[str, type] = {
    "max_buffer_size": int,
    "size_threshold": int,
    "time_threshold_seconds": float,
    "enable_adaptive_sizing": bool,
    "enable_priority_flushing": bool,
    "performance_target_ms": float,
}


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _percent(value: float) -> bool:
    return 0 < value <= 100


_RULES: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "max_buffer_size": (int, _positive, "> 0"),
    "size_threshold": (int, _positive, "> 0"),
    "time_threshold_seconds": (float, _positive, "> 0"),
    "enable_adaptive_sizing": (bool, bool, ""),
    "enable_priority_flushing": (bool, bool, ""),
    "enable_performance_monitoring": (bool, bool, ""),
    "performance_target_ms": (float, _positive, "> 0"),
    "throughput_target_eps": (float, _non_negative, ">= 0"),
    "priority_time_threshold_seconds": (float, _positive, "> 0"),
    "emergency_time_threshold_seconds": (float, _positive, "> 0"),
    "min_size_threshold": (int, _positive, "> 0"),
    "max_size_threshold": (int, _positive, "> 0"),
    "memory_early_flush_percent": (float, _percent, "in (0, 100]"),
    "memory_emergency_flush_percent": (float, _percent, "in (0, 100]"),
    "memory_check_interval_seconds": (float, _non_negative, ">= 0"),
    "max_retries": (int, _non_negative, ">= 0"),
    "retry_delay": (float, _non_negative, ">= 0"),
    "overflow": (str, lambda v: v in _OVERFLOW_POLICIES, f"one of {_OVERFLOW_POLICIES}"),
    "overflow_timeout_seconds": (float, _non_negative, ">= 0 or None"),
    "dedup_window": (int, _non_negative, ">= 0"),
    "max_concurrent_flushes": (int, _positive, "> 0"),
}


def _check_field(name: str, value: Any, label: str) -> None:
    kind, valid, rule = _RULES[name]
    if value is None and name == "overflow_timeout_seconds":
        return
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{label} must be a bool, got {value!r}")
        return
    numeric = kind in (int, float)
    if isinstance(value, bool) and numeric:
        raise TypeError(f"{label} must be {kind.__name__}, got {value!r}")
    accepted: tuple[type, ...] = (int, float) if kind is float else (kind,)
    if not isinstance(value, accepted):
        raise TypeError(f"{label} must be {kind.__name__}, got {value!r}")
    if numeric and not math.isfinite(cast(float, value)):
        raise ValueError(f"{label} must be a finite number, got {value!r}")
    if not valid(value):
        raise ValueError(f"{label} must be {rule}, got {value!r}")
