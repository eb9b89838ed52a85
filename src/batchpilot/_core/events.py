"""What every engine reports after each batch, and who may listen.

Engines (online, bulk, buffer) emit one `BatchRecord` per finished batch to any
number of `BatchListener`s: the seed's ``metrics_collector`` hook, the Prometheus
exporter (`batchpilot.metrics`), a user's logger. Listeners must be cheap and must
not raise; an exception from one is logged and swallowed by `notify`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["BatchListener", "BatchRecord", "as_listener", "notify"]

_log = logging.getLogger("batchpilot")


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One finished batch.

    Attributes:
        engine: which engine ran it: ``"online"``, ``"bulk"`` or ``"buffer"``.
        size: items in the batch.
        duration: seconds spent in the batch function, retries included.
        queue_time: mean seconds the batch's items waited before it started.
        succeeded: items that got a result.
        failed: items that got an exception.
        error_types: failed items counted by exception class name.
        queue_depth: items still waiting when the batch finished.
        name: the batcher's or job's name, for labelling metrics.
        close_reason: why the batch stopped growing, a `batchpilot._core.cost.CloseReason`
            value (``"count"``, ``"budget"``, ``"idle_worker"``, ``"max_wait"``,
            ``"deadline"``, ``"shutdown"``, ``"input_end"``); "" where an engine
            does not say (a bulk chunk without ``cost=``, a buffer flush).
        cost: the batch's real cost, the sum of its items' costs (its item count
            without a cost function).
        padded_cost: its largest item's cost times its size (what a padded batch
            computes; its item count without a cost function).
        oom_splits: out-of-memory errors the batch met, each one a split.
    """

    engine: str
    size: int
    duration: float
    queue_time: float = 0.0
    succeeded: int = 0
    failed: int = 0
    error_types: Mapping[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    name: str = ""
    close_reason: str = ""
    cost: float = 0.0
    padded_cost: float = 0.0
    oom_splits: int = 0

    @property
    def latency(self) -> float:
        """Mean seconds from submission to result for the batch's items."""
        return self.queue_time + self.duration


@runtime_checkable
class BatchListener(Protocol):
    """Anything with ``record_batch(record)``."""

    def record_batch(self, record: BatchRecord) -> None: ...


class _CallableListener:
    def __init__(self, func: Callable[[BatchRecord], object]) -> None:
        self._func = func

    def record_batch(self, record: BatchRecord) -> None:
        self._func(record)


def as_listener(hook: BatchListener | Callable[[BatchRecord], object]) -> BatchListener:
    """Accept a listener object or a plain callable taking a `BatchRecord`."""
    if isinstance(hook, BatchListener):
        return hook
    if callable(hook):
        return _CallableListener(hook)
    raise TypeError(
        f"a batch listener needs record_batch(record) or must be callable, got {hook!r}"
    )


def notify(listeners: Iterable[BatchListener], record: BatchRecord) -> None:
    """Give ``record`` to every listener; a failing listener is logged, not raised."""
    for listener in listeners:
        try:
            listener.record_batch(record)
        except Exception:
            _log.exception("batch listener %r failed", listener)
