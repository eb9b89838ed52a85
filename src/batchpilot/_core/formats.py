"""Batch formats: the shapes a batch of rows takes, with Ray Data's names.

- ``"pyarrow"``: a ``pyarrow.Table``;
- ``"pandas"``: a ``pandas.DataFrame``;
- ``"numpy"``: a dict of column name -> numpy array;
- ``"records"``: a list of dicts (one per row).

Readers produce Arrow tables and `from_arrow` turns them into the run's format;
a function's result goes back to Arrow with `to_arrow`, whatever shape it has.
Only ``"records"`` costs Python work per row (``Table.to_pylist`` /
``Table.from_pylist``). pyarrow and pandas are imported on first use.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from itertools import repeat
from typing import Any

__all__ = [
    "BATCH_FORMATS",
    "check_batch_format",
    "from_arrow",
    "row_count",
    "take_rows",
    "to_arrow",
]

BATCH_FORMATS = ("pyarrow", "pandas", "numpy", "records")
#: The column that holds results which are not dicts.
RESULT_COLUMN = "result"


def check_batch_format(name: str) -> str:
    """``name`` if it is one of `BATCH_FORMATS`, else a ValueError naming the choices."""
    if name not in BATCH_FORMATS:
        raise ValueError(f"unknown batch_format {name!r}; choose one of {', '.join(BATCH_FORMATS)}")
    return name


def from_arrow(table: Any, batch_format: str) -> Any:
    """``table`` (a ``pyarrow.Table``) in ``batch_format``."""
    check_batch_format(batch_format)
    if batch_format == "pyarrow":
        return table
    if batch_format == "pandas":
        return table.to_pandas()
    if batch_format == "numpy":
        return {
            name: column.to_numpy()
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    return table.to_pylist()


def to_arrow(data: Any) -> Any:
    """``data`` in any batch format as a ``pyarrow.Table``.

    A Table (or RecordBatch) stays itself; a DataFrame keeps its columns, not its
    index; a mapping of column -> array or list becomes those columns (a 2-D array
    becomes a fixed-size list column, e.g. embeddings); a sequence of dicts becomes
    one row per dict; any other value of a sequence or 1-D array becomes a row of
    a column ``"result"`` (as the CLI writes a result that is not a dict). Rows
    with different keys get the union of the columns, None where a row lacks one.
    """
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if _is_pandas(data, "DataFrame"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, Mapping):
        return pa.table({str(name): _column(values) for name, values in data.items()})
    if _is_numpy_array(data) or _is_pandas(data, "Series"):
        return pa.table({RESULT_COLUMN: _column(data)})
    rows = data if isinstance(data, list) else list(data)
    dicts = sum(map(isinstance, rows, repeat(dict)))
    if rows and dicts == 0:
        return pa.table({RESULT_COLUMN: _column(rows)})
    if not rows:
        return pa.table({})
    if dicts < len(rows):
        rows = [row if isinstance(row, dict) else {RESULT_COLUMN: row} for row in rows]
    # a struct array's type unites the keys of every row (from_pylist reads the first only)
    return pa.Table.from_struct_array(pa.array(rows))


def row_count(data: Any) -> int:
    """The number of rows of a batch in any format."""
    if isinstance(data, Mapping):
        return len(next(iter(data.values()))) if data else 0
    if hasattr(data, "num_rows"):  # pyarrow Table / RecordBatch
        return int(data.num_rows)
    return len(data)


def take_rows(data: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a batch, in the same format (views where the format has them)."""
    if isinstance(data, Mapping):
        return {name: values[start:stop] for name, values in data.items()}
    if hasattr(data, "num_rows"):
        return data.slice(start, max(stop - start, 0))
    if _is_pandas(data, "DataFrame"):
        return data.iloc[start:stop]
    return data[start:stop]


def _column(values: Any) -> Any:
    """An Arrow array of ``values``; an n-D numpy array nests fixed-size lists."""
    import pyarrow as pa

    if _is_numpy_array(values) and values.ndim > 1:
        flat = _column(values.reshape(values.shape[0] * values.shape[1], *values.shape[2:]))
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    if _is_pandas(values, "Series"):
        return pa.Array.from_pandas(values)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return pa.array(values)


def _is_numpy_array(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


def _is_pandas(value: Any, kind: str) -> bool:
    """Whether ``value`` is a pandas ``kind``, without importing pandas for other values."""
    # pandas may be half imported by another thread (pyarrow imports it lazily): a
    # class it has not defined yet has no instance.
    cls = getattr(sys.modules.get("pandas"), kind, None)
    return cls is not None and isinstance(value, cls)
