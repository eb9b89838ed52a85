"""Parquet partitions: row groups from each file's footer, read on a worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._core.formats import from_arrow
from .listing import FileEntry, open_file
from .partition import Batch, Partition

__all__ = ["parquet_partitions", "read_parquet"]

#: Bytes of a file's end fetched per read while its footer is read (pyarrow reads 64 KiB first).
_FOOTER_BLOCK = 1 << 16


def parquet_partitions(
    entry: FileEntry, storage_options: dict[str, Any] | None, rows: int | None
) -> list[tuple[tuple[int, ...], int]]:
    """``(row_groups, rows)`` of each partition of one file: consecutive row groups of at
    most ``rows`` rows together (a bigger group alone); ``rows`` None: the whole file.

    Only the footer is read.
    """
    import pyarrow.parquet as pq

    with open_file(entry.path, storage_options, block_size=_FOOTER_BLOCK) as file:
        meta = pq.read_metadata(file)
    plan: list[tuple[tuple[int, ...], int]] = []
    groups: list[int] = []
    count = 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).num_rows
        if groups and rows is not None and count + size > rows:
            plan.append((tuple(groups), count))
            groups, count = [], 0
        groups.append(group)
        count += size
    if groups:
        plan.append((tuple(groups), count))
    return plan


def read_parquet(
    partition: Partition, storage_options: dict[str, Any] | None, batch_format: str, batch_rows: int
) -> Iterator[Batch]:
    """The rows of ``partition``'s row groups, numbered by their 1-based row in the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_file(partition.path, storage_options) as file:
        parquet = pq.ParquetFile(file)
        meta = parquet.metadata
        groups = (
            list(range(meta.num_row_groups))
            if partition.row_groups is None
            else list(partition.row_groups)
        )
        if not groups:
            return
        row = sum(meta.row_group(group).num_rows for group in range(groups[0])) + 1
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups):
            table = pa.Table.from_batches([batch])
            yield Batch(
                from_arrow(table, batch_format), partition.path, range(row, row + table.num_rows)
            )
            row += table.num_rows
