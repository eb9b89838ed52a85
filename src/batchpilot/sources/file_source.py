"""`FileSource`: Parquet, CSV/TSV and JSON Lines files split into partitions.

The plan (`FileSource.partitions`) reads the file listing and Parquet footers,
never a row: a Parquet file gives one partition per run of row groups of up to
``partition_rows`` rows; a plain text file larger than ``partition_bytes`` gives
one partition per byte range of that size (the range owns the lines that start
in it, see `batchpilot.sources.lines`); a compressed (``.gz``, ``.zst``) or
smaller text file is one partition. A worker reads its partition with
`FileSource.read`.

Byte ranges of a CSV/TSV file assume no quoted value spans a range boundary
with a newline in it (as Dask's ``blocksize`` does); for such files pass
``partition_bytes=None``, which reads each file whole and handles them exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import IO, Any

from .._core.compression import FILE_FORMATS, TEXT_FORMATS, codec_of, decompressing, strip_codec
from .._core.csv_types import ColumnTypes, parse_schema
from .._core.formats import check_batch_format, from_arrow
from .lines import LineBase, LineNumbers, align, line_groups, owned_blocks
from .listing import FileEntry, Paths, as_paths, list_files, open_file
from .parquet_io import parquet_partitions, read_parquet
from .partition import Batch, Partition, RowError
from .text import CsvLayout, Parsed, csv_layout, parse_csv, parse_jsonl

__all__ = ["FileSource", "csv", "files", "jsonl", "parquet"]

#: Default size of a plain text file's byte ranges (Dask's ``blocksize`` default).
PARTITION_BYTES = 64 << 20
#: Default most rows of a Parquet partition (row groups are never split).
PARTITION_ROWS = 1 << 20
_FORMATS = ("parquet", "csv", "tsv", "jsonl")
_FOOTER_THREADS = 16  # footers of remote files are fetched concurrently


class FileSource:
    """A `Source` over files: a file, a folder, a glob, an fsspec URL or a list of them.

    Args:
        paths: What to read (see `batchpilot.sources.listing`).
        format: ``"parquet"``, ``"csv"``, ``"tsv"`` or ``"jsonl"`` for every file, or
            None to judge each file by its suffix (``.parquet``/``.pq``, ``.csv``,
            ``.tsv``, ``.jsonl``/``.ndjson``, each text one optionally ``.gz``/``.zst``).
        delimiter: The field separator of ``"csv"`` files (``"tsv"`` uses a tab).
        schema: CSV/TSV column types, ``{"name": "int"|"float"|"bool"|"str", "*": ...}``
            or ``"name:int,..."``; columns not named are inferred.
        partition_bytes: Byte range size of plain text files; None reads each whole.
        partition_rows: Most rows of a Parquet partition; None: one per file.
        storage_options: Passed to fsspec (e.g. ``{"endpoint_url": ...}`` for s3fs).
    """

    def __init__(
        self,
        paths: Paths,
        *,
        format: str | None = None,
        delimiter: str = ",",
        schema: ColumnTypes | str | None = None,
        partition_bytes: int | None = PARTITION_BYTES,
        partition_rows: int | None = PARTITION_ROWS,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if format is not None and format not in _FORMATS:
            raise ValueError(f"unknown format {format!r}; choose one of {', '.join(_FORMATS)}")
        for name, value in (
            ("partition_bytes", partition_bytes),
            ("partition_rows", partition_rows),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value}")
        self.paths = as_paths(paths)
        self.format = format
        self.delimiter = delimiter
        self.schema: ColumnTypes = (
            parse_schema(schema) if isinstance(schema, str) else dict(schema or {})
        )
        self.partition_bytes = partition_bytes
        self.partition_rows = partition_rows
        self.storage_options = dict(storage_options or {})
        self._listing: list[FileEntry] | None = None

    def __repr__(self) -> str:
        paths = self.paths[0] if len(self.paths) == 1 else list(self.paths)
        return f"FileSource({paths!r}, format={self.format!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_listing": None}  # workers need the options, not the listing

    def listing(self) -> list[FileEntry]:
        """The input files, listed once (a pickled copy lists again).

        Raises:
            FileNotFoundError: a path that does not exist, or a folder or glob with no file.
            ValueError: a file whose format its suffix does not tell.
        """
        if self._listing is None:
            listing = list_files(self.paths, self.storage_options)
            for entry in listing:
                self._kind(entry)
            self._listing = listing
        return self._listing

    def partitions(self) -> list[Partition]:
        """The plan, from the listing and Parquet footers only."""
        entries = [(entry, *self._kind(entry)) for entry in self.listing()]
        footers = [entry for entry, kind, _ in entries if kind == "parquet"]
        with ThreadPoolExecutor(min(_FOOTER_THREADS, max(len(footers), 1))) as pool:
            plans = pool.map(self._row_groups, footers)
            groups = dict(zip((entry.path for entry in footers), plans, strict=True))
        plan: list[Partition] = []
        for entry, kind, codec in entries:
            if kind == "parquet":
                for row_groups, rows in groups[entry.path]:
                    plan.append(
                        Partition(
                            len(plan), entry.path, kind, None, row_groups, None, rows, entry.size
                        )
                    )
            elif (
                codec is not None
                or self.partition_bytes is None
                or entry.size <= self.partition_bytes
            ):
                plan.append(Partition(len(plan), entry.path, kind, codec, size=entry.size))
            else:
                for start in range(0, entry.size, self.partition_bytes):
                    end = min(start + self.partition_bytes, entry.size)
                    plan.append(
                        Partition(
                            len(plan), entry.path, kind, byte_range=(start, end), size=end - start
                        )
                    )
        return plan

    def fingerprint(self) -> str:
        """A hash of the listing (path, size, ETag or mtime) and of what shapes the plan."""
        state = {
            "files": [(entry.path, entry.size, entry.version) for entry in self.listing()],
            "format": self.format,
            "delimiter": self.delimiter,
            "schema": self.schema,
            "partition_bytes": self.partition_bytes,
            "partition_rows": self.partition_rows,
        }
        return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()

    def read(self, partition: Partition, batch_format: str, batch_rows: int) -> Iterator[Batch]:
        """``partition``'s rows in ``batch_format``, at most ``batch_rows`` per batch.

        Malformed rows are the batches' `RowError`s; they never stop the partition.
        """
        check_batch_format(batch_format)
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
        if partition.format == "parquet":
            return read_parquet(partition, self.storage_options, batch_format, batch_rows)
        return self._read_text(partition, batch_format, batch_rows)

    def _row_groups(self, entry: FileEntry) -> list[tuple[tuple[int, ...], int]]:
        return parquet_partitions(entry, self.storage_options, self.partition_rows)

    def _kind(self, entry: FileEntry) -> tuple[str, str | None]:
        """``(format, codec)`` of one file."""
        name = PurePosixPath(entry.path)
        codec = codec_of(name)
        kind = self.format or FILE_FORMATS.get(strip_codec(name).suffix.lower())
        if kind is None:
            known = ", ".join(sorted(FILE_FORMATS))
            raise ValueError(
                f"cannot tell the format of {entry.path} from its suffix; use one of {known}"
            )
        if codec is not None and kind not in TEXT_FORMATS:
            raise ValueError(f"{entry.path}: only JSON Lines, CSV and TSV can be compressed")
        return kind, codec

    def _open(self, partition: Partition) -> IO[bytes]:
        return decompressing(open_file(partition.path, self.storage_options), partition.compression)

    def _read_text(
        self, partition: Partition, batch_format: str, batch_rows: int
    ) -> Iterator[Batch]:
        start, end = partition.byte_range or (0, None)
        records = batch_format == "records"
        layout: CsvLayout | None = None
        delimiter = "\t" if partition.format == "tsv" else self.delimiter
        if partition.format != "jsonl":
            with self._open(partition) as head:
                layout = csv_layout(head, delimiter, self.schema)
            start = max(start, layout.header_bytes)
        with self._open(partition) as file:
            position = align(file, start) if partition.compression is None else _skip(file, start)
            if layout is not None and position == layout.header_bytes:
                base = LineBase.known(layout.header_lines)
            elif position == 0:
                base = LineBase.known(0)
            else:
                base = LineBase(partition.path, self.storage_options, position)
            quote = b'"' if layout is not None else None
            for text, first in line_groups(owned_blocks(file, position, end), batch_rows, quote):
                if layout is None:
                    parsed = parse_jsonl(text, records)
                else:
                    parsed = parse_csv(text, layout, delimiter, records)
                batch = self._batch(partition, parsed, first, base, batch_format)
                if batch is not None:
                    yield batch

    def _batch(
        self, partition: Partition, parsed: Parsed, first: int, base: LineBase, batch_format: str
    ) -> Batch | None:
        errors = tuple(
            RowError(partition.path, base() + first + line + 1, message)
            for line, message in parsed.errors
        )
        lines = LineNumbers(base, parsed.lines + first)
        if not len(lines) and not errors:
            return None
        data = parsed.data if batch_format == "records" else from_arrow(parsed.data, batch_format)
        return Batch(data, partition.path, lines, errors)


def _skip(file: IO[bytes], count: int) -> int:
    """Read ``count`` bytes of ``file`` away (a compressed stream cannot seek); return ``count``."""
    left = count
    while left > 0:
        block = file.read(min(left, 1 << 20))
        if not block:
            break
        left -= len(block)
    return count


def parquet(
    paths: Paths,
    *,
    partition_rows: int | None = PARTITION_ROWS,
    storage_options: dict[str, Any] | None = None,
) -> FileSource:
    """Parquet files; one partition per run of row groups of up to ``partition_rows`` rows."""
    return FileSource(
        paths, format="parquet", partition_rows=partition_rows, storage_options=storage_options
    )


def csv(
    paths: Paths,
    *,
    delimiter: str = ",",
    schema: ColumnTypes | str | None = None,
    partition_bytes: int | None = PARTITION_BYTES,
    storage_options: dict[str, Any] | None = None,
) -> FileSource:
    """CSV files with a header row (any ``delimiter``, e.g. ``"\t"``); plain ones in byte ranges."""
    return FileSource(
        paths,
        format="csv",
        delimiter=delimiter,
        schema=schema,
        partition_bytes=partition_bytes,
        storage_options=storage_options,
    )


def jsonl(
    paths: Paths,
    *,
    partition_bytes: int | None = PARTITION_BYTES,
    storage_options: dict[str, Any] | None = None,
) -> FileSource:
    """JSON Lines files, one object per line; plain ones split in byte ranges."""
    return FileSource(
        paths, format="jsonl", partition_bytes=partition_bytes, storage_options=storage_options
    )


def files(
    paths: Paths,
    format: str | None = None,
    *,
    delimiter: str = ",",
    schema: ColumnTypes | str | None = None,
    partition_bytes: int | None = PARTITION_BYTES,
    partition_rows: int | None = PARTITION_ROWS,
    storage_options: dict[str, Any] | None = None,
) -> FileSource:
    """Files of any supported format, each judged by its suffix unless ``format`` is given."""
    return FileSource(
        paths,
        format=format,
        delimiter=delimiter,
        schema=schema,
        partition_bytes=partition_bytes,
        partition_rows=partition_rows,
        storage_options=storage_options,
    )
