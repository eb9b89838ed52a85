"""Rows of a run of whole lines of JSON Lines or CSV/TSV, with their lines and errors.

Each run is parsed by pyarrow first (`pyarrow.json`, `pyarrow.csv`), which costs
no Python per row. pyarrow stops at the first malformed row and does not say
where each row is, so the run is trusted only when it parsed and its row count
equals its count of non-blank lines (then row i is non-blank line i); any other
run is parsed again line by line (`json`/``orjson``, the `csv` module with the
CLI's value conversions), which reports each malformed row on its own line.
JSON Lines in the ``"records"`` format is always parsed line by line, so every
JSON value keeps its Python type.

A CSV/TSV file's header is its first row; the column types are given (``schema``)
or inferred from the file's first 1 MiB, as the CLI does, so every partition of a
file gets the same types. A later value that does not fit its inferred type is a
malformed row (pass a schema to type the column wider).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .._core.csv_types import ColumnTypes, converter, infer_types, resolve_types
from .._core.formats import to_arrow
from .lines import nonblank

__all__ = ["CsvLayout", "Parsed", "csv_layout", "parse_csv", "parse_jsonl"]

_HEAD_BYTES = 1 << 20
_ARROW_TYPES = {"int": "int64", "float": "float64", "bool": "bool_", "str": "string"}
_TRUE = ["true", "True", "TRUE", "1"]
_FALSE = ["false", "False", "FALSE", "0"]
csv.field_size_limit(2**31 - 1)  # the csv module refuses fields over 128 KiB by default


@dataclass(frozen=True)
class Parsed:
    """A run's rows: ``data`` (an Arrow table, or a list of dicts when ``records``)."""

    data: Any
    lines: np.ndarray  # each row's 0-based line in the run
    errors: list[tuple[int, str]]  # (0-based line in the run, message)


@dataclass(frozen=True)
class CsvLayout:
    """What every partition of one CSV/TSV file shares: its header and column types."""

    header: list[str]
    types: ColumnTypes
    header_bytes: int  # where the first data line starts
    header_lines: int

    def arrow_schema(self) -> Any:
        import pyarrow as pa

        return pa.schema(
            [(name, getattr(pa, _ARROW_TYPES[self.types[name]])()) for name in self.header]
        )


def csv_layout(stream: IO[bytes], delimiter: str, schema: ColumnTypes) -> CsvLayout:
    """Read the header of a CSV/TSV stream (at its start) and infer its column types."""
    head = stream.read(_HEAD_BYTES)
    inferred = infer_types(io.BytesIO(head), delimiter)
    lines = io.BytesIO(head)
    consumed, count = 0, 0

    def feed() -> Iterator[str]:
        nonlocal consumed, count
        for raw in lines:
            consumed, count = consumed + len(raw), count + 1
            yield raw.decode("utf-8-sig" if count == 1 else "utf-8")

    header = next((row for row in csv.reader(feed(), delimiter=delimiter) if row), [])
    if header and not head[:consumed].endswith(b"\n") and len(head) == _HEAD_BYTES:
        raise ValueError("a CSV header longer than 1 MiB")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"the header repeats the column names {duplicates}")
    return CsvLayout(header, resolve_types(header, schema, inferred), consumed, count)


def parse_jsonl(text: bytes, records: bool) -> Parsed:
    """The JSON objects of ``text``: dicts when ``records``, else an Arrow table."""
    if not records:
        lines = nonblank(text)
        try:
            import pyarrow as pa
            import pyarrow.json as pajson

            options = pajson.ReadOptions(block_size=max(len(text), 1) + 1)
            table = pajson.read_json(pa.BufferReader(text), read_options=options)
        except Exception:  # pyarrow raises several types for malformed JSON
            table = None
        if table is not None and table.num_rows == len(lines):
            return Parsed(table, lines, [])
    rows, numbers, errors = [], [], []
    for number, line in enumerate(text.split(b"\n")):
        if not line.strip():
            continue
        try:
            value = _loads(line)
        except ValueError as exc:  # JSONDecodeError, orjson's, or UnicodeDecodeError
            errors.append((number, f"invalid JSON ({exc})"))
            continue
        if not isinstance(value, dict):
            errors.append((number, f"expected a JSON object, got {type(value).__name__}"))
            continue
        rows.append(value)
        numbers.append(number)
    return Parsed(rows if records else to_arrow(rows), np.array(numbers, np.int64), errors)


def parse_csv(text: bytes, layout: CsvLayout, delimiter: str, records: bool) -> Parsed:
    """The rows of ``text`` (no header): dicts when ``records``, else an Arrow table."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    lines = nonblank(text)
    schema = layout.arrow_schema()
    try:
        table = pacsv.read_csv(
            pa.BufferReader(text),
            read_options=pacsv.ReadOptions(column_names=layout.header, block_size=len(text) + 1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=schema,
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                true_values=_TRUE,
                false_values=_FALSE,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = None
    if table is not None and table.num_rows == len(lines):
        return Parsed(table.to_pylist() if records else table, lines, [])
    rows, numbers, errors = _csv_rows(text, layout, delimiter)
    return Parsed(rows if records else pa.Table.from_pylist(rows, schema), numbers, errors)


def _csv_rows(
    text: bytes, layout: CsvLayout, delimiter: str
) -> tuple[list[dict[str, Any]], np.ndarray, list[tuple[int, str]]]:
    """Parse ``text`` with the csv module: each row where it starts, or why it is malformed."""
    header = layout.header
    checks = [
        (name, fn, layout.types[name]) for name in header if (fn := converter(layout.types[name]))
    ]
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    errors: list[tuple[int, str]] = []
    read = 0  # lines handed to the csv reader so far

    def feed() -> Iterator[str]:
        nonlocal read
        for number, raw in enumerate(io.BytesIO(text)):
            read = number + 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.append((number, f"not UTF-8 text ({exc.reason})"))

    reader = csv.reader(feed(), delimiter=delimiter)
    start = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append((start, str(exc)))
            start = read
            continue
        if row:
            problem = _csv_problem(row, header, checks)
            if isinstance(problem, str):
                errors.append((start, problem))
            else:
                rows.append(problem)
                numbers.append(start)
        start = read
    errors.sort()
    return rows, np.array(numbers, np.int64), errors


def _csv_problem(
    row: Sequence[str], header: list[str], checks: list[tuple[str, Callable[[str], Any], str]]
) -> dict[str, Any] | str:
    """The record of a CSV row, or what is wrong with it."""
    if len(row) != len(header):
        return f"{len(row)} fields, the header has {len(header)}"
    record: dict[str, Any] = dict(zip(header, row, strict=True))
    for name, convert, kind in checks:
        try:
            record[name] = convert(record[name])
        except ValueError:
            return f"column {name!r}: {record[name]!r} is not {kind}"
    return record


def _loads_json(line: bytes) -> Any:
    return json.loads(line)


def _make_loads() -> Callable[[bytes], Any]:
    """orjson's loads where installed, with `json` as the judge of what orjson refuses
    (NaN, integers past 64 bits), so values are exactly what `json` reads."""
    try:
        import orjson
    except ImportError:
        return _loads_json

    def loads(line: bytes) -> Any:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            return json.loads(line)

    return loads


_loads = _make_loads()
