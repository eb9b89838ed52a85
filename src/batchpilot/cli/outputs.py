"""Where results go: output targets, the segments a run writes, and the final step.

Targets: JSON Lines (``.jsonl``, ``.ndjson``, or ``-`` for standard output), CSV
(``.csv``) and TSV (``.tsv``), each optionally compressed (``.gz``, ``.zst``);
a table of an SQLite database (``.sqlite``, ``.sqlite3``, ``.db``); a Parquet
file (``.parquet``, ``.pq``); or a table of a Parquet dataset: a folder (an
existing one, or a path ending in ``/``) whose sub-folder ``TABLE/`` holds the
table's ``part-*.parquet`` files.

A run writes its rows into segments in the job's parts folder, never into the
target: text as self-contained (compressed) pieces appended to one file per
run, SQLite rows into one staging database, Parquet rows as Arrow streams
appended to one file per run (written as Parquet, in row groups of 65,536 rows,
at the end). Every write is durable, so the job commits after each chunk. A
segment can be cut back to what the job committed (`trim`). `finish` then moves
the rows into the target in one step, honouring ``--if-exists``:

- ``fail`` (default): refuse a target that exists (a file; a table of a
  database or dataset: other tables are no obstacle).
- ``append``: add the rows to the target (a CSV/TSV header must match).
- ``replace``: replace the target; in a database or dataset only the named
  table, never anything else in it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import shutil
import sqlite3
import string
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .compression import compress, open_decompressed, strip_codec
from .records_io import (
    CSV_FIELD_LIMIT,
    STDIO,
    RecordsFormatError,
    format_of,
    import_parquet,
    to_row,
)

__all__ = [
    "IF_EXISTS",
    "OUTPUT_FORMATS",
    "Segment",
    "Target",
    "finish",
    "jsonl_text",
    "open_segment",
    "output_target",
    "trim",
]

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
IF_EXISTS = ("fail", "append", "replace")
_DELIMITERS = {"csv": ",", "tsv": "\t"}
#: Rows per row group of a finished Parquet output (the staged writes, one per chunk, merge).
_ROW_GROUP = 65_536


def _json_default(value: Any) -> Any:
    """numpy values as plain numbers and lists; anything else JSON cannot hold as str()."""
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return str(value)


#: One encoder for every JSON value written.
_JSON = json.JSONEncoder(default=_json_default)


def jsonl_text(results: Sequence[Any]) -> str:
    """JSON Lines text (one line per result, see `to_row`)."""
    encode = _JSON.encode
    try:  # the encoder itself handles dicts, tuples and numpy values: no to_row copy
        return "".join(encode(v if type(v) is dict else {"result": v}) + "\n" for v in results)
    except TypeError:  # e.g. a key JSON cannot hold: to_row makes every key a str
        return "".join(encode(to_row(v)) + "\n" for v in results)


@dataclass(frozen=True)
class Target:
    """An output: its kind (``jsonl``, ``csv``, ``tsv``, ``sqlite``, ``parquet``,
    ``dataset`` or ``stdout``), path, compression codec and table."""

    kind: str
    path: Path
    codec: str | None = None
    table: str = "results"

    def __str__(self) -> str:
        if self.kind == "stdout":
            return "standard output"
        if self.kind in ("sqlite", "dataset"):
            return f"{self.path} (table {self.table})"
        return str(self.path)

    @property
    def table_dir(self) -> Path:
        """A dataset table's folder."""
        return self.path / self.table

    def files(self) -> list[Path]:
        """The paths `finish` writes outside the job's parts folder: the output itself
        and its temporary files."""
        if self.kind == "stdout":
            return []
        if self.kind == "dataset":
            return [self.path, self.table_dir]
        temporary = ("-journal", "-wal", "-shm") if self.kind == "sqlite" else (".partial",)
        return [self.path, *(self.path.with_name(self.path.name + end) for end in temporary)]

    def exists(self) -> bool:
        """Whether there is something ``--if-exists`` has to decide about."""
        if self.kind == "stdout":
            return False
        if self.kind == "dataset":
            return self.table_dir.is_dir() and any(self.table_dir.glob("*.parquet"))
        if self.kind == "sqlite":
            if not self.path.exists():
                return False
            with contextlib.closing(_connect_target(self.path)) as db:
                try:
                    return _has_table(db, "main", self.table)
                except RecordsFormatError as exc:
                    raise RecordsFormatError(f"{self.path}: {exc}") from None
        return self.path.exists()

    def check(self, if_exists: str) -> None:
        """Refuse an existing target under ``--if-exists fail``, and under any mode an
        SQLite output that is not a database."""
        if self.exists() and if_exists == "fail":
            raise RecordsFormatError(
                f"{self} exists; pass --if-exists append to add to it or --if-exists replace "
                "to replace it (nothing else in the file is touched)"
            )


