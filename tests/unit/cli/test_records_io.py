"""Reading and writing the CLI's record formats: real files in tmp_path, no mocks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchpilot.cli.records_io import RecordsFormatError, RecordSource, open_sink, to_row


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_records_carry_their_line_numbers_and_blank_lines_are_skipped(
    tmp_path: Path,
) -> None:
    source = RecordSource(write(tmp_path / "in.jsonl", '{"a": 1}\n\n{"a": 2}\n'))
    assert source.scan() == 2
    assert list(source.records()) == [(1, {"a": 1}), (3, {"a": 2})]


def test_malformed_jsonl_lines_are_all_reported_by_number(tmp_path: Path) -> None:
    text = '{"a": 1}\n{"a": \n[1, 2]\n{"a": 4}\nnot json\n'
    source = RecordSource(write(tmp_path / "in.jsonl", text))
    with pytest.raises(RecordsFormatError) as info:
        source.scan()
    message = str(info.value)
    assert "3 malformed lines" in message
    assert "line 2: invalid JSON" in message
    assert "line 3: expected a JSON object, got list" in message
    assert "line 5: invalid JSON" in message
    assert "\n" not in message


def test_many_malformed_lines_are_summarised(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.jsonl", "x\n" * 25))
    with pytest.raises(RecordsFormatError, match=r"25 malformed lines: line 1.*and 15 more"):
        source.scan()


def test_csv_rows_use_the_header_and_physical_line_numbers(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", 'id,text\n1,"two\nlines"\n2,b\n'))
    assert source.scan() == 2
    assert list(source.records()) == [
        (3, {"id": "1", "text": "two\nlines"}),
        (4, {"id": "2", "text": "b"}),
    ]


def test_csv_rows_with_the_wrong_number_of_fields_are_malformed(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", "a,b\n1,2\n3\n4,5,6\n"))
    with pytest.raises(RecordsFormatError) as info:
        source.scan()
    assert "line 3: 1 fields, the header has 2" in str(info.value)
    assert "line 4: 3 fields, the header has 2" in str(info.value)


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"x": 1}, {"x": 2}, {"x": 3}]), path)
    source = RecordSource(path)
    assert source.scan() == 3
    assert list(source.records())[-1] == (3, {"x": 3})


def test_a_corrupt_parquet_file_is_a_format_error(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.parquet", "not parquet"))
    with pytest.raises(RecordsFormatError, match="not a readable Parquet file"):
        source.scan()


def test_missing_input_and_unknown_suffixes_are_named(tmp_path: Path) -> None:
    with pytest.raises(RecordsFormatError, match="input file not found"):
        RecordSource(tmp_path / "nope.jsonl")
    with pytest.raises(RecordsFormatError, match=r"input format .*'\.txt'"):
        RecordSource(write(tmp_path / "in.txt", ""))
    with pytest.raises(RecordsFormatError, match=r"output format .*'\.csv'"):
        open_sink(tmp_path / "out.csv")
    with pytest.raises(RecordsFormatError, match="output directory not found"):
        open_sink(tmp_path / "missing" / "out.jsonl")


def test_results_become_rows_with_plain_python_values() -> None:
    assert to_row({"label": np.int64(3), "p": np.array([0.5, 0.5])}) == {
        "label": 3,
        "p": [0.5, 0.5],
    }
    assert to_row(7) == {"result": 7}
    assert to_row((1, np.float32(0.5))) == {"result": [1, 0.5]}
    assert type(to_row(np.int64(3))["result"]) is int


def test_jsonl_sink_writes_nothing_visible_until_commit(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = open_sink(out)
    sink.write([{"a": 1}, {"a": 2}])
    assert not out.exists()
    sink.commit()
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"a": 1}, {"a": 2}]
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_aborted_sink_leaves_no_partial_file(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "out.sqlite")
    sink.write([{"a": 1}])
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_sqlite_sink_adds_columns_as_new_keys_appear(tmp_path: Path) -> None:
    out = tmp_path / "out.sqlite"
    sink = open_sink(out, table="scores")
    sink.write([{"id": 1, "score": 0.5}])
    sink.write([{"id": 2, "tags": ["a", "b"], "label": None}])
    sink.commit()
    with sqlite3.connect(out) as db:
        rows = db.execute('SELECT id, score, tags, label FROM "scores" ORDER BY rowid').fetchall()
    assert rows == [(1, 0.5, None, None), (2, None, '["a", "b"]', None)]


def test_parquet_sink_round_trips_rows(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    sink = open_sink(out)
    sink.write([{"id": 1, "p": 0.25}, {"id": 2, "p": 0.75}])
    sink.commit()
    assert pq.read_table(out).to_pylist() == [{"id": 1, "p": 0.25}, {"id": 2, "p": 0.75}]


def test_parquet_sink_refuses_rows_that_gain_columns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("batchpilot.cli.records_io._PARQUET_ROWS", 1)
    sink = open_sink(tmp_path / "out.parquet")
    sink.write([{"id": 1}])
    with pytest.raises(RecordsFormatError, match=r"gained columns \['extra'\]"):
        sink.write([{"id": 2, "extra": 1}])
    sink.abort()
    assert not (tmp_path / "out.parquet.partial").exists()


def test_csv_header_with_repeated_names_is_malformed(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", "a,b,a\n1,2,3\n"))
    with pytest.raises(RecordsFormatError, match=r"line 1: the header repeats .*\['a'\]"):
        source.scan()


@pytest.mark.parametrize(
    ("name", "head", "bad_line"), [("in.jsonl", b'{"a": 1}\n', 2), ("in.csv", b"a\n1\n", 3)]
)
def test_bytes_that_are_not_utf8_are_reported_with_their_line(
    tmp_path: Path, name: str, head: bytes, bad_line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(head + b"\xff\xfe broken\n")
    with pytest.raises(RecordsFormatError, match=rf"line {bad_line}: not UTF-8 text"):
        RecordSource(path).scan()


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbfid,x\n1,2\n")
    assert list(RecordSource(path).records()) == [(2, {"id": "1", "x": "2"})]


def test_a_csv_with_only_a_header_has_no_records(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", "a,b\n\n"))
    assert source.scan() == 0
    assert list(source.records()) == []


def test_jsonl_sink_writes_any_result_as_a_row(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = open_sink(out)
    sink.write([{"p": np.array([0.5, 0.25]), "n": np.int64(2)}, 3, (1, 2), {(1, 2): "tuple key"}])
    sink.commit()
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"p": [0.5, 0.25], "n": 2},
        {"result": 3},
        {"result": [1, 2]},
        {"(1, 2)": "tuple key"},
    ]
