"""Reading and writing records (dicts) in the file formats the CLI accepts.

Inputs: JSON Lines (``.jsonl``, ``.ndjson``), CSV (``.csv``, header row first) and
Parquet (``.parquet``, ``.pq``; needs pyarrow). Outputs: JSON Lines, SQLite
(``.sqlite``, ``.sqlite3``, ``.db``; one table) and Parquet.

An input is read twice: `RecordSource.scan` validates every line and counts the
records (so a malformed line is reported with its line number before any work is
done, and a progress bar knows its total), then `RecordSource.records` streams
``(line_number, record)`` pairs without holding the file in memory.

An output is written to ``<path>.partial`` and renamed over ``<path>`` only by
`RecordSink.commit`, so a killed run never leaves a half-written output behind.
A result that is a dict becomes one row; any other value becomes ``{"result": value}``
(`to_row`); numpy values become plain numbers and lists.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "RecordSink",
    "RecordSource",
    "RecordsFormatError",
    "format_of",
    "open_sink",
    "to_row",
]

#: File suffix -> format, for inputs and for outputs.
INPUT_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
OUTPUT_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
    ".parquet": "parquet",
    ".pq": "parquet",
}

#: How many malformed lines an error message lists before it says "and N more".
_LINES_SHOWN = 10
#: Rows buffered before a Parquet row group is written (also what its schema is inferred from).
_PARQUET_ROWS = 65_536


class RecordsFormatError(ValueError):
    """A file that cannot be read or written as records; the message names the file and lines."""


def format_of(path: Path, formats: dict[str, str], role: str) -> str:
    """The format of ``path`` judged by its suffix, or a RecordsFormatError naming the choices."""
    suffix = path.suffix.lower()
    if suffix not in formats:
        known = ", ".join(sorted(formats))
        raise RecordsFormatError(
            f"cannot tell the {role} format of {path} from its suffix {suffix or '(none)'!r}; "
            f"use one of {known}"
        )
    return formats[suffix]


class RecordSource:
    """A file of records, read lazily.

    Args:
        path: The input file; its suffix selects the format.

    Raises:
        RecordsFormatError: The file does not exist or its suffix is unknown.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.format = format_of(self.path, INPUT_FORMATS, "input")
        if not self.path.is_file():
            raise RecordsFormatError(f"input file not found: {self.path}")

    def __repr__(self) -> str:
        return f"RecordSource({str(self.path)!r}, format={self.format!r})"

    def scan(self) -> int:
        """Validate the whole file and return its number of records.

        Raises:
            RecordsFormatError: Some lines are malformed; the message lists their numbers.
        """
        count = 0
        bad: list[tuple[int, str]] = []
        for line, problem in self._validate():
            if problem is None:
                count += 1
            else:
                bad.append((line, problem))
        if bad:
            raise RecordsFormatError(_describe_bad_lines(self.path, bad))
        return count

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(line_number, record)`` for every record, in file order.

        For Parquet the "line number" is the 1-based row number.
        """
        if self.format == "jsonl":
            for line, text in self._jsonl_lines():
                yield line, json.loads(text)
        elif self.format == "csv":
            header: list[str] = []
            for line, row in self._csv_rows():
                if header:
                    yield line, dict(zip(header, row, strict=True))
                else:
                    header = row
        else:
            yield from self._parquet_rows()

    def _validate(self) -> Iterator[tuple[int, str | None]]:
        if self.format == "jsonl":
            for line, text in self._jsonl_lines():
                yield line, _jsonl_problem(text)
        elif self.format == "csv":
            header: list[str] | None = None
            for line, row in self._csv_rows():
                if header is None:
                    header = row
                    duplicates = sorted({name for name in row if row.count(name) > 1})
                    if duplicates:
                        yield line, f"the header repeats the column names {duplicates}"
                elif len(row) != len(header):
                    yield line, f"{len(row)} fields, the header has {len(header)}"
                else:
                    yield line, None
        else:
            for line, _ in self._parquet_rows():
                yield line, None

    def _text_lines(self) -> Iterator[tuple[int, str]]:
        """The file's lines, numbered from 1, decoded as UTF-8 (a leading BOM dropped)."""
        with self.path.open("rb") as file:
            for number, raw in enumerate(file, start=1):
                try:
                    yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise RecordsFormatError(
                        f"{self.path}: line {number}: not UTF-8 text ({exc.reason})"
                    ) from None

    def _jsonl_lines(self) -> Iterator[tuple[int, str]]:
        return ((number, text) for number, text in self._text_lines() if text.strip())

    def _csv_rows(self) -> Iterator[tuple[int, list[str]]]:
        """Non-empty rows, the header first, with the line number each row ends on."""
        reader = csv.reader(text for _, text in self._text_lines())
        try:
            for row in reader:
                if row:
                    yield reader.line_num, row
        except csv.Error as exc:
            raise RecordsFormatError(f"{self.path}: line {reader.line_num}: {exc}") from None

    def _parquet_rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        parquet = _import_parquet()
        try:
            file = parquet.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise RecordsFormatError(f"{self.path}: not a readable Parquet file: {exc}") from None
        number = 0
        with contextlib.closing(file):
            for batch in file.iter_batches():
                for record in batch.to_pylist():
                    number += 1
                    yield number, record


