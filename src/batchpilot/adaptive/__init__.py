"""Adaptive bulk processing of item lists (seed 004), on the bulk engine.

`AdaptiveBatchProcessor` hands its batch function and its sizing strategy (a
`BatchProcessingStrategy`, which is a core `SizeController`) to
`batchpilot.map_batches`; the engine cuts the items into batches of the sizes the
strategy plans, runs them on worker threads and isolates failing items.
`BatchProcessingManager` adds the seed's database step: every processed batch is
inserted atomically with ``db.batch_insert`` inside ``db.transaction()``.

Choices where the seed is silent or inconsistent (kept by tests):

* **Results** come back in input order (the seed's parallel path returned them
  in completion order). A failed item is left out of the results, as in the
  seed, but not lost: it is logged and kept in ``processor.failures`` as an
  `ItemFailure(index, item, error)` of the latest call, and counted in
  ``get_stats()``. Only the failing items fail: the engine retries nothing by
  default and bisects a failed batch down to the bad items.
* ``process_func`` must return one result per item (a list of the same length);
  otherwise the batch fails as a whole with `BatchFailedError`.
* ``error_rate`` is a fraction in [0, 1] (failed / processed items).
* ``batch_size_history`` lists the planned sizes of the last
  `~batchpilot.bulk.HISTORY_LIMIT` batches, oldest first, across calls (bounded,
  so a long-lived processor does not grow); ``total_duration`` is the wall time
  of all calls.
* The ``*_async`` methods run the same engine in a worker thread
  (`asyncio.to_thread`), so the event loop is never blocked.
"""

from __future__ import annotations

from .._core.exports import publish
from ..bulk import ItemFailure as ItemFailure  # kept importable here: its home is batchpilot.bulk
from .manager import BatchProcessingManager
from .processor import AdaptiveBatchProcessor
from .strategy import (
    CHEMICAL_SOURCE_DEFAULTS,
    DEFAULT_MEMORY_LIMIT,
    BatchProcessingStrategy,
    ChemicalDataBatchStrategy,
)

__all__ = [
    "CHEMICAL_SOURCE_DEFAULTS",
    "DEFAULT_MEMORY_LIMIT",
    "AdaptiveBatchProcessor",
    "BatchProcessingManager",
    "BatchProcessingStrategy",
    "ChemicalDataBatchStrategy",
]

publish(__name__, globals(), __all__)
