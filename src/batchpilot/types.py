"""The types that appear in batchpilot's public signatures, for annotations and protocols.

`BatchRecord` is what every engine reports after a batch and a `BatchListener`
receives; `Clock` is the injectable time source; `Collator` turns a list of items
into one batch and back; `BoundedController` is a `batchpilot.SizeController` whose
size range an engine may narrow; `EngineStatistics` is the snapshot
`Batcher.statistics()` returns. (`batchpilot.SizeController` and
`batchpilot.bulk.ChunkExecutor` live with the APIs that take them.)
"""

from __future__ import annotations

from ._core.clock import Clock
from ._core.collate import Collator
from ._core.events import BatchListener, BatchRecord
from ._core.exports import publish
from ._core.sizing import BoundedController
from ._engine.engine import EngineStatistics

__all__ = [
    "BatchListener",
    "BatchRecord",
    "BoundedController",
    "Clock",
    "Collator",
    "EngineStatistics",
]

publish(__name__, globals(), __all__)
