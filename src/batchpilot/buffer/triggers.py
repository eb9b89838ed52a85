"""The buffer's trigger policy: when a flush starts, how large it is, how long to idle.

`FlushTriggers` owns the flush rules of the config (size, the age of each priority
level, memory pressure), the size controller (fixed or adaptive), the sampled
memory reading and the cool-down after a flush whose entries were kept. It holds no
lock and no thread: `BatchStateManager` calls it under its lock, from its flusher
thread and from ``queue_entry``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .._core.clock import Clock
from .._core.health import SampledReading, system_memory_percent
from .._core.retry import RetryPolicy
from .._core.sizing import Fixed, TargetLatency
from .config import BatchProcessingConfig
from .state import EntryBuffer, FlushRules

__all__ = ["FlushTriggers"]

_log = logging.getLogger("batchpilot.buffer")

_MAX_IDLE_WAIT = 1.0
_MIN_IDLE_WAIT = 0.005
_MIN_COOLDOWN = 1.0


class FlushTriggers:
    """Decides when the buffer is due, and with how many entries."""

    def __init__(
        self,
        config: BatchProcessingConfig,
        max_age: float,
        retry: RetryPolicy,
        memory_reader: Callable[[], float] | None,
        clock: Clock,
        name: str,
    ) -> None:
        self.rules = _flush_rules(config, max_age)  # the thresholds of the config
        self.sizer = _sizer(config)  # the size trigger in force, fixed or adaptive
        self.fired: Counter[str] = Counter()  # flushes started, per trigger
        self.hold_until = float("-inf")  # no automatic trigger fires before this clock time
        self._config = config  # for the idle wait and the size events
        self._name = name  # for the log
        self._cooldown = max(_MIN_COOLDOWN, retry.delay(retry.max_retries + 1))  # after kept
        self._memory = SampledReading(  # memory use, read at most once per interval
            memory_reader or system_memory_percent, config.memory_check_interval_seconds, clock
        )
        self._memory_percent: float | None = None  # the last reading; None while it fails
        self._memory_failing = False  # the reader's failure is logged once per outage

    @property
    def size(self) -> int:
        """The size trigger in force: also the most entries one flush takes."""
        return self.sizer.next_size()

    def read_memory(self) -> float | None:
        """The sampled memory percentage, or None while the reader fails (logged once)."""
        try:
            self._memory_percent = self._memory.value()
        except Exception:
            if self._memory_percent is not None or not self._memory_failing:
                _log.exception("%s: memory reader failed; memory triggers skipped", self._name)
            self._memory_percent, self._memory_failing = None, True
        else:
            self._memory_failing = False
        return self._memory_percent

    def due(self, buffer: EntryBuffer, now: float, memory: float | None) -> str | None:
        """Why ``buffer`` should flush now (None also during a cool-down)."""
        if now < self.hold_until:
            return None
        return buffer.due(now, self.sizer.next_size(), self.rules, memory)

    def hold(self, now: float) -> None:
        """A flush kept its entries: no automatic trigger for one more back-off step."""
        self.hold_until = now + self._cooldown

    def idle_wait(self, buffer: EntryBuffer, now: float, has_callback: bool) -> float:
        """How long an idle flusher sleeps before it looks again (a wake-up cuts it short)."""
        if not has_callback:
            return _MAX_IDLE_WAIT
        until = buffer.next_age_deadline(self.rules)
        if until is not None and self.hold_until > until:
            until = self.hold_until
        wait = self._config.memory_check_interval_seconds or _MAX_IDLE_WAIT
        if until is not None:
            wait = min(wait, until - now)
        return max(_MIN_IDLE_WAIT, min(_MAX_IDLE_WAIT, wait))

    def observe(
        self, size: int, took: float, error: BaseException | None, ok: bool
    ) -> dict[str, Any] | None:
        """Feed one flush to the sizer; the ``size_threshold_changed`` event if it moved."""
        old = self.sizer.next_size()
        self.sizer.observe(size, took, ok=ok)
        new = self.sizer.next_size()
        if new == old:
            return None
        why = (
            f"flush failed ({type(error).__name__})"
            if error is not None
            else f"flush took {1000 * took:.1f} ms, "
            f"target {self._config.performance_target_ms:.0f} ms"
        )
        return {"event": "size_threshold_changed", "at": time.time(), "old": old, "new": new,
                "reason": why}  # fmt: skip


def _sizer(config: BatchProcessingConfig) -> Fixed | TargetLatency:
    if not config.enable_adaptive_sizing:
        return Fixed(config.size_threshold)
    return TargetLatency(
        config.performance_target_ms / 1000.0,
        min_size=config.min_size_threshold,
        max_size=config.max_size_threshold,
        initial=config.size_threshold,
    )


def _flush_rules(config: BatchProcessingConfig, max_age: float) -> FlushRules:
    """The triggers of ``config``; no entry waits longer than a less urgent one would."""
    normal = min(config.time_threshold_seconds, max_age)
    high = min(config.priority_time_threshold_seconds, normal)
    urgent = min(config.emergency_time_threshold_seconds, high)
    return FlushRules(
        max_age=(normal, high, urgent),
        early_memory_percent=config.memory_early_flush_percent,
        emergency_memory_percent=config.memory_emergency_flush_percent,
        min_size=config.min_size_threshold,
    )
