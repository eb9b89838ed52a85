"""`BatchProcessor` (seed 001): maps a `BatchProcessorConfig` onto the online engine.

The readings of the seed it keeps are listed in the docstring of `batchpilot.online`.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.events import BatchListener, BatchRecord, as_listener
from .._core.health import system_memory_percent
from .._core.retry import RetryPolicy
from .._engine.engine import Engine
from .._engine.options import EngineOptions
from ..errors import ClosedError
from .config import BatchPriority, BatchProcessorConfig
from .health import CallTracker, HealthMonitor, HealthThresholds
from .recorder import BatchRecorder
from .sizing import ConfigSizeController

__all__ = ["BatchProcessor"]

_log = logging.getLogger("batchpilot.online")

T = TypeVar("T")
U = TypeVar("U")

_PRIORITY_LEVELS = len(BatchPriority)
_MISSING: Any = object()
_NO_HEALTH: dict[str, Any] = {
    "health_status": None,
    "memory_percent": None,
    "memory_status": None,
    "queue_status": None,
    "stuck_batches": 0,
    "last_health_check": None,
}


class BatchProcessor(Generic[T, U]):
    """Groups single submitted items into batches for one batch function (seed 001).

    Args:
        config: the settings; validated again here.
        metrics_collector: optional hook called once per batch with a
            `BatchRecord`: an object with ``record_batch(record)`` or a callable.
        clock: time source for deadlines and statistics (tests pass a `FakeClock`).
        memory_percent: reads system memory use in percent for the health monitor
            (default: psutil).

    Example:
        >>> with BatchProcessor(BatchProcessorConfig(collate="list")) as processor:
        ...     processor.start(lambda items: [x + 1 for x in items])
        ...     processor.enqueue_predict(41).result()
        42
    """

    def __init__(
        self,
        config: BatchProcessorConfig,
        metrics_collector: BatchListener | Callable[[BatchRecord], object] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        memory_percent: Callable[[], float] = system_memory_percent,
    ) -> None:
        if not isinstance(config, BatchProcessorConfig):
            raise TypeError(f"config must be a BatchProcessorConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.shutdown_event = threading.Event()
        self._clock = clock
        self._controller = ConfigSizeController(config)
        self._recorder = BatchRecorder(config, clock)
        self._listeners: list[BatchListener] = [self._recorder]
        if metrics_collector is not None:
            self._listeners.append(as_listener(metrics_collector))
        self._calls = CallTracker(clock)
        self._health = HealthMonitor(
            HealthThresholds(
                memory_warning=config.memory_warning_threshold,
                memory_critical=config.memory_critical_threshold,
                queue_warning=config.queue_warning_threshold,
                queue_critical=config.queue_critical_threshold,
                stuck_after=config.item_timeout,
            ),
            read_memory=memory_percent,
            queue_size=lambda: self.queue_size,
            calls=self._calls,
            clock=clock,
            on_memory_critical=self._relieve_memory,
        )
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._paused = False
        if config.debug_mode:
            _log.setLevel(logging.DEBUG)

    # -- lifecycle -----------------------------------------------------------------

    def start(self, process_func: Callable[[Any], Any]) -> None:
        """Start batching: ``process_func`` (plain or ``async def``) receives a collated
        batch and returns one result per item (a sequence, array or tensor of the
        batch's length). Up to ``max_workers`` batches run at once.

        Raises:
            TypeError: ``process_func`` is not callable.
            RuntimeError: already started.
            ClosedError: the processor was stopped.
        """
        if not callable(process_func):
            raise TypeError(f"process_func must be callable, got {process_func!r}")
        config = self.config
        config.validate()
        with self._lock:
            if self.shutdown_event.is_set():
                raise ClosedError("BatchProcessor was stopped; create a new one")
            if self._engine is not None:
                raise RuntimeError("BatchProcessor is already started")
            options = EngineOptions(
                max_batch_size=config.max_batch_size,
                max_wait=config.batch_timeout,
                max_concurrent_batches=config.max_workers,
                max_queue_size=config.max_queue_size,
                collate=config.collate,
                controller=self._controller,
                latency_target=config.latency_target,
                max_batch_bytes=config.max_batch_bytes,
                retry=RetryPolicy(config.max_retries, config.retry_delay),
                priority_levels=_PRIORITY_LEVELS if config.enable_priority_queue else 1,
                item_timeout=config.item_timeout,
                min_batch_interval=config.min_batch_interval,
                listeners=self._listeners,
                clock=self._clock,
                name="BatchProcessor",
            )
            self._engine = Engine(self._calls.wrap(process_func), options)
            if self._paused:
                self._engine.pause()
        if config.enable_health_monitoring:
            self._health.check()
            self._health.start(config.health_check_interval, self.shutdown_event)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop accepting items, finish what can be finished within ``timeout`` seconds
        and cancel the rest; no future is left pending. Calling it again is harmless.

        Queued items that did not run are cancelled (`concurrent.futures.wait` sees
        them done); items of a batch still running at the deadline get `ClosedError`.
        While paused, queued items are not run: they are cancelled at once.
        """
        with self._lock:
            self.shutdown_event.set()
            engine = self._engine
        if engine is not None:
            engine.close(timeout)
        self._health.join(timeout)

    def pause(self) -> None:
        """Stop starting new batches; items keep queueing. Running batches finish."""
        with self._lock:
            self._paused = True
            if self._engine is not None:
                self._engine.pause()

    def resume(self) -> None:
        """Start batches again after `pause`."""
        with self._lock:
            self._paused = False
            if self._engine is not None:
                self._engine.resume()

    def __enter__(self) -> BatchProcessor[T, U]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- submitting ----------------------------------------------------------------

    def enqueue_predict(
        self,
        item: T = _MISSING,
        timeout: float | None = None,
        priority: BatchPriority = BatchPriority.NORMAL,
        *,
        data: T = _MISSING,
    ) -> Future[U]:
        """Queue ``item`` and return a future for its result.

        Args:
            item: one request (e.g. a numpy array; see ``config.collate``).
            timeout: seconds to wait for room while the queue is full (None: as
                long as it takes).
            priority: served most urgent first when ``enable_priority_queue``.
            data: another name for ``item`` (the seed's examples call
                ``enqueue_predict(data=...)``); give one of the two.

        Raises:
            ClosedError: not started, or stopped.
            QueueFullError: the queue stayed full for ``timeout`` seconds.
            ValueError: ``priority`` is not a `BatchPriority`.
            TypeError: neither or both of ``item`` and ``data`` given.
        """
        request = _one_item(item, data)
        level = _priority_level(priority)
        if not self.config.enable_priority_queue:
            level = 0
        return self._running_engine().submit(request, priority=level, timeout=timeout)

    def enqueue(
        self,
        item: T = _MISSING,
        timeout: float | None = None,
        priority: BatchPriority = BatchPriority.NORMAL,
        *,
        data: T = _MISSING,
    ) -> None:
        """Queue ``item`` without tracking its result (fire and forget); a failure is
        logged. Takes and raises the same as `enqueue_predict`."""
        future = self.enqueue_predict(item, timeout, priority, data=data)
        future.add_done_callback(_log_failure)

    def _running_engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise ClosedError("BatchProcessor is not started; call start(process_func) first")
        if self.shutdown_event.is_set():
            raise ClosedError("BatchProcessor is stopped")
        return engine

    # -- control and monitoring ----------------------------------------------------

    def update_batch_size(self, new_size: int) -> None:
        """Override the current batch size (adaptation, if on, continues from it).

        Raises:
            TypeError: ``new_size`` is not an int.
            ValueError: ``new_size`` is outside [min_batch_size, max_batch_size].
        """
        if isinstance(new_size, bool) or not isinstance(new_size, int):
            raise TypeError(f"new_size must be an int, got {new_size!r}")
        lo, hi = self.config.min_batch_size, self.config.max_batch_size
        if not lo <= new_size <= hi:
            raise ValueError(f"batch size {new_size} is outside [{lo}, {hi}]")
        self._controller.set_size(new_size)

    @property
    def _current_batch_size(self) -> int:
        """The batch size the next batch may reach (the seed's attribute)."""
        return self._controller.next_size()

    @property
    def queue_size(self) -> int:
        """Items waiting to be batched."""
        engine = self._engine
        return 0 if engine is None else engine.queue_size

    @property
    def is_paused(self) -> bool:
        return self._paused

    @property
    def is_stopping(self) -> bool:
        return self.shutdown_event.is_set()

    def check_health(self) -> dict[str, Any]:
        """Run a health check now and return its readings (as in `get_stats`)."""
        return self._health.check().as_stats()

    def get_stats(self) -> dict[str, Any]:
        """A snapshot of the statistics window, live state and the last health check.

        Keys: ``avg_processing_time``, ``avg_batch_size``, ``avg_queue_time``,
        ``avg_latency``, ``p50_latency``, ``p95_latency``, ``p99_latency``,
        ``throughput`` (items/s of processing time), ``error_rate`` (fraction),
        ``total_processed``, ``batch_count``, ``error_count``, ``avg_queue_length``,
        ``current_batch_size``, ``system_load`` (0-1), ``active_batches``,
        ``queue_size``, ``is_paused``, ``is_stopping``, and the health readings
        ``health_status``, ``memory_percent``, ``memory_status``, ``queue_status``,
        ``stuck_batches``, ``last_health_check`` (None before the first check).
        """
        engine = self._engine
        stats: dict[str, Any] = dict(self._recorder.stats.get_stats())
        stats.update(
            current_batch_size=self._current_batch_size,
            system_load=self._recorder.load.value(),
            active_batches=0 if engine is None else engine.active_batches,
            queue_size=self.queue_size,
            is_paused=self._paused,
            is_stopping=self.is_stopping,
        )
        report = self._health.last
        stats.update(_NO_HEALTH if report is None else report.as_stats())
        return stats

    def _relieve_memory(self) -> None:
        if self.config.enable_memory_optimization:
            gc.collect()
        if self.config.adaptive:
            self._controller.shrink()
            _log.warning("memory critical: batch size reduced to %d", self._current_batch_size)

    def __repr__(self) -> str:
        if self.shutdown_event.is_set():
            state = "stopped"
        elif self._engine is None:
            state = "not started"
        else:
            state = "paused" if self._paused else "running"
        engine = self._engine
        return (
            f"BatchProcessor({state}, batch_size={self._current_batch_size}, "
            f"queue_size={self.queue_size}, "
            f"active_batches={0 if engine is None else engine.active_batches})"
        )


def _one_item(item: Any, data: Any) -> Any:
    if (item is _MISSING) == (data is _MISSING):
        raise TypeError("give the item to process either positionally (item) or as data=")
    return data if item is _MISSING else item


def _priority_level(priority: int) -> int:
    if type(priority) is BatchPriority:  # the common case, without an enum lookup
        return priority
    try:
        return int(BatchPriority(priority))
    except ValueError:
        raise ValueError(
            f"priority must be a BatchPriority ({', '.join(p.name for p in BatchPriority)}), "
            f"got {priority!r}"
        ) from None


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.warning("enqueued item failed: %r", future.exception())
