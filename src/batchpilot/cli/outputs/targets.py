"""`output_target`: the backend a path names, and the suffixes it knows."""

from __future__ import annotations

import os
from pathlib import Path

from ..._core.compression import strip_codec
from ..records_io import STDIO, RecordsFormatError, format_of
from .base import Target
from .parquet import DatasetTarget, ParquetTarget
from .sqlite import SqliteTarget
from .stdout import StdoutTarget
from .text import TextTarget

__all__ = ["OUTPUT_FORMATS", "output_target"]

#: File suffix -> format, for outputs.
OUTPUT_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Format -> the backend that writes it.
_BACKENDS: dict[str, type[Target]] = {
    "jsonl": TextTarget,
    "csv": TextTarget,
    "tsv": TextTarget,
    "sqlite": SqliteTarget,
    "parquet": ParquetTarget,
    "dataset": DatasetTarget,
}


def output_target(path: str | os.PathLike[str], table: str = "results") -> Target:
    """The target ``path`` names; see the `outputs` package docstring.

    Raises:
        RecordsFormatError: Unknown suffix, missing or read-only output folder, a folder named
            like a file, or a dataset ``table`` that is not one folder name.
    """
    text = os.fspath(path)
    if text == STDIO:
        return StdoutTarget("stdout", Path(STDIO))
    target, slash = Path(text), text.endswith(("/", os.sep))
    if slash or target.is_dir():
        if not slash and strip_codec(target).suffix.lower() in OUTPUT_FORMATS:
            raise RecordsFormatError(
                f"output is a directory, not a file: {target} (a folder is written as a "
                "Parquet dataset: end the path with / to mean that)"
            )
        if table in ("", ".", "..") or Path(table).name != table:
            raise RecordsFormatError(
                f"--table {table!r} is not a folder name: the table of a dataset is one "
                f"folder inside {target}"
            )
        kind, codec = "dataset", None
        folder = target if target.is_dir() else target.parent
        if target.name in ("", ".."):  # '.' or '..': named, for the job file beside it
            target = Path(os.path.abspath(target))
            if not target.name:
                raise RecordsFormatError(f"cannot write a dataset into the root folder {text}")
    else:
        kind, codec = format_of(target, OUTPUT_FORMATS, "output")
        folder = target.parent
    if not folder.is_dir():
        raise RecordsFormatError(f"output folder not found: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RecordsFormatError(f"output folder not writable: {folder}")
    return _BACKENDS[kind](kind, target, codec, table)
