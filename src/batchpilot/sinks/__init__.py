"""Partitioned outputs (see `batchpilot.sinks.part`)."""

from __future__ import annotations

from .._core.exports import publish
from .part import PartInfo, PartWriter, Sink

__all__ = ["PartInfo", "PartWriter", "Sink"]

publish(__name__, globals(), __all__)
