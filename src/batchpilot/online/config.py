"""Configuration and request types of the seed-001 `BatchProcessor` (`batchpilot.online`).

`BatchProcessorConfig` carries every field and default of the seed's tables, plus
``collate`` (how single items become a batch) and ``latency_target`` (optional SLO
for the adaptive strategy). It is validated at construction and again when a
`BatchProcessor` is built from it, so fields changed after construction (as the
seed's troubleshooting section does) are checked too.
"""

from __future__ import annotations

import enum
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from .._core.collate import Collator, get_collator
from .._core.validate import check_flag, check_int, check_number
from ..errors import ConfigError

__all__ = ["BatchPriority", "BatchProcessingStrategy", "BatchProcessorConfig", "PrioritizedItem"]

T = TypeVar("T")


class BatchPriority(enum.IntEnum):
    """How urgent a request is. With ``enable_priority_queue`` the queue serves
    CRITICAL first, then HIGH, NORMAL and LOW; FIFO within one priority."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


class BatchProcessingStrategy(enum.Enum):
    """How the batch size is chosen.

    Attributes:
        FIXED: always ``initial_batch_size`` (the `Fixed` controller); only
            `BatchProcessor.update_batch_size` changes it.
        ADAPTIVE: adapt within ``[min_batch_size, max_batch_size]`` when
            ``enable_adaptive_batching`` is on. Without ``latency_target`` this is
            `AIMD`: one more item after each full successful batch, half the size
            after a failure (if ``reduce_batch_on_failure``). With ``latency_target``
            it is `TargetLatency`: the largest size whose predicted duration
            (fitted ``a + b*n``) meets the target, so slow processing gives
            smaller batches and fast processing larger ones.
    """

    FIXED = "fixed"
    ADAPTIVE = "adaptive"


@dataclass(eq=False)
class PrioritizedItem(Generic[T]):
    """One queued request: its priority, arrival order, payload and result future.

    Items order by priority (most urgent first), then by ``sequence`` (FIFO), so
    ``sorted(items)`` or a heap yields them in the order the queue serves them.
    """

    priority: BatchPriority
    sequence: int
    item: T
    future: Future[Any] | None = None
    timestamp: float = 0.0

    def sort_key(self) -> tuple[int, int]:
        """``(-priority, sequence)``: smaller means served earlier."""
        return (-int(self.priority), self.sequence)

    def __lt__(self, other: PrioritizedItem[Any]) -> bool:
        return self.sort_key() < other.sort_key()


@dataclass
class BatchProcessorConfig:
    """Settings of a `BatchProcessor`; the fields and defaults are those of seed 001.

    Batching:
        initial_batch_size: starting batch size (32).
        min_batch_size, max_batch_size: bounds for adaptive sizing (1, 128).
        batch_timeout: upper bound in seconds on waiting for more items while a
            batch forms (0.1); never a fixed delay.
        item_timeout: seconds an item may wait in the queue before it fails with
            `ItemTimeoutError` instead of being processed late (30.0); batches that
            run longer than this are reported as stuck. None disables both.
        collate: ``"stack"`` (numpy arrays stacked along a new first axis),
            ``"concat"`` (each request's first axis is rows), ``"list"``, or a
            custom `Collator`.

    Queue and threads:
        max_queue_size: items queued before `enqueue` blocks (1000).
        enable_priority_queue: serve by `BatchPriority` (False: FIFO).
        max_workers: batches that may run at once (4).
        min_batch_interval: minimum seconds between batch starts (0.0).

    Memory:
        max_batch_memory_mb: cap on the summed bytes of a batch's items (None).
        enable_memory_optimization: collect young garbage after large batches, and
            all garbage when memory is critical (True).
        gc_batch_threshold: batches larger than this are followed by a
            collection of the young generations (100).
        memory_warning_threshold, memory_critical_threshold: system memory percent
            that logs a warning / halves the batch size (80.0, 90.0).

    Adaptation:
        enable_adaptive_batching: adapt the batch size (True).
        processing_strategy: `BatchProcessingStrategy` (ADAPTIVE).
        reduce_batch_on_failure: shrink the batch size after failed batches (True).
        latency_target: optional batch-duration target in seconds for ADAPTIVE.

    Monitoring:
        enable_monitoring: keep the statistics window (True).
        monitoring_window: batches kept for statistics (1000).
        enable_health_monitoring: run the health monitor thread (True).
        health_check_interval: seconds between health checks (30.0).
        queue_warning_threshold, queue_critical_threshold: queue sizes that log a
            warning / an error (500, 800).

    Errors:
        max_retries: retries of a failed batch before it is bisected (3).
        retry_delay: seconds before the first retry, doubling each retry (1.0).
        debug_mode: log every batch at DEBUG level (False).
    """

    initial_batch_size: int = 32
    min_batch_size: int = 1
    max_batch_size: int = 128
    batch_timeout: float = 0.1
    item_timeout: float | None = 30.0
    max_queue_size: int = 1000
    enable_priority_queue: bool = False
    max_workers: int = 4
    min_batch_interval: float = 0.0
    max_batch_memory_mb: float | None = None
    enable_memory_optimization: bool = True
    gc_batch_threshold: int = 100
    memory_warning_threshold: float = 80.0
    memory_critical_threshold: float = 90.0
    enable_adaptive_batching: bool = True
    processing_strategy: BatchProcessingStrategy = BatchProcessingStrategy.ADAPTIVE
    reduce_batch_on_failure: bool = True
    enable_monitoring: bool = True
    monitoring_window: int = 1000
    enable_health_monitoring: bool = True
    health_check_interval: float = 30.0
    queue_warning_threshold: int = 500
    queue_critical_threshold: int = 800
    max_retries: int = 3
    retry_delay: float = 1.0
    debug_mode: bool = False
    collate: str | Collator = "stack"
    latency_target: float | None = field(default=None)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` (a TypeError and a ValueError) naming the first bad field."""
        self.processing_strategy = _strategy(self.processing_strategy)
        for name, least in _INTS.items():
            check_int(name, getattr(self, name), minimum=least)
        for name, (bound, strict) in _NUMBERS.items():
            value = getattr(self, name)
            if not (value is None and name in _OPTIONAL):
                check_number(name, value, minimum=bound, strict=strict)
        for name in _BOOLS:
            check_flag(name, getattr(self, name))
        self._check_sizes()
        self._check_thresholds()
        get_collator(self.collate)

    def _check_sizes(self) -> None:
        if self.min_batch_size > self.max_batch_size:
            raise ConfigError(
                f"min_batch_size ({self.min_batch_size}) must be <= "
                f"max_batch_size ({self.max_batch_size})"
            )
        if not self.min_batch_size <= self.initial_batch_size <= self.max_batch_size:
            raise ConfigError(
                f"initial_batch_size ({self.initial_batch_size}) must be within "
                f"[min_batch_size, max_batch_size] = "
                f"[{self.min_batch_size}, {self.max_batch_size}]"
            )

    def _check_thresholds(self) -> None:
        for name in ("memory_warning_threshold", "memory_critical_threshold"):
            if not 0 < getattr(self, name) <= 100:
                raise ConfigError(
                    f"{name} must be a percentage in (0, 100], got {getattr(self, name)}"
                )
        if self.memory_warning_threshold > self.memory_critical_threshold:
            raise ConfigError(
                f"memory_warning_threshold ({self.memory_warning_threshold}) must be <= "
                f"memory_critical_threshold ({self.memory_critical_threshold})"
            )
        if self.queue_warning_threshold > self.queue_critical_threshold:
            raise ConfigError(
                f"queue_warning_threshold ({self.queue_warning_threshold}) must be <= "
                f"queue_critical_threshold ({self.queue_critical_threshold})"
            )

    @property
    def adaptive(self) -> bool:
        """True when the batch size adapts (ADAPTIVE strategy and adaptive batching on)."""
        return (
            self.enable_adaptive_batching
            and self.processing_strategy is BatchProcessingStrategy.ADAPTIVE
        )

    @property
    def max_batch_bytes(self) -> int | None:
        """``max_batch_memory_mb`` in bytes, or None."""
        if self.max_batch_memory_mb is None:
            return None
        return max(1, int(self.max_batch_memory_mb * 1024 * 1024))


# field -> the smallest allowed value
_INTS = {
    "initial_batch_size": 1,
    "min_batch_size": 1,
    "max_batch_size": 1,
    "max_queue_size": 1,
    "max_workers": 1,
    "gc_batch_threshold": 1,
    "monitoring_window": 1,
    "queue_warning_threshold": 0,
    "queue_critical_threshold": 0,
    "max_retries": 0,
}
# field -> (the smallest allowed value, whether it is excluded); never NaN nor infinite
_NUMBERS: dict[str, tuple[float | None, bool]] = {
    "batch_timeout": (0.0, False),
    "item_timeout": (0.0, True),
    "min_batch_interval": (0.0, False),
    "max_batch_memory_mb": (0.0, True),
    "memory_warning_threshold": (None, False),  # a percentage: _check_thresholds
    "memory_critical_threshold": (None, False),
    "health_check_interval": (0.0, True),
    "retry_delay": (0.0, False),
    "latency_target": (0.0, True),
}
_OPTIONAL = frozenset({"item_timeout", "max_batch_memory_mb", "latency_target"})
_BOOLS = tuple(
    f.name
    for f in fields(BatchProcessorConfig)
    if f.name.startswith(("enable_", "reduce_")) or f.name == "debug_mode"
)


def _strategy(value: object) -> BatchProcessingStrategy:
    if isinstance(value, BatchProcessingStrategy):
        return value
    if isinstance(value, str):
        try:
            return BatchProcessingStrategy(value.lower())
        except ValueError:
            pass
    choices = [s.name for s in BatchProcessingStrategy]
    raise ConfigError(f"processing_strategy must be one of {choices}, got {value!r}")
