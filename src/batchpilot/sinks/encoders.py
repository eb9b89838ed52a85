"""Part file formats: ``pyarrow.Table`` batches into one Parquet or JSON Lines file.

A `PartFormat` is small and picklable; ``open(path)`` returns a `TableFile` that
writes the batches of one part into a local file, which `batchpilot.sinks.files`
publishes under the part's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, Protocol

from .._core.jsonrows import JSON
from .._core.validate import positive_int
from ..errors import ConfigError

__all__ = ["JSONL_COMPRESSIONS", "JsonlFormat", "ParquetFormat", "PartFormat", "TableFile"]

#: ``jsonl(compression=...)`` choices and their file suffixes.
JSONL_COMPRESSIONS = {None: "", "gzip": ".gz", "zstd": ".zst"}

_ROW_GROUP_BYTES = 64 << 20  # a row group is written once this much is buffered


class TableFile(Protocol):
    """One part file being written."""

    def write(self, table: Any) -> None:
        """Append the rows of a ``pyarrow.Table``."""
        ...

    def close(self) -> None:
        """Finish the file (footer, compression trailer) and close it."""
        ...


class PartFormat(Protocol):
    """How a part's rows are stored in a file."""

    @property
    def suffix(self) -> str:
        """The file suffix of a part (``.parquet``, ``.jsonl.gz``)."""
        ...

    def open(self, path: str) -> TableFile:
        """Write a part into the local file ``path``."""
        ...


@dataclass(frozen=True)
class ParquetFormat:
    """Parquet parts: row groups of up to ``row_group_rows`` rows (or 64 MiB of batches).

    Every batch of a part is cast to the columns and types of the part's first
    batch (Parquet files have one schema); a batch that cannot be fails its write.
    """

    compression: str | None = "snappy"
    row_group_rows: int = 1 << 20

    def __post_init__(self) -> None:
        positive_int("row_group_rows", self.row_group_rows)

    @property
    def suffix(self) -> str:
        return ".parquet"

    def open(self, path: str) -> TableFile:
        return _ParquetFile(path, self)


@dataclass(frozen=True)
class JsonlFormat:
    """JSON Lines parts: one JSON object per row, optionally gzip or zstd compressed.

    Values are written by the encoder every batchpilot output uses
    (`batchpilot._core.jsonrows`): a timestamp, a decimal or bytes as its ``str()``.
    """

    compression: str | None = None

    def __post_init__(self) -> None:
        if self.compression not in JSONL_COMPRESSIONS:
            choices = ", ".join(repr(choice) for choice in JSONL_COMPRESSIONS)
            raise ConfigError(f"compression must be one of {choices}, got {self.compression!r}")

    @property
    def suffix(self) -> str:
        return ".jsonl" + JSONL_COMPRESSIONS[self.compression]

    def open(self, path: str) -> TableFile:
        return _JsonlFile(path, self.compression)


class _ParquetFile:
    def __init__(self, path: str, options: ParquetFormat) -> None:
        self._path = path
        self._options = options
        self._schema: Any = None  # the first batch's schema: the part's
        self._writer: Any = None  # pyarrow.parquet.ParquetWriter, from the first row group
        self._pending: list[Any] = []  # batches of the next row group
        self._pending_rows = 0
        self._pending_bytes = 0

    def write(self, table: Any) -> None:
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            table = _conform(table, self._schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        if self._pending_bytes >= _ROW_GROUP_BYTES:
            self._flush(everything=True)
        elif self._pending_rows >= self._options.row_group_rows:
            self._flush(everything=False)

    def close(self) -> None:
        if self._pending_rows:
            self._flush(everything=True)
        if self._writer is not None:
            self._writer.close()

    def _flush(self, everything: bool) -> None:
        """Write the pending rows as row groups of ``row_group_rows``; keep a remainder
        shorter than that pending unless ``everything``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            compression = self._options.compression or "none"
            self._writer = pq.ParquetWriter(self._path, self._schema, compression=compression)
        group = self._options.row_group_rows
        rows = pa.concat_tables(self._pending)
        cut = rows.num_rows if everything else rows.num_rows - rows.num_rows % group
        self._writer.write_table(rows.slice(0, cut), row_group_size=group)
        rest = rows.slice(cut)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows, self._pending_bytes = rest.num_rows, rest.nbytes


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with ``schema``'s columns, in its order and types."""
    import pyarrow as pa

    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, ValueError, pa.ArrowException) as error:
        raise ValueError(
            f"a batch's columns ({table.schema}) do not match the part's first batch "
            f"({schema}): {error}"
        ) from error


class _JsonlFile:
    def __init__(self, path: str, compression: str | None) -> None:
        self._raw: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._out: IO[bytes] = self._raw
        if compression is not None:
            from fsspec.compression import compr

            self._out = compr[compression](self._raw, mode="wb")

    def write(self, table: Any) -> None:
        encode = JSON.encode
        self._out.write("".join(encode(row) + "\n" for row in table.to_pylist()).encode())

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()  # the compression trailer
        self._raw.close()
