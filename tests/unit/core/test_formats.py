"""Batch formats: every shape converts to Arrow and back, row counts and slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batchpilot._core.formats import (
    BATCH_FORMATS,
    check_batch_format,
    from_arrow,
    row_count,
    take_rows,
    to_arrow,
)

TABLE = pa.table({"x": [1, 2, 3, 4], "s": ["a", "b", None, "d"], "f": [0.5, 1.5, 2.5, 3.5]})


@pytest.mark.parametrize("batch_format", BATCH_FORMATS)
def test_every_format_round_trips_and_slices(batch_format: str) -> None:
    data = from_arrow(TABLE, batch_format)
    assert row_count(data) == 4
    assert to_arrow(data).to_pylist() == TABLE.to_pylist()
    part = take_rows(data, 1, 3)
    assert row_count(part) == 2
    assert to_arrow(part).to_pylist() == TABLE.slice(1, 2).to_pylist()


def test_the_shapes_are_ray_datas() -> None:
    assert from_arrow(TABLE, "pyarrow") is TABLE
    assert isinstance(from_arrow(TABLE, "pandas"), pd.DataFrame)
    numpy = from_arrow(TABLE, "numpy")
    assert isinstance(numpy["x"], np.ndarray) and numpy["x"].tolist() == [1, 2, 3, 4]
    assert from_arrow(TABLE, "records")[0] == {"x": 1, "s": "a", "f": 0.5}


def test_results_that_are_not_dicts_become_a_result_column() -> None:
    assert to_arrow([1, 2]).to_pylist() == [{"result": 1}, {"result": 2}]
    assert to_arrow(np.arange(2)).to_pylist() == [{"result": 0}, {"result": 1}]
    assert to_arrow([{"a": 1}, 5]).to_pylist() == [
        {"a": 1, "result": None},
        {"a": None, "result": 5},
    ]


def test_rows_with_different_keys_get_every_column() -> None:
    table = to_arrow([{"a": 1}, {"b": "x"}])
    assert table.to_pylist() == [{"a": 1, "b": None}, {"a": None, "b": "x"}]


def test_a_2d_array_column_is_a_fixed_size_list() -> None:
    table = to_arrow({"embedding": np.arange(6, dtype=np.float32).reshape(3, 2)})
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 2)
    assert table.column("embedding").to_pylist() == [[0, 1], [2, 3], [4, 5]]


def test_a_dataframe_keeps_columns_not_its_index() -> None:
    frame = pd.DataFrame({"x": [1, 2]}, index=[7, 8])
    assert to_arrow(frame).column_names == ["x"]
    assert to_arrow(take_rows(frame, 1, 2)).to_pylist() == [{"x": 2}]


def test_empty_batches() -> None:
    assert to_arrow([]).num_rows == 0
    assert row_count({}) == 0
    assert row_count([]) == 0


def test_an_unknown_format_names_the_choices() -> None:
    assert check_batch_format("numpy") == "numpy"
    with pytest.raises(ValueError, match="pyarrow, pandas, numpy, records"):
        check_batch_format("arrow")
    with pytest.raises(ValueError, match="unknown batch_format"):
        from_arrow(TABLE, "dicts")


def test_a_half_imported_pandas_is_not_taken_for_a_dataframe(monkeypatch) -> None:
    # Another thread may be importing pandas (pyarrow does it lazily): until it has
    # defined DataFrame, no value is one, and the check must not raise AttributeError.
    import sys
    import types

    monkeypatch.setitem(sys.modules, "pandas", types.ModuleType("pandas"))
    assert to_arrow([{"x": 1}]).to_pylist() == [{"x": 1}]
