"""map_batches over a partitioned source: each task reads, computes and commits its own part.

Real files, a real S3 endpoint (moto's server on 127.0.0.1), real job files; the
executor here is threads (the clusters are in test_bulk_partitions_clusters.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchpilot import sinks, sources
from batchpilot.bulk import JobMismatchError, PartitionFailed, map_batches

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")
pq = pytest.importorskip("pyarrow.parquet")

ROWS_PER_FILE = 400


def write_parquet(folder: Path, files: int = 4, row_group: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        ids = np.arange(i * ROWS_PER_FILE, (i + 1) * ROWS_PER_FILE)
        table = pa.table({"id": ids, "x": ids * 0.5})
        pq.write_table(table, folder / f"in-{i}.parquet", row_group_size=row_group)
    return folder


def read_folder(folder: Path) -> Any:
    manifest = json.loads((folder / "_manifest.json").read_text())
    tables = [pq.read_table(folder / part["path"]) for part in manifest["parts"]]
    return pa.concat_tables(tables) if tables else None


FUNCTIONS = {
    "pyarrow": lambda t: t.append_column("y", pc.add(pc.multiply(t["x"], 2.0), 1.0)),
    "pandas": lambda df: df.assign(y=df["x"] * 2.0 + 1.0),
    "numpy": lambda cols: {**cols, "y": cols["x"] * 2.0 + 1.0},
    "records": lambda rows: [{**row, "y": row["x"] * 2.0 + 1.0} for row in rows],
}


@pytest.mark.parametrize("batch_format", sorted(FUNCTIONS))
def test_every_row_is_written_once_in_every_batch_format(tmp_path: Path, batch_format: str) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"), partition_rows=200)
    run = map_batches(
        FUNCTIONS[batch_format],
        source,
        batch_format=batch_format,
        batch_size=64,
        sink=sinks.parquet(tmp_path / "out"),
        workers=2,
    )
    parts = list(run)
    assert [p.partition for p in parts] == list(range(8))  # in partition order
    out = read_folder(tmp_path / "out").sort_by("id")
    assert out["id"].to_pylist() == list(range(4 * ROWS_PER_FILE))
    assert out["y"].to_pylist() == [i * 0.5 * 2 + 1 for i in range(4 * ROWS_PER_FILE)]
    assert (tmp_path / "out" / "_SUCCESS").exists()
    stats = run.stats()
    assert (stats["partitions_done"], stats["rows"], stats["rows_failed"]) == (8, 1600, 0)
    assert stats["batches"] == 8 * 4  # 200 rows a partition, 64 a batch


def test_without_a_sink_the_results_come_back_in_partition_order(tmp_path: Path) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"))
    tables = list(map_batches(FUNCTIONS["pyarrow"], source, batch_format="pyarrow"))
    ids = pa.concat_tables(tables)["id"].to_pylist()
    assert ids == list(range(4 * ROWS_PER_FILE))


def _reject_multiples_of_97(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if any(row["id"] % 97 == 0 for row in rows):
        raise ValueError("a multiple of 97")
    return rows


def _reject_multiples_of_97_columnar(table: Any) -> Any:
    if any(i % 97 == 0 for i in table["id"].to_pylist()):
        raise ValueError("a multiple of 97")
    return table


@pytest.mark.parametrize(
    ("batch_format", "fn"),
    [("records", _reject_multiples_of_97), ("pyarrow", _reject_multiples_of_97_columnar)],
)
def test_a_failing_row_is_reported_with_its_file_and_line_and_the_rest_written(
    tmp_path: Path, batch_format: str, fn: Any
) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"))
    run = map_batches(
        fn, source, batch_format=batch_format, batch_size=50, sink=sinks.parquet(tmp_path / "out")
    )
    run.wait()
    bad = [i for i in range(4 * ROWS_PER_FILE) if i % 97 == 0]
    failed = sorted((f.path, f.line) for f in run.failures)
    expected = sorted(
        (str(tmp_path / "in" / f"in-{i // ROWS_PER_FILE}.parquet"), i % ROWS_PER_FILE + 1)
        for i in bad
    )
    assert failed == expected
    assert all(f.error == "ValueError: a multiple of 97" for f in run.failures)
    written = read_folder(tmp_path / "out")["id"].to_pylist()
    assert sorted(written) == [i for i in range(4 * ROWS_PER_FILE) if i % 97]


def test_a_malformed_line_is_reported_and_the_partition_goes_on(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i, "x": i * 0.5}) for i in range(10)]
    lines[4] = '{"id": 4, "x": '  # cut off
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    run = map_batches(
        FUNCTIONS["records"], sources.jsonl(tmp_path / "in.jsonl"), batch_format="records"
    )
    rows = [row for batch in run for row in batch]
    assert [row["id"] for row in rows] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [(f.path, f.line) for f in run.failures] == [(str(tmp_path / "in.jsonl"), 5)]


def test_fail_fast_stops_at_the_first_failing_row_without_success_marker(tmp_path: Path) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"))
    run = map_batches(
        _reject_multiples_of_97,
        source,
        batch_format="records",
        sink=sinks.parquet(tmp_path / "out"),
        fail_fast=True,
        workers=1,
    )
    with pytest.raises(PartitionFailed, match="a multiple of 97") as raised:
        run.wait()
    assert raised.value.failure.path.endswith("in-0.parquet")
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def _fail_on(poison: Path) -> Any:
    def fn(table: Any) -> Any:
        if poison.exists() and 1000 in table["id"].to_pylist():
            raise RuntimeError("poisoned")
        return table

    return fn


def finished_partitions(job: Path) -> list[int]:
    with sqlite3.connect(job) as db:
        return [row[0] for row in db.execute("SELECT idx FROM partitions ORDER BY idx")]


def test_a_rerun_with_the_job_file_skips_finished_partitions(tmp_path: Path) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"))  # one partition a file
    poison = tmp_path / "poison"
    poison.touch()
    job = tmp_path / "job.sqlite"
    options: dict[str, Any] = {
        "batch_format": "pyarrow",
        "sink": sinks.parquet(tmp_path / "out"),
        "job": str(job),
        "fail_fast": True,
        "workers": 1,
    }
    with pytest.raises(PartitionFailed):
        map_batches(_fail_on(poison), source, **options).wait()
    assert finished_partitions(job) == [0, 1]  # partition 2 holds id 1000
    poison.unlink()
    seen: list[int] = []

    def counting(table: Any) -> Any:
        seen.append(table["id"][0].as_py() // ROWS_PER_FILE)
        return table

    run = map_batches(counting, source, **options)
    assert [p.partition for p in run] == [0, 1, 2, 3]
    assert sorted(set(seen)) == [2, 3]  # partitions 0 and 1 were not run again
    assert run.stats()["partitions_resumed"] == 2
    ids = read_folder(tmp_path / "out")["id"].to_pylist()
    assert sorted(ids) == list(range(4 * ROWS_PER_FILE))


def test_a_changed_input_refuses_the_job_file(tmp_path: Path) -> None:
    folder = write_parquet(tmp_path / "in")
    job = str(tmp_path / "job.sqlite")
    sink = sinks.parquet(tmp_path / "out")
    map_batches(FUNCTIONS["pyarrow"], sources.parquet(folder), sink=sink, job=job).wait()
    write_parquet(tmp_path / "in", files=5)
    with pytest.raises(JobMismatchError, match="another input"):
        map_batches(FUNCTIONS["pyarrow"], sources.parquet(folder), sink=sink, job=job).wait()


def test_options_that_need_a_partitioned_source_or_a_sink_are_refused(tmp_path: Path) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"))
    with pytest.raises(ValueError, match="needs sink="):
        map_batches(FUNCTIONS["pyarrow"], source, job=str(tmp_path / "job.sqlite"))
    with pytest.raises(ValueError, match="need a partitioned source"):
        map_batches(lambda xs: xs, [1, 2], batch_format="pyarrow")
    with pytest.raises(ValueError, match="batch_format"):
        map_batches(FUNCTIONS["pyarrow"], source, batch_format="arrow")
    with pytest.raises(ValueError, match="cost= is not supported"):
        map_batches(FUNCTIONS["pyarrow"], source, cost=len)


def test_from_s3_to_s3(s3: Any, tmp_path: Path) -> None:
    fs = s3.filesystem()
    for i in range(3):
        ids = np.arange(i * 100, (i + 1) * 100)
        with fs.open(f"{s3.url}/in/part-{i}.parquet", "wb") as f:
            pq.write_table(pa.table({"id": ids, "x": ids * 0.5}), f)
    source = sources.parquet(f"{s3.url}/in/", storage_options=s3.storage_options)
    sink = sinks.parquet(f"{s3.url}/out", storage_options=s3.storage_options)
    run = map_batches(FUNCTIONS["pyarrow"], source, batch_format="pyarrow", sink=sink)
    run.wait()
    assert fs.exists(f"{s3.url}/out/_SUCCESS")
    keys = sorted(k for k in fs.ls(f"{s3.url}/out") if k.endswith(".parquet"))
    table = pa.concat_tables([pq.read_table(fs.open(k, "rb")) for k in keys])
    assert sorted(table["id"].to_pylist()) == list(range(300))


def test_a_resume_with_another_batch_format_or_sink_is_refused(tmp_path: Path) -> None:
    source = sources.parquet(write_parquet(tmp_path / "in"))
    job = str(tmp_path / "job.sqlite")
    poison = tmp_path / "poison"
    poison.touch()
    with pytest.raises(PartitionFailed):
        map_batches(
            _fail_on(poison), source, batch_format="pyarrow", fail_fast=True, workers=1,
            sink=sinks.parquet(tmp_path / "out"), job=job,
        ).wait()  # fmt: skip
    for other in (
        {"batch_format": "pandas", "sink": sinks.parquet(tmp_path / "out")},
        {"batch_format": "pyarrow", "sink": sinks.parquet(tmp_path / "elsewhere")},
    ):
        with pytest.raises(JobMismatchError, match="other settings"):
            map_batches(FUNCTIONS[other["batch_format"]], source, job=job, **other).wait()
