"""Partitioned inputs (see `batchpilot.sources.partition`)."""

from __future__ import annotations

from .._core.exports import publish
from .partition import Batch, Partition, RowError, Source

__all__ = ["Batch", "Partition", "RowError", "Source"]

publish(__name__, globals(), __all__)
