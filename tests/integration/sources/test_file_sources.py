"""Partitioned file sources on real files: local folders, globs, compressed text, S3.

The S3 endpoint is moto's server on 127.0.0.1 (the ``s3`` fixture in tests/conftest.py),
reached through s3fs. What the plan reads is measured through a filesystem that
counts the bytes its files hand out.
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

import batchpilot.sources as sources
from batchpilot._core.formats import BATCH_FORMATS, to_arrow

ROWS = [{"id": n, "name": f"name {n}", "score": n / 4} for n in range(1, 31)]


def _lines(rows: list[dict[str, Any]], sep: str = ",") -> str:
    return "".join(sep.join(str(value) for value in row.values()) + "\n" for row in rows)


def _write_dataset(root: Path) -> None:
    """The 30 rows split over every format, with files a reader must skip."""
    (root / "sub").mkdir(parents=True)
    header = "id,name,score\n"
    pq.write_table(pa.Table.from_pylist(ROWS[0:5]), root / "a.parquet", row_group_size=2)
    (root / "b.csv").write_text(header + _lines(ROWS[5:10]))
    with gzip.open(root / "c.csv.gz", "wt") as file:
        file.write(header + _lines(ROWS[10:15]))
    (root / "sub" / "d.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS[15:20]))
    zstandard = pytest.importorskip("zstandard")
    text = "".join(json.dumps(row) + "\n" for row in ROWS[20:25]).encode()
    (root / "sub" / "e.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    (root / "f.tsv").write_text(header.replace(",", "\t") + _lines(ROWS[25:30], "\t"))
    (root / "_SUCCESS").write_text("")
    (root / ".hidden.csv").write_text("not,read\n")
    (root / "_temporary").mkdir()
    (root / "_temporary" / "x.jsonl").write_text("{bad\n")


def _rows(
    source: sources.FileSource, batch_format: str = "records", batch_rows: int = 3
) -> list[dict[str, Any]]:
    out = []
    for partition in source.partitions():
        for batch in source.read(partition, batch_format, batch_rows):
            assert not batch.errors
            out.extend(to_arrow(batch.data).to_pylist())
    return out


@pytest.mark.parametrize("batch_format", BATCH_FORMATS)
def test_a_folder_of_every_format_reads_every_row_once(tmp_path: Path, batch_format: str) -> None:
    _write_dataset(tmp_path)
    source = pickle.loads(pickle.dumps(sources.files(tmp_path, partition_bytes=40)))
    assert sorted(_rows(source, batch_format), key=lambda row: row["id"]) == ROWS
    names = [Path(part.path).name for part in source.partitions()]
    assert "_SUCCESS" not in names and ".hidden.csv" not in names and "x.jsonl" not in names
    kinds = {Path(part.path).name: (part.format, part.compression) for part in source.partitions()}
    assert kinds["c.csv.gz"] == ("csv", "gzip") and kinds["e.jsonl.zst"] == ("jsonl", "zstd")
    assert names.count("c.csv.gz") == 1  # a compressed file is one partition
    assert names.count("b.csv") > 1  # a plain one is split in byte ranges
    assert names.count("a.parquet") == 1  # 3 row groups of 5 rows < partition_rows


def test_globs_lists_and_file_urls(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    by_glob = sources.files(str(tmp_path / "*.csv*"))
    assert [Path(p.path).name for p in by_glob.partitions()] == ["b.csv", "c.csv.gz"]
    listed = sources.files([tmp_path / "f.tsv", f"file://{tmp_path}/a.parquet"])
    assert [row["id"] for row in _rows(listed)] == [*range(26, 31), *range(1, 6)]


def test_parquet_row_groups_become_partitions(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": np.arange(100)}), tmp_path / "p.parquet", row_group_size=10)
    one_each = sources.parquet(tmp_path / "p.parquet", partition_rows=10).partitions()
    assert [p.row_groups for p in one_each] == [(g,) for g in range(10)]
    grouped = sources.parquet(tmp_path / "p.parquet", partition_rows=35).partitions()
    assert [p.row_groups for p in grouped] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [p.rows for p in grouped] == [30, 30, 30, 10]
    source = sources.parquet(tmp_path / "p.parquet", partition_rows=35)
    batches = list(source.read(grouped[1], "numpy", 7))
    assert [len(b.lines) for b in batches] == [7, 7, 7, 7, 2]
    assert list(batches[0].lines) == list(range(31, 38))  # 1-based rows of the file
    assert batches[0].data["x"].tolist() == list(range(30, 37))


def test_malformed_rows_are_reported_with_file_and_line_and_the_rest_is_read(
    tmp_path: Path,
) -> None:
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n{oops\n\n[1, 2]\n{"a": 2}\n')
    (tmp_path / "y.csv").write_text("a,b\n1,2\n3\n4,5,6\n7,8\n")
    for batch_format in ("records", "pyarrow"):
        source = sources.files(tmp_path)
        errors, rows = [], []
        for partition in source.partitions():
            for batch in source.read(partition, batch_format, 100):
                errors += [(Path(e.path).name, e.line, e.message) for e in batch.errors]
                rows += list(zip(batch.lines, to_arrow(batch.data).to_pylist(), strict=True))
        assert [(name, line) for name, line, _ in errors] == [
            ("x.jsonl", 2),
            ("x.jsonl", 4),
            ("y.csv", 3),
            ("y.csv", 4),
        ]
        assert (
            "expected a JSON object" in errors[1][2]
            and "1 fields, the header has 2" in errors[2][2]
        )
        assert rows == [(1, {"a": 1}), (5, {"a": 2}), (2, {"a": 1, "b": 2}), (5, {"a": 7, "b": 8})]


def test_csv_types_come_from_a_schema_or_the_file_head(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("n,flag,text\n1,true,a\n2,,\n")
    rows = _rows(sources.csv(tmp_path / "t.csv"))
    assert rows == [{"n": 1, "flag": True, "text": "a"}, {"n": 2, "flag": None, "text": ""}]
    assert _rows(sources.csv(tmp_path / "t.csv", schema="*:str"))[0] == {
        "n": "1",
        "flag": "true",
        "text": "a",
    }


def test_missing_inputs_and_unknown_suffixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        sources.files(tmp_path / "nope").partitions()
    (tmp_path / "data.txt").write_text("x\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        sources.files(tmp_path).partitions()
    assert len(sources.csv(tmp_path).partitions()) == 1  # a format given reads any name


def test_the_fingerprint_follows_the_listing(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n')
    first = sources.jsonl(tmp_path).fingerprint()
    assert sources.jsonl(tmp_path).fingerprint() == first
    assert sources.jsonl(tmp_path, partition_bytes=10).fingerprint() != first
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    assert sources.jsonl(tmp_path).fingerprint() != first


class _CountingOpener(LocalFileOpener):
    read_bytes = 0

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data = super().read(*args, **kwargs)
        _CountingOpener.read_bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer)
        _CountingOpener.read_bytes += count
        return count


class CountingFileSystem(LocalFileSystem):
    """Local files whose reads are counted (a real filesystem, not a mock)."""

    protocol = "countingfile"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("countingfile://"))

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        return _CountingOpener(path, mode, fs=self, **kwargs)


fsspec.register_implementation("countingfile", CountingFileSystem, clobber=True)


def test_planning_a_large_parquet_file_reads_only_its_footer(tmp_path: Path) -> None:
    rows = 2_000_000
    table = pa.table({"x": np.random.default_rng(0).random(rows), "y": np.arange(rows)})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=100_000, compression="none")
    size = (tmp_path / "big.parquet").stat().st_size
    _CountingOpener.read_bytes = 0
    source = sources.parquet(f"countingfile://{tmp_path}/big.parquet", partition_rows=250_000)
    plan = source.partitions()
    assert len(plan) == 10 and sum(p.rows for p in plan) == rows  # 2 groups of 100k each
    assert 0 < _CountingOpener.read_bytes < 200_000 < size // 100  # the footer, not the rows


def test_reading_a_range_reads_about_the_range_not_the_prefix(tmp_path: Path) -> None:
    text = "".join(json.dumps({"n": n, "pad": "x" * 90}) + "\n" for n in range(1, 200_001))
    (tmp_path / "big.jsonl").write_text(text)
    source = sources.jsonl(f"countingfile://{tmp_path}/big.jsonl", partition_bytes=1 << 20)
    _CountingOpener.read_bytes = 0
    plan = source.partitions()
    assert _CountingOpener.read_bytes == 0  # a text plan is the listing alone
    last = plan[-1]
    batches = list(source.read(last, "pyarrow", 50_000))
    assert _CountingOpener.read_bytes < last.size + (8 << 20)  # its range and one read block
    first_row = batches[0].data.column("n")[0].as_py()
    assert batches[0].lines[0] == first_row  # counted on demand, and right


def test_s3_folder_through_fsspec(s3: Any, tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    fs = s3.filesystem()
    fs.put(str(tmp_path) + "/", f"{s3.url}/data/", recursive=True)
    source = sources.files(f"{s3.url}/data", partition_bytes=40, storage_options=s3.storage_options)
    assert all(p.path.startswith(f"{s3.url}/data/") for p in source.partitions())
    remote = pickle.loads(pickle.dumps(source))
    assert sorted(_rows(remote, "pyarrow"), key=lambda row: row["id"]) == ROWS
    before = source.fingerprint()
    fs.pipe(f"{s3.url}/data/b.csv", b"id,name,score\n99,x,0.5\n")
    assert (
        sources.files(f"{s3.url}/data", storage_options=s3.storage_options).fingerprint() != before
    )


def test_s3_byte_ranges_and_malformed_lines(s3: Any) -> None:
    lines = [json.dumps({"n": n}) if n % 7 else "{broken" for n in range(1, 501)]
    s3.filesystem().pipe(f"{s3.url}/x.jsonl", ("\n".join(lines) + "\n").encode())
    source = sources.jsonl(
        f"{s3.url}/x.jsonl", partition_bytes=500, storage_options=s3.storage_options
    )
    assert len(source.partitions()) > 5
    seen, bad = [], []
    for partition in source.partitions():
        for batch in source.read(partition, "records", 16):
            seen += [(line, row["n"]) for line, row in zip(batch.lines, batch.data, strict=True)]
            bad += [error.line for error in batch.errors]
    assert seen == [(n, n) for n in range(1, 501) if n % 7]
    assert bad == [n for n in range(1, 501) if n % 7 == 0]


def test_memory_urls(tmp_path: Path) -> None:
    with fsspec.open("memory://mem-test/a.csv", "wb") as file:
        file.write(b"a,b\n1,x\n2,y\n")
    assert _rows(sources.csv("memory://mem-test")) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
