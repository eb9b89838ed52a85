"""Chunked processing of huge target lists (seed 002), on the bulk engine.

``await BatchProcessor(config).process_targets(targets, processor_func, mode,
strategy)`` cuts ``targets`` into chunks (`ChunkProcessor`, by `ChunkStrategy`),
runs each chunk's targets through ``processor_func`` (one target per call, plain
or ``async def``) on `batchpilot.map_batches` (the one bulk engine: executor,
concurrency, ordering, lazy reading), and after every chunk updates the
`MemoryMonitor`, the `ProgressTracker`, the statistics and the `ResultStorage`.

Choices where the seed is silent or inconsistent (kept by tests):

* **Results.** ``process_targets`` returns the successful targets' results in
  input order. A target that raises fails alone: it is left out of the results,
  logged, counted in ``stats`` and kept in ``processor.failures`` as an
  `ItemFailure(index, target, error)`; stored chunks list it under ``errors``.
  With ``enable_error_recovery=False`` the first failure is raised instead.
* **Async functions** run on the caller's event loop (so loop-bound clients such
  as an HTTP session keep working); a chunk's targets run concurrently
  (`asyncio.gather`) and modes set how many chunks run at once. Sync functions
  run in worker threads, one target after another within a chunk.
* **Callbacks** (progress callbacks, result processors, post-processors) may be
  plain or ``async def``; they run on the caller's loop, between chunks. A failing
  progress callback or result processor is logged and counted, never raised; a
  failing post-processor is raised (its job is to produce the results).
* **Graceful shutdown.** `BatchProcessor.shutdown` (safe from a signal handler,
  e.g. ``loop.add_signal_handler(signal.SIGINT, processor.shutdown)``) stops
  planning new chunks; chunks already started finish and are stored, and
  ``process_targets`` returns what was done with ``stats.interrupted`` set and
  ``stats.next_target_index`` telling where to resume (every target before it
  has finished; after a cancellation, chunks finished out of order beyond it
  would run again). Cancelling the task stops
  at the next chunk boundary too. Stored chunks are written atomically, so they
  are intact either way.
"""

from __future__ import annotations

from .._core.exports import publish
from .._core.memory import MemoryMonitor
from ..bulk import ItemFailure as ItemFailure  # kept importable here: its home is batchpilot.bulk
from .config import (
    CHUNK_EXECUTORS,
    RESULT_FORMATS,
    ChunkConfig,
    ChunkStrategy,
    ProcessingMode,
)
from .planner import ChunkProcessor, CustomStrategy, default_weight, estimate_size_bytes
from .processor import BatchProcessor
from .progress import ProgressCallback, ProgressTracker
from .stats import ProcessingStats
from .storage import ResultProcessor, ResultStorage

__all__ = [
    "CHUNK_EXECUTORS",
    "RESULT_FORMATS",
    "BatchProcessor",
    "ChunkConfig",
    "ChunkProcessor",
    "ChunkStrategy",
    "CustomStrategy",
    "MemoryMonitor",
    "ProcessingMode",
    "ProcessingStats",
    "ProgressCallback",
    "ProgressTracker",
    "ResultProcessor",
    "ResultStorage",
    "default_weight",
    "estimate_size_bytes",
]

publish(__name__, globals(), __all__)