def output_target(path: str | os.PathLike[str], table: str = "results") -> Target:
    """The target ``path`` names; see the module docstring.

    Raises:
        RecordsFormatError: Unknown suffix, missing or read-only output folder, a folder named
            like a file, or a dataset ``table`` that is not one folder name.
    """
    text = os.fspath(path)
    if text == STDIO:
        return Target("stdout", Path(STDIO))
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
    return Target(kind, target, codec, table)


class Segment(Protocol):
    """The rows of one run, written where the job's checkpoint can find them."""

    #: The output columns, once the first rows fixed them (CSV/TSV only).
    columns: list[str] | None

    def write(self, results: Sequence[Any]) -> bool:
        """Add one row per result (see `to_row`); True when all written so far is durable."""

    def flush(self) -> None:
        """Make every row written durable."""

    def size(self) -> int:
        """The segment's size to commit: bytes, staged rows or files."""

    def close(self) -> None:
        """Release the segment's file; idempotent."""


def open_segment(target: Target, parts: Path, number: int, columns: list[str] | None) -> Segment:
    """A new segment ``number`` of ``target`` in ``parts`` (created if needed)."""
    if target.kind == "stdout":
        return _StdoutSegment()
    parts.mkdir(exist_ok=True)
    if target.kind == "sqlite":
        return _SqliteSegment(parts / "rows.sqlite")
    if target.kind in ("parquet", "dataset"):
        return _ParquetSegment(parts, number)
    return _TextSegment(parts / f"{number:05d}.part", target, columns)


def trim(target: Target, parts: Path, committed: dict[int, int]) -> None:
    """Cut every segment in ``parts`` back to its ``committed`` size; drop the others."""
    if not parts.is_dir():
        return
    if target.kind == "sqlite":
        staged = parts / "rows.sqlite"
        if staged.exists():
            with contextlib.closing(sqlite3.connect(staged)) as db, db:
                if _has_table(db, "main", "rows"):
                    db.execute(
                        "DELETE FROM rows WHERE rowid > ?", (max(committed.values(), default=0),)
                    )
        return
    for path in sorted(parts.iterdir()):
        if path.name in ("errors.jsonl", "rows.sqlite"):
            continue
        size = committed.get(int(path.stem))
        if size is None:
            path.unlink()
        else:
            with path.open("r+b") as file:
                file.truncate(size)


def finish(
    target: Target, parts: Path, committed: dict[int, int], columns: list[str] | None,
    if_exists: str,
) -> None:  # fmt: skip
    """Move the committed rows of every segment into ``target``, per ``if_exists``."""
    if target.kind == "stdout":
        return
    target.check(if_exists)
    if target.kind == "sqlite":
        _finish_sqlite(target, parts / "rows.sqlite", if_exists)
    elif target.kind in ("parquet", "dataset"):
        _finish_parquet(target, [_staged(parts, number) for number in sorted(committed)], if_exists)
    else:
        pieces = [parts / f"{number:05d}.part" for number in sorted(committed)]
        _finish_text(target, pieces, columns, if_exists)


# ---------------------------------------------------------------- text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _JSON.encode(value)
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


