"""Parquet outputs: a Parquet file (``.parquet``, ``.pq``), or a table of a Parquet
dataset: a folder whose sub-folder ``TABLE/`` holds the table's ``part-*.parquet``
files.

A run stages its rows as Arrow streams appended to one file per run; the final
step writes them as Parquet, in row groups of 65,536 rows.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..records_io import RecordsFormatError, import_parquet, to_row
from .base import AppendedSegment, Segment, Target

__all__ = ["DatasetTarget", "ParquetTarget"]

#: Rows per row group of a finished Parquet output (the staged writes, one per chunk, merge).
_ROW_GROUP = 65_536


class ParquetTarget(Target):
    """A Parquet file, written whole at the end."""

    def open_segment(self, parts: Path, number: int, columns: list[str] | None) -> Segment:
        return _ParquetSegment(parts, number)

    def finish(
        self, parts: Path, committed: dict[int, int], columns: list[str] | None, if_exists: str
    ) -> None:
        existing = self.path if if_exists == "append" and self.path.exists() else None
        _write_parquet(self.path, existing, _staged_files(parts, committed))


class DatasetTarget(ParquetTarget):
    """A table of a Parquet dataset: each run adds one ``part-*.parquet`` file to
    ``PATH/TABLE/``."""

    def __str__(self) -> str:
        return f"{self.path} (table {self.table})"

    @property
    def table_dir(self) -> Path:
        """The table's folder."""
        return self.path / self.table

    def files(self) -> list[Path]:
        return [self.path, self.table_dir]

    def exists(self) -> bool:
        return self.table_dir.is_dir() and any(self.table_dir.glob("*.parquet"))

    def finish(
        self, parts: Path, committed: dict[int, int], columns: list[str] | None, if_exists: str
    ) -> None:
        folder = self.table_dir
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("*.parquet")) if if_exists == "replace" else []
        name = f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        _write_parquet(folder / name, None, _staged_files(parts, committed))
        for path in old:
            path.unlink()


def _staged_files(parts: Path, committed: dict[int, int]) -> list[Path]:
    """The files of the committed Parquet segments in ``parts``, in order."""
    return [_staged(parts, number) for number in sorted(committed)]


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


class _ParquetSegment(AppendedSegment):
    """Rows for a Parquet output, staged as Arrow: one self-contained IPC stream per
    write (one chunk), appended to ``NNNNN.arrows``.

    Each write is durable at once and costs no new file, so a run commits after
    every chunk, as for the other formats, and a resume (which cuts the file back
    to its committed size, see `trim`) redoes at most the chunks in flight. Each
    stream's schema is that of its rows; `_unify` checks at every write that they
    still fit one schema, which `finish` gives them all.
    """

    def __init__(self, parts: Path, number: int) -> None:
        import pyarrow

        import_parquet()  # the final step needs it: refuse a missing pyarrow now
        path = _staged(parts, number)
        schemas: list[Any] = []
        for staged in sorted(parts.glob("*.arrows")):
            with pyarrow.memory_map(str(staged)) as source:
                schemas.extend(table.schema for table in _staged_tables(source))
        self._schema = _unify(schemas)  # the one schema of every stream staged so far
        super().__init__(path)

    def write(self, results: Sequence[Any]) -> bool:
        import pyarrow.ipc

        if not results:
            return True
        table = _arrow_table([to_row(value) for value in results])
        self._schema = _unify([self._schema, table.schema])
        sink = pyarrow.BufferOutputStream()
        with pyarrow.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table)
        return self.append(sink.getvalue())


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
