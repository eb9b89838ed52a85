"""Byte-range partitions of text files own every line exactly once, numbered right.

Files live on fsspec's in-memory filesystem (``memory://``), read through the same
code as any URL. For random files of valid, blank and malformed lines and random
range and batch sizes, the union of all partitions' rows and errors is each line
of the file exactly once, with its 1-based line number.
"""

from __future__ import annotations

import json
import uuid

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import batchpilot.sources as sources
from batchpilot._core.formats import to_arrow

KINDS = st.lists(st.sampled_from(["row", "row", "row", "blank", "bad"]), max_size=40)


def _put(text: str, suffix: str) -> str:
    url = f"memory://ranges/{uuid.uuid4().hex}{suffix}"
    with fsspec.open(url, "wb") as file:
        file.write(text.encode())
    return url


def _read_all(source: sources.FileSource, batch_format: str, batch_rows: int) -> tuple[dict, dict]:
    """``{line: row}`` and ``{line: message}`` over every partition; fails on a duplicate."""
    rows: dict[int, dict] = {}
    errors: dict[int, str] = {}
    for partition in source.partitions():
        for batch in source.read(partition, batch_format, batch_rows):
            assert len(batch.lines) <= batch_rows
            records = to_arrow(batch.data).to_pylist()
            assert len(records) == len(batch.lines)
            for line, record in zip(batch.lines, records, strict=True):
                assert line not in rows and line not in errors, f"line {line} read twice"
                rows[line] = record
            for error in batch.errors:
                assert error.path == partition.path
                assert error.line not in rows and error.line not in errors
                errors[error.line] = error.message
    return rows, errors


@settings(max_examples=60, deadline=None)
@given(
    kinds=KINDS,
    crlf=st.booleans(),
    final_newline=st.booleans(),
    partition_bytes=st.integers(1, 400),
    batch_rows=st.integers(1, 7),
    batch_format=st.sampled_from(["records", "pyarrow"]),
)
def test_jsonl_ranges_cover_every_line_once(
    kinds: list[str],
    crlf: bool,
    final_newline: bool,
    partition_bytes: int,
    batch_rows: int,
    batch_format: str,
) -> None:
    texts = {
        "row": lambda n: json.dumps({"n": n, "pad": "x" * (n % 5)}),
        "blank": lambda n: "",
        "bad": lambda n: "{nope",
    }
    lines = [texts[kind](number) for number, kind in enumerate(kinds, start=1)]
    newline = "\r\n" if crlf else "\n"
    url = _put(newline.join(lines) + (newline if final_newline else ""), ".jsonl")
    source = sources.jsonl(url, partition_bytes=partition_bytes)
    rows, errors = _read_all(source, batch_format, batch_rows)
    assert {line: row["n"] for line, row in rows.items()} == {
        n: n for n, kind in enumerate(kinds, start=1) if kind == "row"
    }
    assert sorted(errors) == [n for n, kind in enumerate(kinds, start=1) if kind == "bad"]


@settings(max_examples=60, deadline=None)
@given(
    kinds=KINDS,
    partition_bytes=st.integers(1, 300),
    batch_rows=st.integers(1, 7),
    batch_format=st.sampled_from(["records", "pyarrow", "numpy"]),
)
def test_csv_ranges_cover_every_line_once(
    kinds: list[str], partition_bytes: int, batch_rows: int, batch_format: str
) -> None:
    texts = {"row": lambda n: f'{n},"v,{n}"', "blank": lambda n: "", "bad": lambda n: "lonely"}
    lines = ["n,text"] + [texts[kind](number) for number, kind in enumerate(kinds, start=2)]
    url = _put("\n".join(lines) + "\n", ".csv")
    rows, errors = _read_all(
        sources.csv(url, partition_bytes=partition_bytes), batch_format, batch_rows
    )
    expected = {
        n: {"n": n, "text": f"v,{n}"} for n, kind in enumerate(kinds, start=2) if kind == "row"
    }
    assert rows == expected
    assert sorted(errors) == [n for n, kind in enumerate(kinds, start=2) if kind == "bad"]


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.text(alphabet='ab,"\n', max_size=6), min_size=1, max_size=15),
    batch_rows=st.integers(1, 5),
    batch_format=st.sampled_from(["records", "pyarrow"]),
)
def test_quoted_newlines_in_a_whole_csv_file(
    values: list[str], batch_rows: int, batch_format: str
) -> None:
    """A value with newlines in quotes stays one value; a row is numbered where it starts."""
    lines, starts, line = ["n,text"], [], 2
    for n, value in enumerate(values):
        quoted = '"' + value.replace('"', '""') + '"'
        lines.append(f"{n},{quoted}")
        starts.append(line)
        line += quoted.count("\n") + 1
    url = _put("\n".join(lines) + "\n", ".csv")
    source = sources.csv(url, partition_bytes=None, schema={"text": "str"})
    rows, errors = _read_all(source, batch_format, batch_rows)
    assert errors == {}
    assert rows == {
        start: {"n": n, "text": value}
        for n, (start, value) in enumerate(zip(starts, values, strict=True))
    }


def test_a_healthy_range_never_reads_its_prefix_but_numbers_lines_when_asked() -> None:
    """Line numbers of a range that starts mid-file are counted lazily, once."""
    url = _put("".join(json.dumps({"n": n}) + "\n" for n in range(1, 1001)), ".jsonl")
    source = sources.jsonl(url, partition_bytes=2000)
    last = source.partitions()[-1]
    (batch, *_) = list(source.read(last, "records", 10_000))
    base = batch.lines._base
    assert repr(base).endswith("not counted)")
    assert batch.lines[0] == batch.data[0]["n"]
    assert list(batch.lines) == [row["n"] for row in batch.data]


@pytest.mark.parametrize("batch_rows", [0, -1])
def test_batch_rows_must_be_positive(batch_rows: int) -> None:
    url = _put('{"a": 1}\n', ".jsonl")
    source = sources.jsonl(url)
    with pytest.raises(ValueError, match="batch_rows"):
        list(source.read(source.partitions()[0], "records", batch_rows))
