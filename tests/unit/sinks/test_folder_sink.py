"""Part-file sinks on a local folder and on fsspec's memory:// filesystem (no mocks)."""

from __future__ import annotations

import datetime
import decimal
import gzip
import io
import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchpilot import sinks
from batchpilot.errors import ClosedError, ConfigError
from batchpilot.sinks import PartInfo, Sink


@pytest.fixture(params=["local", "memory"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An output folder that does not exist yet: a local path, or a memory:// URL."""
    if request.param == "local":
        return str(tmp_path / "out")
    return f"memory://sinks-{uuid.uuid4().hex}/out"


def names(folder: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(folder)
    return sorted(Path(entry).name for entry in fs.ls(root, detail=False))


def read_bytes(folder: str, name: str) -> bytes:
    with fsspec.open(f"{folder}/{name}", "rb") as file:
        return bytes(file.read())


def write_part(sink: Any, partition: int, *tables: pa.Table) -> PartInfo:
    part = sink.open_part(partition)
    for table in tables:
        part.write(table)
    return part.commit()  # type: ignore[no-any-return]


def test_each_partition_commits_one_named_part_and_finish_writes_manifest_then_success(
    folder: str,
) -> None:
    sink = sinks.parquet(folder)
    assert isinstance(sink, Sink)
    sink.prepare(resume=False)
    assert names(folder) == []
    parts = [
        write_part(sink, 1, pa.table({"x": [3, 4]}), pa.table({"x": [5]})),
        write_part(sink, 0, pa.table({"x": [1, 2]})),
    ]
    assert [(p.partition, Path(str(p.path)).name, p.rows) for p in parts] == [
        (1, "part-00001.parquet", 3),
        (0, "part-00000.parquet", 2),
    ]
    sink.finish(parts)

    assert names(folder) == [
        "_SUCCESS",
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert read_bytes(folder, "_SUCCESS") == b""
    manifest = json.loads(read_bytes(folder, "_manifest.json"))
    sizes = [len(read_bytes(folder, f"part-0000{i}.parquet")) for i in range(2)]
    assert manifest == {
        "format": "parquet",
        "partitions": 2,
        "rows": 5,
        "bytes": sum(sizes),
        "parts": [
            {"partition": 0, "path": "part-00000.parquet", "rows": 2, "bytes": sizes[0]},
            {"partition": 1, "path": "part-00001.parquet", "rows": 3, "bytes": sizes[1]},
        ],
    }
    table = pq.read_table(io.BytesIO(read_bytes(folder, "part-00001.parquet")))
    assert table.to_pydict() == {"x": [3, 4, 5]}


def test_nothing_is_visible_before_commit_and_a_second_commit_replaces_the_first(
    folder: str,
) -> None:
    sink = sinks.jsonl(folder)
    sink.prepare(resume=False)
    write_part(sink, 7, pa.table({"x": [1]}))
    redo = sink.open_part(7)
    redo.write(pa.table({"x": [2, 3]}))
    assert read_bytes(folder, "part-00007.jsonl") == b'{"x": 1}\n'  # the old part, whole
    info = redo.commit()
    assert [name for name in names(folder) if not name.startswith(".")] == ["part-00007.jsonl"]
    assert read_bytes(folder, "part-00007.jsonl") == b'{"x": 2}\n{"x": 3}\n'
    assert info.rows == 2 and info.bytes == len(b'{"x": 2}\n{"x": 3}\n')


def test_abort_drops_the_part_and_the_writer_is_closed_after_it(folder: str) -> None:
    sink = sinks.parquet(folder, row_group_rows=1)  # rows reach the temporary file at once
    sink.prepare(resume=False)
    part = sink.open_part(0)
    part.write(pa.table({"x": [1, 2]}))
    part.abort()
    part.abort()  # idempotent
    assert names(folder) == []
    with pytest.raises(ClosedError, match="aborted"):
        part.write(pa.table({"x": [3]}))
    with pytest.raises(ClosedError, match="aborted"):
        part.commit()


def test_a_part_without_rows_is_no_file_and_removes_an_earlier_commit(folder: str) -> None:
    sink = sinks.parquet(folder)
    sink.prepare(resume=False)
    write_part(sink, 0, pa.table({"x": [1]}))
    empty = write_part(sink, 0)
    assert empty == PartInfo(0, None, 0, 0)
    assert names(folder) == []
    sink.finish([empty])
    assert json.loads(read_bytes(folder, "_manifest.json"))["parts"] == []


def test_a_new_run_refuses_a_folder_with_output(folder: str) -> None:
    sink = sinks.parquet(folder)
    sink.prepare(resume=False)
    sink.prepare(resume=False)  # an empty folder is fine, twice
    write_part(sink, 3, pa.table({"x": [1]}))
    with pytest.raises(ConfigError, match=r"already holds output \(part-00003.parquet\)"):
        sink.prepare(resume=False)
    # Another writer's parts count too (Spark's part-00000-<uuid>.snappy.parquet).
    other = sinks.jsonl(folder)
    with pytest.raises(ConfigError, match=r"part-00003\.parquet"):
        other.prepare(resume=False)


def test_a_new_run_refuses_a_finished_folder(folder: str) -> None:
    sink = sinks.jsonl(folder)
    sink.prepare(resume=False)
    sink.finish([])
    with pytest.raises(ConfigError, match="_SUCCESS"):
        sink.prepare(resume=False)


def test_resume_keeps_parts_and_drops_success_manifest_and_temporary_files(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    sink = sinks.parquet(folder, row_group_rows=1)
    sink.prepare(resume=False)
    kept = write_part(sink, 0, pa.table({"x": [1]}))
    sink.finish([kept])
    unfinished = sink.open_part(1)
    unfinished.write(pa.table({"x": [2]}))  # a worker that died here leaves its temp file
    assert len([name for name in os.listdir(folder) if name.endswith(".tmp")]) == 1

    sink.prepare(resume=True)
    assert os.listdir(folder) == ["part-00000.parquet"]


def test_finish_deletes_parts_of_partitions_it_was_not_given(folder: str) -> None:
    sink = sinks.jsonl(folder)
    sink.prepare(resume=False)
    parts = [write_part(sink, i, pa.table({"x": [i]})) for i in range(3)]
    sink.finish([parts[0], parts[2]])  # partition 1: a leftover of an earlier attempt
    assert names(folder) == ["_SUCCESS", "_manifest.json", "part-00000.jsonl", "part-00002.jsonl"]


def test_finish_refuses_missing_parts_and_partitions_listed_twice(folder: str) -> None:
    sink = sinks.jsonl(folder)
    sink.prepare(resume=False)
    part = write_part(sink, 0, pa.table({"x": [1]}))
    with pytest.raises(ValueError, match="listed twice"):
        sink.finish([part, part])
    fs, root = fsspec.core.url_to_fs(folder)
    fs.rm_file(f"{root}/part-00000.jsonl")
    with pytest.raises(ValueError, match="missing"):
        sink.finish([part])
    assert "_SUCCESS" not in names(folder)


def test_parquet_row_groups_and_batches_cast_to_the_first_batchs_schema(tmp_path: Path) -> None:
    sink = sinks.parquet(tmp_path / "out", row_group_rows=4)
    sink.prepare(resume=False)
    first = pa.table({"x": pa.array([1, 2, 3], pa.int64()), "y": ["a", "b", "c"]})
    reordered = pa.table({"y": ["d", "e", "f"], "x": pa.array([4, 5, 6], pa.int32())})
    info = write_part(sink, 0, first, reordered, first.slice(0, 1))
    file = pq.ParquetFile(str(info.path))
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [4, 3]
    assert file.read().to_pydict() == {"x": [1, 2, 3, 4, 5, 6, 1], "y": [*"abcdef", "a"]}

    part = sink.open_part(1)
    part.write(first)
    with pytest.raises(ValueError, match="do not match the part's first batch"):
        part.write(pa.table({"z": [1]}))
    part.abort()


def test_jsonl_rows_are_encoded_as_every_batchpilot_output_encodes_them(tmp_path: Path) -> None:
    from batchpilot.cli.outputs import jsonl_text

    table = pa.table(
        {
            "i": [1, None],
            "f": [0.5, float("nan")],
            "s": ["é", "b"],
            "l": [[1, 2], []],
            "t": [datetime.datetime(2024, 1, 2, 3, 4, 5), None],
            "d": [decimal.Decimal("1.50"), None],
        }
    )
    sink = sinks.jsonl(tmp_path / "plain")
    sink.prepare(resume=False)
    info = write_part(sink, 0, table)
    text = Path(str(info.path)).read_text("utf-8")
    assert text == jsonl_text(table.to_pylist())
    assert json.loads(text.splitlines()[0]) == {
        "i": 1,
        "f": 0.5,
        "s": "é",
        "l": [1, 2],
        "t": "2024-01-02 03:04:05",
        "d": "1.50",
    }

    for compression, suffix in [("gzip", ".jsonl.gz"), ("zstd", ".jsonl.zst")]:
        packed = sinks.jsonl(tmp_path / compression, compression=compression)
        packed.prepare(resume=False)
        path = str(write_part(packed, 0, table, table).path)
        assert path.endswith(f"part-00000{suffix}")
        with fsspec.open(path, "rt", compression="infer", encoding="utf-8") as lines:
            assert lines.read() == text + text


def test_sinks_pickle_and_a_local_folder_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = pickle.loads(pickle.dumps(sinks.parquet("out", compression="zstd")))
    assert sink.folder == str(tmp_path / "out")
    monkeypatch.chdir("/")
    sink.prepare(resume=False)
    write_part(sink, 0, pa.table({"x": [1]}))
    assert (
        pq.read_metadata(tmp_path / "out" / "part-00000.parquet").row_group(0).column(0).compression
        == "ZSTD"
    )


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="compression must be one of"):
        sinks.jsonl("out", compression="brotli")
    with pytest.raises(ConfigError, match="row_group_rows"):
        sinks.parquet("out", row_group_rows=0)
    with pytest.raises(ConfigError, match="storage_options"):
        sinks.parquet("out", storage_options="anon")  # type: ignore[arg-type]


def test_gzip_parts_are_gzip(tmp_path: Path) -> None:
    sink = sinks.jsonl(tmp_path, compression="gzip")
    sink.prepare(resume=False)
    info = write_part(sink, 0, pa.table({"x": [1]}))
    assert gzip.decompress(Path(str(info.path)).read_bytes()) == b'{"x": 1}\n'