class _TextSegment:
    """JSON Lines or CSV/TSV text, appended as one compressed piece per write."""

    def __init__(self, path: Path, target: Target, columns: list[str] | None) -> None:
        self.path = path
        self._kind = target.kind
        self._codec = target.codec
        self.columns = columns
        self._file = path.open("ab")

    def __repr__(self) -> str:
        return f"_TextSegment({str(self.path)!r}, columns={self.columns})"

    def write(self, results: Sequence[Any]) -> bool:
        if not results:
            return True
        text = self._encode(results)
        self._file.write(compress(text.encode("utf-8"), self._codec))
        self._file.flush()
        return True

    def _encode(self, results: Sequence[Any]) -> str:
        if self._kind == "jsonl":
            return jsonl_text(results)
        rows = [to_row(value) for value in results]
        if self.columns is None:
            self.columns = list(dict.fromkeys(key for row in rows for key in row))
        known = set(self.columns)
        extra = {key for row in rows for key in row} - known
        if extra:
            raise RecordsFormatError(
                f"results gained columns {sorted(extra)} after the {self._kind.upper()} header "
                f"was fixed to {self.columns}; write JSON Lines, SQLite or Parquet instead"
            )
        return _csv_text(([_cell(row.get(name)) for name in self.columns] for row in rows),
                         _DELIMITERS[self._kind])  # fmt: skip

    def flush(self) -> None:
        self._file.flush()

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def _csv_text(rows: Iterable[Sequence[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _finish_text(
    target: Target, pieces: list[Path], columns: list[str] | None, if_exists: str
) -> None:
    append = if_exists == "append" and target.path.exists() and target.path.stat().st_size > 0
    header = b""
    if target.kind in _DELIMITERS:
        if append:
            _check_header(target, columns)
        elif columns is not None:
            header = compress(_csv_text([columns], _DELIMITERS[target.kind]).encode(), target.codec)
    if append:
        with target.path.open("ab") as out:
            _copy(pieces, out)
        return
    partial = target.files()[1]
    with partial.open("wb") as out:
        out.write(header)
        _copy(pieces, out)
    os.replace(partial, target.path)


def _check_header(target: Target, columns: list[str] | None) -> None:
    with open_decompressed(target.path, target.codec) as file:
        first = io.TextIOWrapper(file, encoding="utf-8-sig", newline="").readline()
    csv.field_size_limit(CSV_FIELD_LIMIT)
    existing = next(csv.reader([first], delimiter=_DELIMITERS[target.kind]), [])
    if columns is not None and existing != columns:
        raise RecordsFormatError(
            f"cannot append to {target.path}: its header is {existing}, the results have "
            f"columns {columns}"
        )


def _copy(pieces: Iterable[Path], out: Any) -> None:
    for piece in pieces:
        with piece.open("rb") as file:
            shutil.copyfileobj(file, out, 1 << 20)


class _StdoutSegment:
    """JSON Lines straight to standard output: nothing to commit or finish."""

    columns: list[str] | None = None

    def write(self, results: Sequence[Any]) -> bool:
        sys.stdout.write(jsonl_text(results))
        sys.stdout.flush()
        return True

    def flush(self) -> None:
        sys.stdout.flush()

    def size(self) -> int:
        return 0

    def close(self) -> None:
        sys.stdout.flush()


# ---------------------------------------------------------------- SQLite


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _fold(name: str) -> str:
    """``name`` as SQLite compares column names: ASCII letters without case."""
    return name.translate(_ASCII_LOWER)


def _check_case_clashes(names: Sequence[str]) -> None:
    """Refuse result keys that are one SQLite column (``Name`` and ``name``)."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(_fold(name), name)
        if other != name:
            raise RecordsFormatError(
                f"results have the keys {other!r} and {name!r}, which are one column in "
                "SQLite (column names ignore case); rename one of them in FUNC, or write "
                "JSON Lines or Parquet instead"
            )


def _sql_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return _JSON.encode(value)
    if value is None or isinstance(value, (int, str, bytes)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return str(value)


def _sql_type(value: Any) -> str:
    """The declared column type for a column whose first value is ``value``."""
    if isinstance(value, (bool, int)):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, bytes):
        return "BLOB"
    return "" if value is None else "TEXT"


def _connect_target(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise RecordsFormatError(f"cannot open {path} as an SQLite database: {exc}") from None


def _has_table(db: sqlite3.Connection, schema: str, table: str) -> bool:
    try:
        row = db.execute(
            f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise RecordsFormatError(f"not an SQLite database: {exc}") from None
    return row is not None


def _columns(db: sqlite3.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    rows = db.execute(f"PRAGMA {schema}.table_info({_quote(table)})").fetchall()
    return [(str(row[1]), str(row[2])) for row in rows]


class _SqliteSegment:
    """Rows staged in ``rows.sqlite`` (one table ``rows``, typed by first values)."""

    columns: list[str] | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._known = [name for name, _ in _columns(self._db, "main", "rows")]

    def __repr__(self) -> str:
        return f"_SqliteSegment({str(self.path)!r}, columns={self._known})"

    def write(self, results: Sequence[Any]) -> bool:
        if not results:
            return True
        rows = [to_row(value) for value in results]
        self._add_columns(rows)
        names = ", ".join(_quote(name) for name in self._known)
        marks = ", ".join("?" for _ in self._known)
        values = [tuple(_sql_value(row.get(name)) for name in self._known) for row in rows]
        with self._db:
            self._db.executemany(f"INSERT INTO rows ({names}) VALUES ({marks})", values)
        return True

    def _add_columns(self, rows: Sequence[dict[str, Any]]) -> None:
        known = set(self._known)
        new: dict[str, str] = {}
        for row in rows:
            for key, value in row.items():
                if key not in known and (key not in new or not new[key]):
                    new[key] = _sql_type(value)
        if not new:
            return
        _check_case_clashes([*self._known, *new])
        with self._db:
            if not self._known:
                columns = ", ".join(f"{_quote(name)} {kind}".strip() for name, kind in new.items())
                self._db.execute(f"CREATE TABLE rows ({columns})")
            else:
                for name, kind in new.items():
                    self._db.execute(f"ALTER TABLE rows ADD COLUMN {_quote(name)} {kind}")
        self._known.extend(new)

    def flush(self) -> None:
        """Every write is committed already."""

    def size(self) -> int:
        if not self._known:
            return 0
        return int(self._db.execute("SELECT coalesce(max(rowid), 0) FROM rows").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _finish_sqlite(target: Target, staged: Path, if_exists: str) -> None:
    table = _quote(target.table)
    with contextlib.closing(_connect_target(target.path)) as db:
        if staged.exists():
            db.execute("ATTACH DATABASE ? AS staged", (str(staged),))
        has_rows = staged.exists() and _has_table(db, "staged", "rows")
        new = _columns(db, "staged", "rows") if has_rows else []
        try:
            db.execute("BEGIN IMMEDIATE")
            exists = _has_table(db, "main", target.table)
            if exists and if_exists == "replace":
                db.execute(f"DROP TABLE main.{table}")
                exists = False
            if not exists:
                columns = new or [("result", "")]  # SQLite has no table without columns
                spec = ", ".join(f"{_quote(name)} {kind}".strip() for name, kind in columns)
                db.execute(f"CREATE TABLE main.{table} ({spec})")
            else:
                present = {_fold(name) for name, _ in _columns(db, "main", target.table)}
                for name, kind in new:
                    if _fold(name) not in present:
                        db.execute(f"ALTER TABLE main.{table} ADD COLUMN {_quote(name)} {kind}")
            if has_rows:
                names = ", ".join(_quote(name) for name, _ in new)
                db.execute(
                    f"INSERT INTO main.{table} ({names}) SELECT {names} FROM staged.rows "
                    "ORDER BY rowid"
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


# ---------------------------------------------------------------- Parquet


def _arrow_table(rows: Sequence[dict[str, Any]]) -> Any:
    """``rows`` as an Arrow table whose columns are every key of every row, in order of
    first appearance (a row without a key is null there)."""
    import pyarrow

    try:
        return pyarrow.Table.from_struct_array(pyarrow.array(rows))
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as exc:
        raise RecordsFormatError(f"results do not fit one Parquet schema: {exc}") from None


def _unify(schemas: Iterable[Any]) -> Any:
    """The one schema that holds every schema in ``schemas`` (None for none).

    Columns are the union; a column null so far takes the type of its values, and
    integers widen to floats. Types that cannot share a column are an error.
    """
    import pyarrow

    known = [schema for schema in schemas if schema is not None]
    if not known:
        return None
    try:
        return pyarrow.unify_schemas(known, promote_options="permissive")
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as exc:
        raise RecordsFormatError(f"results do not fit one Parquet schema: {exc}") from None


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with the columns and types of ``schema`` (missing columns null)."""
    import pyarrow

    columns = [
        table.column(field.name).cast(field.type)
        if field.name in table.column_names
        else pyarrow.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pyarrow.Table.from_arrays(columns, schema=schema)


def _staged(parts: Path, number: int) -> Path:
    """The file of the Parquet segment ``number`` in ``parts``."""
    return parts / f"{number:05d}.arrows"


def _staged_tables(source: Any) -> Iterator[Any]:
    """The tables of a staged segment, one per write, read from the memory map ``source``
    without copying."""
    import pyarrow.ipc

    size = source.size()
    while source.tell() < size:
        yield pyarrow.ipc.open_stream(source).read_all()


class _ParquetSegment:
    """Rows for a Parquet output, staged as Arrow: one self-contained IPC stream per
    write (one chunk), appended to ``NNNNN.arrows``.

    Each write is durable at once and costs no new file, so a run commits after
    every chunk, as for the other formats, and a resume (which cuts the file back
    to its committed size, see `trim`) redoes at most the chunks in flight. Each
    stream's schema is that of its rows; `_unify` checks at every write that they
    still fit one schema, which `finish` gives them all.
    """

    columns: list[str] | None = None

    def __init__(self, parts: Path, number: int) -> None:
        import pyarrow

        import_parquet()  # the final step needs it: refuse a missing pyarrow now
        self.path = _staged(parts, number)
        schemas: list[Any] = []
        for path in sorted(parts.glob("*.arrows")):
            with pyarrow.memory_map(str(path)) as source:
                schemas.extend(table.schema for table in _staged_tables(source))
        self._schema = _unify(schemas)
        self._file = self.path.open("ab")

    def __repr__(self) -> str:
        return f"_ParquetSegment({str(self.path)!r})"

    def write(self, results: Sequence[Any]) -> bool:
        import pyarrow.ipc

        if not results:
            return True
        table = _arrow_table([to_row(value) for value in results])
        self._schema = _unify([self._schema, table.schema])
        sink = pyarrow.BufferOutputStream()
        with pyarrow.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table)
        self._file.write(sink.getvalue())
        self._file.flush()
        return True

    def flush(self) -> None:
        self._file.flush()

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def _parquet_batches(path: Path) -> Iterator[Any]:
    """The rows of the Parquet file ``path`` as tables of at most `_ROW_GROUP` rows."""
    import pyarrow

    with contextlib.closing(import_parquet().ParquetFile(path)) as file:
        for batch in file.iter_batches(batch_size=_ROW_GROUP):
            yield pyarrow.Table.from_batches([batch])


def _write_parquet(path: Path, existing: Path | None, staged: Sequence[Path]) -> None:
    """Write the rows of the Parquet file ``existing`` (if any), then those of the
    ``staged`` segments, into one new Parquet file at ``path`` (via a partial file).

    The schema is the one that holds them all (`_unify`); the rows go in row
    groups of `_ROW_GROUP`, however small the staged writes were.
    """
    import pyarrow

    parquet = import_parquet()
    partial = path.with_name(path.name + ".partial")
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(pyarrow.memory_map(str(file))) for file in staged]
        pieces = [table for source in sources for table in _staged_tables(source)]
        schemas = [parquet.read_schema(existing)] if existing is not None else []
        try:
            schema = _unify([*schemas, *(table.schema for table in pieces)])
        except RecordsFormatError as exc:
            raise RecordsFormatError(f"{path}: {exc}") from None
        schema = pyarrow.schema([]) if schema is None else schema
        tables = itertools.chain(_parquet_batches(existing) if existing else (), pieces)
        try:
            with parquet.ParquetWriter(partial, schema) as writer:
                pending: list[Any] = []
                for table in tables:
                    pending.append(_conform(table, schema))
                    buffered = pyarrow.concat_tables(pending)
                    whole = buffered.num_rows - buffered.num_rows % _ROW_GROUP
                    if whole:
                        writer.write_table(buffered.slice(0, whole), row_group_size=_ROW_GROUP)
                    pending = [buffered.slice(whole)]
                if pending:
                    writer.write_table(pyarrow.concat_tables(pending), row_group_size=_ROW_GROUP)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, path)


def _finish_parquet(target: Target, staged: list[Path], if_exists: str) -> None:
    if target.kind == "parquet":
        existing = target.path if if_exists == "append" and target.path.exists() else None
        _write_parquet(target.path, existing, staged)
        return
    folder = target.table_dir
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.parquet")) if if_exists == "replace" else []
    name = f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
    _write_parquet(folder / name, None, staged)
    for path in old:
        path.unlink()
