"""Output targets, segments, trimming and the final step: real files in tmp_path."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from batchpilot.cli.outputs import finish, open_segment, output_target, trim
from batchpilot.cli.records_io import RecordsFormatError


def write_all(out: str | Path, batches: list[list[object]], if_exists: str = "fail", **kw):
    """Write ``batches`` as one segment and finish; return the committed sizes."""
    target = output_target(out, **kw)
    parts = Path(f"{target.path}.parts")
    parts.mkdir(exist_ok=True)
    segment = open_segment(target, parts, 1, None)
    for batch in batches:
        segment.write(batch)
    segment.flush()
    sizes = {1: segment.size()}
    segment.close()
    finish(target, parts, sizes, segment.columns, if_exists)
    shutil.rmtree(parts)  # as the run does once the output is in place
    return sizes


def test_targets_are_told_apart_by_path(tmp_path: Path) -> None:
    assert output_target("-").kind == "stdout"
    assert output_target(tmp_path / "a.csv.gz").codec == "gzip"
    assert output_target(f"{tmp_path}/lake/").kind == "dataset"
    assert output_target(tmp_path, table="t").table_dir == tmp_path / "t"
    with pytest.raises(RecordsFormatError, match="output folder not found"):
        output_target(tmp_path / "missing" / "out.jsonl")
    with pytest.raises(RecordsFormatError, match="only JSON Lines, CSV and TSV can be"):
        output_target(tmp_path / "out.parquet.gz")


def test_jsonl_rows_hold_any_result(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_all(out, [[{"p": np.array([0.5, 0.25]), "n": np.int64(2)}, 3, (1, 2), {(1, 2): "k"}]])
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"p": [0.5, 0.25], "n": 2},
        {"result": 3},
        {"result": [1, 2]},
        {"(1, 2)": "k"},
    ]


def test_a_compressed_segment_cut_back_to_a_commit_is_still_valid(tmp_path: Path) -> None:
    target = output_target(tmp_path / "out.csv.gz")
    parts = tmp_path / "parts"
    parts.mkdir()
    segment = open_segment(target, parts, 1, None)
    segment.write([{"id": 1}, {"id": 2}])
    committed = {1: segment.size()}
    segment.write([{"id": 3}])  # written, never committed
    segment.close()
    trim(target, parts, committed)
    second = open_segment(target, parts, 2, segment.columns)
    second.write([{"id": 4}])
    committed[2] = second.size()
    second.close()
    finish(target, parts, committed, segment.columns, "fail")
    assert gzip.decompress(target.path.read_bytes()).decode() == "id\n1\n2\n4\n"


def test_csv_rows_that_gain_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordsFormatError, match=r"gained columns \['extra'\]"):
        write_all(tmp_path / "out.tsv", [[{"id": 1}], [{"id": 2, "extra": 3}]])


def test_sqlite_replace_touches_only_its_table_and_columns_are_typed(tmp_path: Path) -> None:
    db_path = tmp_path / "wh.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE keep (a)")
        db.execute("INSERT INTO keep VALUES (1)")
        db.execute("CREATE TABLE scores (old)")
    write_all(db_path, [[{"id": 1, "p": 0.5, "tags": ["x"], "label": None}]], "replace",
              table="scores")  # fmt: skip
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT * FROM keep").fetchall() == [(1,)]
        assert db.execute("SELECT * FROM scores").fetchall() == [(1, 0.5, '["x"]', None)]
        types = [row[2] for row in db.execute("PRAGMA table_info(scores)")]
    assert types == ["INTEGER", "REAL", "TEXT", ""]


def test_sqlite_append_adds_missing_columns(tmp_path: Path) -> None:
    db_path = tmp_path / "o.sqlite"
    write_all(db_path, [[{"id": 1}]])
    write_all(db_path, [[{"id": 2, "score": 0.5}]], "append")
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT * FROM results").fetchall() == [(1, None), (2, 0.5)]


def test_parquet_segments_become_one_file_under_one_schema(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    write_all(out, [[{"id": 1, "p": None}], [{"id": 2, "p": 0.5}], [{"id": 3, "p": 1}]])
    assert pq.read_table(out).to_pylist() == [
        {"id": 1, "p": None},
        {"id": 2, "p": 0.5},
        {"id": 3, "p": 1.0},
    ]


def test_parquet_rows_that_gain_columns_keep_them(tmp_path: Path) -> None:
    # A key first seen in a later row (of the same chunk or a later one) is a column,
    # null where a row lacks it: never silently dropped.
    out = tmp_path / "out.parquet"
    write_all(out, [[{"id": 1}, {"id": 2, "a": "x"}], [{"id": 3, "b": True}]])
    assert pq.read_table(out).to_pylist() == [
        {"id": 1, "a": None, "b": None},
        {"id": 2, "a": "x", "b": None},
        {"id": 3, "a": None, "b": True},
    ]


def test_parquet_rows_whose_types_cannot_share_a_column_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordsFormatError, match="do not fit one Parquet schema"):
        write_all(tmp_path / "o.parquet", [[{"id": 1}], [{"id": "two"}]])


def test_a_parquet_segment_cut_back_to_a_commit_keeps_only_committed_rows(tmp_path) -> None:
    target = output_target(tmp_path / "out.parquet")
    parts = tmp_path / "parts"
    parts.mkdir()
    segment = open_segment(target, parts, 1, None)
    segment.write([{"id": 1}, {"id": 2}])
    committed = {1: segment.size()}
    segment.write([{"id": 3, "late": "never committed"}])
    segment.close()
    with (parts / "00001.arrows").open("ab") as file:
        file.write(b"half a stream")  # a kill in the middle of a write
    trim(target, parts, committed)
    second = open_segment(target, parts, 2, None)
    second.write([{"id": 4}])
    committed[2] = second.size()
    second.close()
    finish(target, parts, committed, None, "fail")
    assert pq.read_table(target.path).to_pylist() == [{"id": 1}, {"id": 2}, {"id": 4}]


def test_small_parquet_segments_merge_into_full_row_groups(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("batchpilot.cli.outputs.parquet._ROW_GROUP", 4)
    out = tmp_path / "out.parquet"
    write_all(out, [[{"id": i}] for i in range(10)])  # ten files of one row
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2]
    assert pq.read_table(out).column("id").to_pylist() == list(range(10))


def test_an_existing_target_is_refused_under_fail(tmp_path: Path) -> None:
    (tmp_path / "out.jsonl").write_text("{}\n")
    with pytest.raises(RecordsFormatError, match="exists; pass --if-exists append"):
        write_all(tmp_path / "out.jsonl", [[{"id": 1}]])
    assert (tmp_path / "out.jsonl").read_text() == "{}\n"
