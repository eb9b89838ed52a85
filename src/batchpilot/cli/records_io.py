"""Reading records (dicts) from the file formats the CLI accepts, and the row values.

Inputs: JSON Lines (``.jsonl``, ``.ndjson``, or ``-`` for standard input), CSV
(``.csv``) and TSV (``.tsv``), header row first, and Parquet (``.parquet``,
``.pq``; needs pyarrow). JSON Lines, CSV and TSV may be compressed (``.gz``,
``.zst``). CSV/TSV fields are strings unless the source is given column types
(`batchpilot.cli.csv_types`).

A file is read once, by `RecordSource.located`, which streams ``(line_number,
offset, record)`` from any `Position` a previous run reached: a byte offset of the
(decompressed) text, or a row number of a Parquet file, whose reading starts at
the row group holding it. Each line is checked as it is read: a malformed one
stops the stream with a `RecordsFormatError` naming the file and the line (the
run then ends with nothing written). There is no pass over the whole input
before work: `RecordSource.total` is what metadata alone says (a Parquet file's
row count; None for text).

A result that is a dict becomes one row; any other value becomes ``{"result": value}``
(`to_row`); numpy values become plain numbers and lists.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from .._core.compression import FILE_FORMATS, TEXT_FORMATS, codec_of, open_decompressed, strip_codec
from .._core.csv_types import ColumnTypes, converter, widen

__all__ = [
    "CSV_FIELD_LIMIT",
    "INPUT_FORMATS",
    "STDIO",
    "Position",
    "RecordSource",
    "RecordsFormatError",
    "format_of",
    "import_parquet",
    "plain",
    "to_row",
]

#: File suffix -> format, for inputs.
INPUT_FORMATS = FILE_FORMATS
#: The path that means standard input or output (JSON Lines).
STDIO = "-"
_DELIMITERS = {"csv": ",", "tsv": "\t"}
#: The largest CSV/TSV field read (the csv module's default, 128 KiB, refuses valid files);
#: the largest value ``csv.field_size_limit`` accepts on every platform (a C long).
CSV_FIELD_LIMIT = 2**31 - 1


class RecordsFormatError(ValueError):
    """A file that cannot be read or written as records; the message names the file and lines."""


def format_of(path: Path, formats: dict[str, str], role: str) -> tuple[str, str | None]:
    """``(format, codec)`` of ``path`` judged by its suffixes, or a RecordsFormatError.

    A compression suffix (``.gz``, ``.zst``) is allowed after a text format only.
    """
    codec = codec_of(path)
    suffix = strip_codec(path).suffix.lower()
    if suffix not in formats:
        known = ", ".join(sorted(formats))
        raise RecordsFormatError(
            f"cannot tell the {role} format of {path} from its suffix {suffix or '(none)'!r}; "
            f"use one of {known}, or {STDIO} for JSON Lines on standard {role}"
        )
    kind = formats[suffix]
    if codec is not None and kind not in TEXT_FORMATS:
        raise RecordsFormatError(f"{path}: only JSON Lines, CSV and TSV can be compressed")
    return kind, codec


class Position(NamedTuple):
    """Where a stream of records stands: after ``line``, at ``offset``.

    ``offset`` is a byte offset into the decompressed text, or for Parquet the
    number of rows read (then ``line`` is the same number). A tuple: one is made
    per record.
    """

    line: int = 0
    offset: int = 0


class RecordSource:
    """A file of records, read lazily.

    Args:
        path: The input file (its suffixes select the format), or ``-`` for JSON
            Lines on standard input.
        types: CSV/TSV column types; columns not in it are strings.
        fixed: Columns whose type is given, not inferred: a field that does not fit
            is a malformed line instead of a value of a wider type.

    Raises:
        RecordsFormatError: The file does not exist, is a directory, or its suffix is unknown.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        types: ColumnTypes | None = None,
        fixed: frozenset[str] = frozenset(),
    ) -> None:
        self.path = Path(path)
        self.is_stdin = os.fspath(path) == STDIO
        self.types: ColumnTypes = dict(types or {})
        self.fixed = fixed
        if self.is_stdin:
            self.format, self.codec = "jsonl", None
            return
        if self.path.is_dir():
            raise RecordsFormatError(f"input is a directory, not a file: {self.path}")
        self.format, self.codec = format_of(self.path, INPUT_FORMATS, "input")
        if not self.path.is_file():
            raise RecordsFormatError(f"input file not found: {self.path}")

    def __repr__(self) -> str:
        return f"RecordSource({str(self.path)!r}, format={self.format!r}, codec={self.codec!r})"

    @property
    def delimiter(self) -> str:
        """The field separator of a CSV (``,``) or TSV (tab) input."""
        return _DELIMITERS[self.format]

    def open_bytes(self) -> IO[bytes]:
        """The input as a decompressed byte stream, from the start."""
        return open_decompressed(self.path, self.codec)

    def header(self) -> list[str]:
        """The column names of a CSV/TSV input ([] for an empty file)."""
        for _, _, row in self._csv_rows(Position()):
            return row
        return []

    def total(self) -> int | None:
        """The number of records, where metadata alone says it: a Parquet file's row
        count; None for text (counting its lines would read it all).

        Raises:
            RecordsFormatError: A file pyarrow cannot read as Parquet.
        """
        if self.format != "parquet":
            return None
        with contextlib.closing(self._parquet_file()) as file:
            return int(file.metadata.num_rows)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(line_number, record)`` for every record, in file order.

        For Parquet the "line number" is the 1-based row number.
        """
        return ((line, record) for line, _, record in self.located(Position()))

    def located(self, start: Position) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Yield ``(line_number, offset_after, record)`` for the records after ``start``.

        ``Position(line_number, offset_after)`` is where the stream stands after the record.
        """
        if self.format == "jsonl":
            for line, end, text in self._jsonl_lines(start):
                yield line, end, self._jsonl_record(line, text)
        elif self.format in _DELIMITERS:
            yield from self._csv_records(start)
        else:
            for number, record in self._parquet_rows(start.offset):
                yield number, number, record

    def _where(self) -> str:
        return "standard input" if self.is_stdin else str(self.path)

    def _malformed(self, line: int, problem: str) -> RecordsFormatError:
        return RecordsFormatError(f"{self._where()}: line {line}: {problem}")

    def _jsonl_record(self, line: int, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError
            raise self._malformed(line, f"invalid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise self._malformed(line, f"expected a JSON object, got {type(value).__name__}")
        return value

    def _csv_records(self, start: Position) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Typed records of a CSV/TSV input; a row that does not fit its header, or a field
        that does not fit a fixed type, is malformed. A field that does not fit an
        inferred type keeps the narrowest wider value (`widen`: int, float, str)."""
        header = self.header()
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise self._malformed(1, f"the header repeats the column names {duplicates}")
        typed = [(name, fn) for name in header if (fn := converter(self.types.get(name, "str")))]
        rows = self._csv_rows(start)
        if start.offset == 0:
            next(rows, None)  # the header row
        for line, end, row in rows:
            if len(row) != len(header):
                raise self._malformed(line, f"{len(row)} fields, the header has {len(header)}")
            record = dict(zip(header, row, strict=True))
            for name, convert in typed:
                try:
                    record[name] = convert(record[name])
                except ValueError:
                    record[name] = self._misfit(line, name, record[name])
            yield line, end, record

    def _misfit(self, line: int, name: str, text: str) -> Any:
        """A field that does not fit its column's type: malformed if the type was given,
        else its value as the narrowest wider type."""
        kind = self.types[name]
        if name in self.fixed:
            raise self._malformed(line, f"column {name!r}: {text!r} is not {kind}")
        convert = converter(widen(kind, text))
        return text if convert is None else convert(text)

    def _text_lines(self, start: Position) -> Iterator[tuple[int, int, str]]:
        """``(number, end_offset, text)`` of the lines after ``start``, decoded as UTF-8.

        Line numbers count from 1; a leading byte order mark is dropped.
        """
        with contextlib.ExitStack() as stack:
            if self.is_stdin:
                file: IO[bytes] = sys.stdin.buffer
            else:
                file = stack.enter_context(self.open_bytes())
                _skip(file, start.offset, compressed=self.codec is not None)
            offset = start.offset
            for number, raw in enumerate(file, start=start.line + 1):
                offset += len(raw)
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise self._malformed(number, f"not UTF-8 text ({exc.reason})") from None
                yield number, offset, text

    def _jsonl_lines(self, start: Position) -> Iterator[tuple[int, int, str]]:
        return (item for item in self._text_lines(start) if item[2].strip())

    def _csv_rows(self, start: Position) -> Iterator[tuple[int, int, list[str]]]:
        """Non-empty rows after ``start`` with the line each ends on and the offset after it.

        The csv reader asks for one line at a time, so when it yields a row, the
        lines handed to it so far end exactly where that row ends.
        """
        ends = [start.line, start.offset]

        def feed() -> Iterator[str]:
            for number, end, text in self._text_lines(start):
                ends[0], ends[1] = number, end
                yield text

        csv.field_size_limit(CSV_FIELD_LIMIT)  # process-wide; idempotent
        reader = csv.reader(feed(), delimiter=self.delimiter)
        try:
            for row in reader:
                if row:
                    yield ends[0], ends[1], row
        except csv.Error as exc:
            raise self._malformed(ends[0], str(exc)) from None

    def _parquet_file(self) -> Any:
        parquet = import_parquet()
        try:
            return parquet.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise RecordsFormatError(f"{self.path}: not a readable Parquet file: {exc}") from None

    def _parquet_rows(self, skip: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(row_number, record)`` after the first ``skip`` rows, read from their row group."""
        with contextlib.closing(self._parquet_file()) as file:
            first_group, number = 0, 0
            meta = file.metadata
            while first_group < meta.num_row_groups and (
                number + meta.row_group(first_group).num_rows <= skip
            ):
                number += meta.row_group(first_group).num_rows
                first_group += 1
            groups = range(first_group, meta.num_row_groups)
            for batch in file.iter_batches(row_groups=groups):
                for record in batch.to_pylist():
                    number += 1
                    if number > skip:
                        yield number, record


def _skip(file: IO[bytes], count: int, compressed: bool) -> None:
    """Move ``file`` ``count`` bytes on: a seek, or for a compressed stream, reading them."""
    if not compressed:
        file.seek(count)
        return
    while count > 0:
        block = file.read(min(count, 1 << 20))
        if not block:
            return
        count -= len(block)


def import_parquet() -> Any:
    """``pyarrow.parquet``, or a RecordsFormatError saying which extra installs it."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:  # pragma: no cover - pyarrow is installed in the dev venv
        raise RecordsFormatError("Parquet needs pyarrow: pip install pyarrow") from None
    return parquet


def to_row(value: Any) -> dict[str, Any]:
    """The output row for one result: the dict itself, or ``{"result": value}``."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return {"result": plain(value)}


_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into the Python values every format stores."""
    if type(value) in _SCALARS:
        return value
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value
