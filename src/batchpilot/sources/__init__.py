"""Partitioned inputs: files, folders, globs and fsspec URLs read by the workers.

``batchpilot.sources.parquet(path)``, ``.csv``, ``.jsonl`` and ``.files`` return a
picklable `FileSource`; see `batchpilot.sources.partition` for the protocol and
docs/partitions.md for the plan each makes.
"""

from __future__ import annotations

from .._core.exports import publish
from .file_source import FileSource, csv, files, jsonl, parquet
from .lines import LineNumbers
from .partition import Batch, Partition, RowError, Source

__all__ = [
    "Batch",
    "FileSource",
    "LineNumbers",
    "Partition",
    "RowError",
    "Source",
    "csv",
    "files",
    "jsonl",
    "parquet",
]

publish(__name__, globals(), __all__)
