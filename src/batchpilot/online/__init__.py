"""The seed-001 online batch processor, as a thin layer on batchpilot's one online engine.

Many callers submit single items (``enqueue_predict`` returns a
`concurrent.futures.Future`); the engine groups queued items into batches for one
batch function, runs up to ``max_workers`` batches at once, and splits each batch
result back per item. `BatchProcessor` maps `BatchProcessorConfig` onto the engine and
adds what the seed documents around it: statistics, health monitoring, the
``metrics_collector`` hook, garbage collection and the seed's method names.

Readings of the seed, where it is vague:

* ``enqueue_predict(item, timeout=...)``: ``timeout`` bounds how long the call
  blocks while the queue is full (then `QueueFullError`), as the seed says. The
  per-item deadline is ``config.item_timeout``: an item still queued that long
  after submission fails with `ItemTimeoutError` and is never processed late. A
  batch-function call that runs longer than ``item_timeout`` is reported as stuck
  by the health monitor (it is not interrupted; Python threads cannot be killed).
* ``batch_timeout`` is an upper bound on waiting for more items, never a fixed
  delay: an idle worker takes what is queued at once.
* Failed batches are retried ``max_retries`` times, waiting ``retry_delay`` and
  then twice as long each time; a batch that still fails is bisected until each
  failing item is isolated: healthy items get results, failing items their own
  exception. A wrong number of results fails the batch with `BatchFailedError`.
* ``gc_batch_threshold`` is a batch size: with ``enable_memory_optimization``,
  every batch larger than it is followed by a collection of the young garbage
  generations (``gc.collect(1)``), where the batch's own reference cycles are. A
  full ``gc.collect()`` takes ~15 ms in a process with numpy loaded, and after
  every large batch it cut throughput tenfold (measured), so the full collection
  runs only when the health monitor finds memory critical; then the adaptive
  batch size is also halved.
* ``metrics_collector`` is any object with ``record_batch(BatchRecord)`` or a
  callable taking a `BatchRecord`; it is called once per batch, whether or not
  ``enable_monitoring`` keeps the statistics window.
* ``system_load`` is the busy fraction of the ``max_workers`` slots over the
  statistics window, in [0, 1].
* A processor runs once: ``start`` after ``stop`` raises `ClosedError`.

Example:
    >>> import numpy as np
    >>> processor = BatchProcessor(BatchProcessorConfig(enable_health_monitoring=False))
    >>> processor.start(lambda batch: batch * 2)
    >>> processor.enqueue_predict(np.array([1, 2])).result().tolist()
    [2, 4]
    >>> processor.stop()
"""

from __future__ import annotations

from .._core.exports import publish
from .._core.stats import BatchStats
from .config import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessorConfig,
    PrioritizedItem,
)
from .processor import BatchProcessor

__all__ = [
    "BatchPriority",
    "BatchProcessingStrategy",
    "BatchProcessor",
    "BatchProcessorConfig",
    "BatchStats",
    "PrioritizedItem",
]

publish(__name__, globals(), __all__)
