"""batchpilot: adaptive batch processing for ML inference and big data jobs.

Online dynamic batching (`batch`, `BatchProcessor`), bulk chunked jobs
(`map_batches`, `batchpilot.chunked`, `batchpilot.adaptive`) and a flush buffer
(`batchpilot.buffer`), all on one shared core of sizing controllers, queues,
collate/split, retry and statistics.
"""

from __future__ import annotations

from . import types  # noqa: F401 - publishes the signature types under batchpilot.types
from ._core.exports import publish
from ._core.retry import RetryPolicy
from ._core.sizing import AIMD, Fixed, LinearCostModel, SizeController, TargetLatency
from ._core.stats import BatchStats
from .batching import Batcher, batch
from .bulk import (
    BulkProgress,
    BulkRun,
    ItemFailure,
    JobFileError,
    JobInUseError,
    JobMismatchError,
    map_batches,
)
from .errors import (
    BatchFailedError,
    BatchpilotError,
    ClosedError,
    ConfigError,
    ItemTimeoutError,
    QueueFullError,
)
from .online import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessor,
    BatchProcessorConfig,
    PrioritizedItem,
)
from .types import Collator

__version__ = "0.1.0"

__all__ = [
    "AIMD",
    "BatchFailedError",
    "BatchPriority",
    "BatchProcessingStrategy",
    "BatchProcessor",
    "BatchProcessorConfig",
    "BatchStats",
    "Batcher",
    "BatchpilotError",
    "BulkProgress",
    "BulkRun",
    "ClosedError",
    "Collator",
    "ConfigError",
    "Fixed",
    "ItemFailure",
    "ItemTimeoutError",
    "JobFileError",
    "JobInUseError",
    "JobMismatchError",
    "LinearCostModel",
    "PrioritizedItem",
    "QueueFullError",
    "RetryPolicy",
    "SizeController",
    "TargetLatency",
    "__version__",
    "batch",
    "map_batches",
]


publish(__name__, globals(), __all__)