def _jsonl_problem(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError
        return f"invalid JSON ({exc})"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return None


def _describe_bad_lines(path: Path, bad: Sequence[tuple[int, str]]) -> str:
    shown = "; ".join(f"line {line}: {problem}" for line, problem in bad[:_LINES_SHOWN])
    more = f"; and {len(bad) - _LINES_SHOWN} more" if len(bad) > _LINES_SHOWN else ""
    noun = "line" if len(bad) == 1 else "lines"
    return f"{path}: {len(bad)} malformed {noun}: {shown}{more}"


def _import_parquet() -> Any:
    try:
        import pyarrow.parquet as parquet
    except ImportError:  # pragma: no cover - pyarrow is installed in the dev venv
        raise RecordsFormatError("Parquet needs pyarrow: pip install 'batchpilot[io]'") from None
    return parquet


def to_row(value: Any) -> dict[str, Any]:
    """The output row for one result: the dict itself, or ``{"result": value}``."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return {"result": _plain(value)}


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_default(value: Any) -> Any:
    """numpy values as plain numbers and lists; anything else JSON cannot hold as str()."""
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return str(value)


#: One encoder for every JSON Lines row.
_JSON = json.JSONEncoder(default=_json_default)


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into the Python values every format stores."""
    if type(value) in _SCALARS:
        return value
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


class RecordSink(Protocol):
    """Where results go: ``write`` batches of them, then ``commit`` or ``abort``."""

    path: Path

    def write(self, results: Sequence[Any]) -> None:
        """Append one row per result (see `to_row`) to the still partial output."""

    def commit(self) -> None:
        """Finish the output and move it into place."""

    def abort(self) -> None:
        """Delete the partial output."""


def open_sink(path: str | os.PathLike[str], table: str = "results") -> RecordSink:
    """Open a sink for ``path``; its suffix selects JSON Lines, SQLite or Parquet.

    Args:
        path: The output file. It is replaced, not appended to, when the sink commits.
        table: The table name for SQLite outputs.

    Raises:
        RecordsFormatError: Unknown suffix or missing output directory.
    """
    target = Path(path)
    kind = format_of(target, OUTPUT_FORMATS, "output")
    if not target.parent.is_dir():
        raise RecordsFormatError(f"output directory not found: {target.parent}")
    if kind == "jsonl":
        return _JsonlSink(target)
    if kind == "sqlite":
        return _SqliteSink(target, table)
    return _ParquetSink(target)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class _JsonlSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = _partial(path)
        self._file = self._partial.open("w", encoding="utf-8")

    def __repr__(self) -> str:
        return f"_JsonlSink({str(self.path)!r}, closed={self._file.closed})"

    def write(self, results: Sequence[Any]) -> None:
        encode = _JSON.encode
        try:  # the encoder itself handles dicts, tuples and numpy values: no to_row copy
            text = "".join(encode(v if type(v) is dict else {"result": v}) + "\n" for v in results)
        except TypeError:  # e.g. a key JSON cannot hold: to_row makes every key a str
            text = "".join(encode(to_row(v)) + "\n" for v in results)
        self._file.write(text)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


class _SqliteSink:
    """Rows go to one table; its columns are the union of the rows' keys, in order seen."""

    def __init__(self, path: Path, table: str) -> None:
        self.path = path
        self.table = table
        self._partial = _partial(path)
        self._partial.unlink(missing_ok=True)
        self._db = sqlite3.connect(self._partial)
        self._columns: list[str] = []

    def __repr__(self) -> str:
        return f"_SqliteSink({str(self.path)!r}, table={self.table!r}, columns={self._columns})"

    def write(self, results: Sequence[Any]) -> None:
        if not results:
            return
        rows = [to_row(value) for value in results]
        self._add_columns(rows)
        names = ", ".join(_quote(name) for name in self._columns)
        marks = ", ".join("?" for _ in self._columns)
        values = [tuple(_sql_value(row.get(name)) for name in self._columns) for row in rows]
        with self._db:
            self._db.executemany(
                f"INSERT INTO {_quote(self.table)} ({names}) VALUES ({marks})", values
            )

    def _add_columns(self, rows: Sequence[dict[str, Any]]) -> None:
        known = set(self._columns)
        new: list[str] = []
        for row in rows:
            for key in row:
                if key not in known:
                    known.add(key)
                    new.append(key)
        if not new:
            return
        with self._db:
            if not self._columns:
                columns = ", ".join(_quote(name) for name in new)
                self._db.execute(f"CREATE TABLE {_quote(self.table)} ({columns})")
            else:
                for name in new:
                    self._db.execute(f"ALTER TABLE {_quote(self.table)} ADD COLUMN {_quote(name)}")
        self._columns.extend(new)

    def commit(self) -> None:
        if not self._columns:
            with self._db:
                self._db.execute(f"CREATE TABLE {_quote(self.table)} (result)")
        self._db.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._db.close()
        self._partial.unlink(missing_ok=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return _JSON.encode(value)
    if value is None or isinstance(value, (int, str, bytes)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return str(value)


class _ParquetSink:
    """Rows are buffered into row groups; the first group fixes the schema."""

    def __init__(self, path: Path) -> None:
        self._parquet = _import_parquet()
        self.path = path
        self._partial = _partial(path)
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None

    def __repr__(self) -> str:
        return f"_ParquetSink({str(self.path)!r}, buffered={len(self._rows)})"

    def write(self, results: Sequence[Any]) -> None:
        self._rows.extend(to_row(value) for value in results)
        if len(self._rows) >= _PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow

        if not self._rows:
            return
        schema = None if self._writer is None else self._writer.schema
        if schema is not None:
            extra = {key for row in self._rows for key in row} - set(schema.names)
            if extra:
                raise RecordsFormatError(
                    f"{self.path}: results gained columns {sorted(extra)} after the Parquet "
                    f"schema was fixed to {schema.names}; write JSON Lines or SQLite instead"
                )
        try:
            table = pyarrow.Table.from_pylist(self._rows, schema=schema)
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as exc:
            raise RecordsFormatError(f"{self.path}: results do not fit one schema: {exc}") from None
        if self._writer is None:
            self._writer = self._parquet.ParquetWriter(self._partial, table.schema)
        self._writer.write_table(table)
        self._rows.clear()

    def commit(self) -> None:
        import pyarrow

        self._flush()
        if self._writer is None:
            self._writer = self._parquet.ParquetWriter(self._partial, pyarrow.schema([]))
        self._writer.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._rows.clear()
        if self._writer is not None:
            self._writer.close()
        self._partial.unlink(missing_ok=True)
