"""Seed 004's sizing classes: `BatchProcessingStrategy` and `ChemicalDataBatchStrategy`.

Both are core `SizeController`s (``observe``/``next_size``), so the bulk engine
drives them directly. The sizing itself is the core's `TargetLatency`: batch
duration is modelled as ``fixed + per_item * n`` (`LinearCostModel`), the next
batch is the largest predicted to finish within ``target_duration``, growth is
capped per step (``max_growth``, 2x as in Beam and joblib) and shrinking is
immediate. A batch in which every item failed halves the size. On top of that:

* **memory**: when the process memory (RSS) after a batch exceeds
  ``memory_limit`` bytes, the next batch is halved;
* **chemical data** (`ChemicalDataBatchStrategy`): per-source starting points,
  and the seed's conservatism: 10% smaller while items cost more than 1 MiB of
  memory each, 5% smaller while per-item times over the last 5 batches vary more
  than 2x.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .._core.health import SampledReading, process_rss_mb
from .._core.sizing import TargetLatency

__all__ = [
    "CHEMICAL_SOURCE_DEFAULTS",
    "DEFAULT_MEMORY_LIMIT",
    "BatchProcessingStrategy",
    "ChemicalDataBatchStrategy",
]

DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024
"""1 GiB, in bytes: the seed's ``memory_limit`` default."""

_MIB = 1024 * 1024


def _rss_bytes() -> float:
    return process_rss_mb() * _MIB


class BatchProcessingStrategy:
    """Adaptive batch size that aims each batch at ``target_duration`` seconds.

    Args:
        initial_batch_size: size of the first batch.
        min_batch_size: smallest batch.
        max_batch_size: largest batch.
        target_duration: seconds a batch should take.
        memory_limit: process memory in bytes above which batches are halved.
        logger: where size changes are logged (debug level).
        max_growth: largest growth factor per batch.
        read_memory_bytes: how to read process memory in bytes; None reads the
            process RSS at most once a second (a read costs ~0.1 ms).

    Raises:
        ValueError: inconsistent sizes or a non-positive duration/limit.

    Example:
        >>> strategy = BatchProcessingStrategy(initial_batch_size=100, target_duration=5.0)
        >>> strategy.observe(100, 1.0)  # 5x faster than the target: grow, at most 2x
        >>> strategy.next_size()
        200
    """

    def __init__(
        self,
        initial_batch_size: int = 100,
        min_batch_size: int = 10,
        max_batch_size: int = 1000,
        target_duration: float = 5.0,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        logger: logging.Logger | None = None,
        *,
        max_growth: float = 2.0,
        read_memory_bytes: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (
            ("initial_batch_size", initial_batch_size),
            ("min_batch_size", min_batch_size),
            ("max_batch_size", max_batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if isinstance(memory_limit, bool) or not memory_limit > 0:
            raise ValueError(f"memory_limit must be > 0 bytes, got {memory_limit!r}")
        self._controller = TargetLatency(
            target_duration,
            min_size=min_batch_size,
            max_size=max_batch_size,
            initial=initial_batch_size,
            max_growth=max_growth,
        )
        self.initial_batch_size = initial_batch_size
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        self.target_duration = float(target_duration)
        self.memory_limit = memory_limit
        self.logger = logger or logging.getLogger("batchpilot.adaptive")
        self._read_memory = read_memory_bytes or SampledReading(_rss_bytes, interval=1.0).value
        self._lock = threading.Lock()

    @property
    def current_batch_size(self) -> int:
        """The size of the next batch."""
        return self._controller.next_size()

    def next_size(self) -> int:
        """The size of the next batch (core `SizeController` protocol)."""
        return self._controller.next_size()

    get_next_batch_size = next_size

    def observe(self, batch_size: int, duration: float, ok: bool = True) -> None:
        """Learn from one finished batch (``ok`` False: every item failed)."""
        memory = self._read_memory()
        with self._lock:
            before = self._controller.size
            self._controller.observe(batch_size, duration, ok)
            if memory > self.memory_limit:
                self._scale(0.5)
            self._adjust(batch_size, duration, memory)
            after = self._controller.size
        if after != before:
            self.logger.debug(
                "batch size %d -> %d (batch of %d took %.3f s, memory %.0f MiB)",
                before,
                after,
                batch_size,
                duration,
                memory / _MIB,
            )

    def _adjust(self, batch_size: int, duration: float, memory: float) -> None:
        """Hook for subclasses: further corrections after each batch (lock held)."""

    def _scale(self, factor: float) -> None:
        self._controller.set_size(max(1, math.floor(self._controller.size * factor)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.current_batch_size}, "
            f"min={self.min_batch_size}, max={self.max_batch_size}, "
            f"target_duration={self.target_duration})"
        )


CHEMICAL_SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "generic": {"initial_batch_size": 100, "target_duration": 5.0},
    "chembl": {"initial_batch_size": 50, "target_duration": 10.0},
    "pubchem": {"initial_batch_size": 200, "target_duration": 8.0},
}
"""Per-source defaults: ChEMBL molecules are complex (smaller, slower batches);
PubChem records are simpler (larger batches). Explicit arguments win."""

_HEAVY_ITEM_BYTES = _MIB
_STABILITY_WINDOW = 5


class ChemicalDataBatchStrategy(BatchProcessingStrategy):
    """`BatchProcessingStrategy` tuned per chemical data source.

    Args:
        data_source: ``"generic"``, ``"chembl"`` or ``"pubchem"`` (any case).
        initial_batch_size: None for the source default (clamped into the bounds).
        target_duration: None for the source default.
        **kwargs: the other `BatchProcessingStrategy` arguments.

    Raises:
        ValueError: an unknown ``data_source``.

    Example:
        >>> ChemicalDataBatchStrategy("chembl").current_batch_size
        50
    """

    def __init__(
        self,
        data_source: str = "generic",
        initial_batch_size: int | None = None,
        min_batch_size: int = 10,
        max_batch_size: int = 1000,
        target_duration: float | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        logger: logging.Logger | None = None,
        **kwargs: Any,
    ) -> None:
        source = data_source.lower() if isinstance(data_source, str) else data_source
        if source not in CHEMICAL_SOURCE_DEFAULTS:
            raise ValueError(
                f"unknown data_source {data_source!r}; "
                f"expected one of {sorted(CHEMICAL_SOURCE_DEFAULTS)}"
            )
        defaults = CHEMICAL_SOURCE_DEFAULTS[source]
        if initial_batch_size is None:
            default_size = defaults["initial_batch_size"]
            if isinstance(min_batch_size, int) and isinstance(max_batch_size, int):
                default_size = max(min_batch_size, min(max_batch_size, default_size))
            initial_batch_size = default_size
        super().__init__(
            initial_batch_size=initial_batch_size,
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            target_duration=(
                defaults["target_duration"] if target_duration is None else target_duration
            ),
            memory_limit=memory_limit,
            logger=logger,
            **kwargs,
        )
        self.data_source = source
        self._per_item_times: deque[float] = deque(maxlen=_STABILITY_WINDOW)
        self._last_memory: float | None = None

    def _adjust(self, batch_size: int, duration: float, memory: float) -> None:
        if batch_size < 1:
            return
        previous = self._last_memory
        if previous is not None and (memory - previous) / batch_size > _HEAVY_ITEM_BYTES:
            self._scale(0.9)
        self._last_memory = memory
        self._per_item_times.append(duration / batch_size)
        times = self._per_item_times
        if len(times) == _STABILITY_WINDOW and max(times) > 2 * min(times):
            self._scale(0.95)
