"""Reading the CLI's record formats: real files in tmp_path, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchpilot._core.compression import compress
from batchpilot.cli.records_io import Position, RecordsFormatError, RecordSource, to_row


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_records_carry_their_line_numbers_and_blank_lines_are_skipped(
    tmp_path: Path,
) -> None:
    source = RecordSource(write(tmp_path / "in.jsonl", '{"a": 1}\n\n{"a": 2}\n'))
    assert source.total() is None  # text: no count without reading it all
    assert list(source.records()) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": 1}\n{"a": \n{"a": 3}\n', "line 2: invalid JSON"),
        ('{"a": 1}\n[1, 2]\n{"a": 3}\n', "line 2: expected a JSON object, got list"),
    ],
)
def test_a_malformed_jsonl_line_stops_the_stream_where_it_is_reached(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path / "in.jsonl", text)
    records = RecordSource(path).records()
    assert next(records) == (1, {"a": 1})  # the records before it come first
    with pytest.raises(RecordsFormatError) as info:
        next(records)
    assert str(info.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(info.value)


def test_csv_rows_use_the_header_and_physical_line_numbers(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", 'id,text\n1,"two\nlines"\n2,b\n'))
    assert list(source.records()) == [
        (3, {"id": "1", "text": "two\nlines"}),
        (4, {"id": "2", "text": "b"}),
    ]


def test_csv_rows_with_the_wrong_number_of_fields_are_malformed(tmp_path: Path) -> None:
    for text, problem in [
        ("a,b\n1,2\n3\n", "line 3: 1 fields, the header has 2"),
        ("a,b\n1,2\n4,5,6\n", "line 3: 3 fields, the header has 2"),
    ]:
        records = RecordSource(write(tmp_path / "in.csv", text)).records()
        assert next(records) == (2, {"a": "1", "b": "2"})
        with pytest.raises(RecordsFormatError, match=problem):
            next(records)


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"x": 1}, {"x": 2}, {"x": 3}]), path)
    source = RecordSource(path)
    assert source.total() == 3  # from the metadata
    assert list(source.records())[-1] == (3, {"x": 3})


def test_a_corrupt_parquet_file_is_a_format_error(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.parquet", "not parquet"))
    with pytest.raises(RecordsFormatError, match="not a readable Parquet file"):
        source.total()
    with pytest.raises(RecordsFormatError, match="not a readable Parquet file"):
        list(source.records())


def test_missing_input_and_unknown_suffixes_are_named(tmp_path: Path) -> None:
    with pytest.raises(RecordsFormatError, match="input file not found"):
        RecordSource(tmp_path / "nope.jsonl")
    with pytest.raises(RecordsFormatError, match=r"input format .*'\.txt'"):
        RecordSource(write(tmp_path / "in.txt", ""))
    with pytest.raises(RecordsFormatError, match="input is a directory"):
        RecordSource(tmp_path)


def test_results_become_rows_with_plain_python_values() -> None:
    assert to_row({"label": np.int64(3), "p": np.array([0.5, 0.5])}) == {
        "label": 3,
        "p": [0.5, 0.5],
    }
    assert to_row(7) == {"result": 7}
    assert to_row((1, np.float32(0.5))) == {"result": [1, 0.5]}
    assert type(to_row(np.int64(3))["result"]) is int


def test_csv_header_with_repeated_names_is_malformed(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", "a,b,a\n1,2,3\n"))
    with pytest.raises(RecordsFormatError, match=r"line 1: the header repeats .*\['a'\]"):
        list(source.records())


@pytest.mark.parametrize(
    ("name", "head", "bad_line"), [("in.jsonl", b'{"a": 1}\n', 2), ("in.csv", b"a\n1\n", 3)]
)
def test_bytes_that_are_not_utf8_are_reported_with_their_line(
    tmp_path: Path, name: str, head: bytes, bad_line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(head + b"\xff\xfe broken\n")
    with pytest.raises(RecordsFormatError, match=rf"line {bad_line}: not UTF-8 text"):
        list(RecordSource(path).records())


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbfid,x\n1,2\n")
    assert list(RecordSource(path).records()) == [(2, {"id": "1", "x": "2"})]


def test_a_csv_with_only_a_header_has_no_records(tmp_path: Path) -> None:
    source = RecordSource(write(tmp_path / "in.csv", "a,b\n\n"))
    assert list(source.records()) == []


@pytest.mark.parametrize("name", ["in.jsonl", "in.csv", "in.tsv", "in.jsonl.gz", "in.csv.zst"])
def test_reading_from_a_position_yields_exactly_the_records_after_it(
    tmp_path: Path, name: str
) -> None:
    kind = name.split(".")[1]
    if kind == "jsonl":
        text = "".join(json.dumps({"id": str(i)}) + "\n" for i in range(50))
    else:
        sep = "," if kind == "csv" else "\t"
        text = f"id{sep}note\n" + "".join(f'{i}{sep}"line\n{i}"\n' for i in range(50))
    codec = {"gz": "gzip", "zst": "zstd"}.get(name.rsplit(".", 1)[-1])
    path = tmp_path / name
    path.write_bytes(compress(text.encode(), codec))
    source = RecordSource(path)
    everything = list(source.located(Position()))
    assert [r["id"] for _, _, r in everything] == [str(i) for i in range(50)]
    line, offset, _ = everything[19]
    rest = list(source.located(Position(line, offset)))
    assert rest == everything[20:]  # same lines, positions and records


def test_parquet_reading_from_a_row_starts_in_its_row_group(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": i} for i in range(100)]), path, row_group_size=30)
    rest = list(RecordSource(path).located(Position(45, 45)))
    assert [line for line, _, _ in rest] == list(range(46, 101))
    assert rest[0] == (46, 46, {"id": 45})


def test_typed_csv_fields_are_converted_and_a_misfit_of_an_inferred_type_is_widened(
    tmp_path: Path,
) -> None:
    # Types are inferred from the first MiB; no pass over the whole file widens them
    # (issue 23 item 6), so a later field that does not fit keeps a wider value itself.
    path = write(tmp_path / "in.csv", "n,x,ok,s\n1,0.5,true,a\n2,,false,b\n3.5,1,,c\nz,2,1,d\n")
    source = RecordSource(path, types={"n": "int", "x": "float", "ok": "bool"})
    assert [r for _, r in source.records()] == [
        {"n": 1, "x": 0.5, "ok": True, "s": "a"},
        {"n": 2, "x": None, "ok": False, "s": "b"},
        {"n": 3.5, "x": 1.0, "ok": None, "s": "c"},
        {"n": "z", "x": 2.0, "ok": True, "s": "d"},
    ]
    assert source.types["n"] == "int"  # the same types for every record, also on resume


def test_a_field_that_does_not_fit_a_given_type_is_a_malformed_line(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "n\n1\nabc\n")
    source = RecordSource(path, types={"n": "int"}, fixed=frozenset({"n"}))
    with pytest.raises(RecordsFormatError, match="line 3: column 'n': 'abc' is not int"):
        list(source.records())
