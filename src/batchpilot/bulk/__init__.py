"""The bulk engine: map a batch function over a huge, lazy input, fast and resumably.

`map_batches(fn, items)` cuts ``items`` into chunks, runs ``fn(chunk)`` on an
executor (threads, processes, asyncio, Dask distributed, Ray, or the calling
thread) and returns a
`BulkRun`: a lazy iterator of per-item results, in input order by default.

How a failed item appears: ``fn`` is called once per chunk; if that call
raises, the chunk's items are isolated with the core's retry-then-bisect
(`batchpilot._core.isolation`), and each item that still fails is yielded as an
`ItemFailure(index, item, error)` in its own place in the stream. Failures are
also collected on `BulkRun.failures`. With ``fail_fast=True`` the first
exception is raised from the iterator instead and the run stops.

Speed comes from doing per-chunk, never per-item, Python work: chunks are read
with `itertools.islice`, results are flattened by `itertools.chain`, and the
iterator ``for`` loops and ``list()`` use is that C-level chain itself.

``fn`` may also be a model class (``setup()`` and ``predict(batch)``, the contract of
`batchpilot serve`): it is instantiated and set up once per worker process, Dask
worker or Ray actor, and reused for every chunk there (`model_instance` gives a
task of one's own the same cached instance).

The seed APIs (`batchpilot.chunked`, `batchpilot.adaptive`) and the CLI are built
on this module; see ``docs/bulk.md``.
"""

from __future__ import annotations

from .._core.exports import publish
from .api import map_batches
from .checkpoint import DamagedChunkError, JobFileError, JobInUseError, JobMismatchError
from .executors import ChunkExecutor, ProcessExecutor, RayExecutor
from .models import ModelSetupError, ModelSpec, model_instance, model_spec
from .partition_task import PartitionFailed, PartitionReport, RowFailure
from .partitioned import PartitionedRun
from .run import HISTORY_LIMIT, BulkRun
from .runner import ItemFailure
from .serialize import StoredError
from .statistics import BulkProgress, BulkStatistics

__all__ = [
    "HISTORY_LIMIT",
    "BulkProgress",
    "BulkRun",
    "BulkStatistics",
    "ChunkExecutor",
    "DamagedChunkError",
    "ItemFailure",
    "JobFileError",
    "JobInUseError",
    "JobMismatchError",
    "ModelSetupError",
    "ModelSpec",
    "PartitionFailed",
    "PartitionReport",
    "PartitionedRun",
    "ProcessExecutor",
    "RayExecutor",
    "RowFailure",
    "StoredError",
    "map_batches",
    "model_instance",
    "model_spec",
]

publish(__name__, globals(), __all__)
