"""Partitioned outputs: each worker writes and commits its own part (see `batchpilot.sinks.part`).

- `parquet` and `jsonl`: one part file per partition (``part-00007.parquet``) in a
  local folder or an fsspec URL, committed atomically; the run ends with
  ``_manifest.json`` and ``_SUCCESS``.
- `database`: rows into a table, exactly once, keyed on a unique column.
"""

from __future__ import annotations

from .._core.exports import publish
from .database import database
from .folder import jsonl, parquet
from .part import PartInfo, PartWriter, Sink

__all__ = ["PartInfo", "PartWriter", "Sink", "database", "jsonl", "parquet"]

publish(__name__, globals(), __all__)
