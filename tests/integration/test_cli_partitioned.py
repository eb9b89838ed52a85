"""``batchpilot run`` over a folder, a glob, several files or a URL: a partitioned run.

Real CLI processes (this interpreter, PYTHONPATH = the user's module + the tested
source tree) on real files, a real S3 endpoint (moto), a real Dask cluster of two
worker processes, and a real SIGKILL of the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FUNCTIONS = textwrap.dedent(
    """
    import os
    import time

    import pyarrow.compute as pc

    def records(rows):
        out = []
        for row in rows:
            if row["x"] < 0:
                raise ValueError(f"negative {row['x']}")
            out.append({"x": row["x"], "y": 2 * row["x"] + 1})
        return out

    def pyarrow(table):
        return table.append_column("y", pc.add(pc.multiply(table["x"], 2), 1))

    def pandas(frame):
        return frame.assign(y=frame["x"] * 2 + 1)

    def numpy(arrays):
        return {"x": arrays["x"], "y": arrays["x"] * 2 + 1}

    def slow(rows):
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.05")))
        return records(rows)
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A temp dir as cwd, holding a uniquely named module of batch functions."""
    module = f"partfns_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(FUNCTIONS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, module


def _env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join([str(tmp), *sys.path])
    return {**os.environ, **(extra or {}), "PYTHONPATH": path}


def cli(
    tmp: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``batchpilot run ARGV`` in a process of its own; its exit code and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "batchpilot", "run", *argv], cwd=tmp, env=_env(tmp, env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def parquet_folder(folder: Path, files: int = 3, rows: int = 10) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        ids = list(range(i * rows, (i + 1) * rows))
        pq.write_table(pa.table({"x": ids}), folder / f"part{i}.parquet")
    return list(range(files * rows))


def output_rows(folder: Path) -> list[dict[str, int]]:
    """Every row of the part files listed in the folder's manifest, by ``x``."""
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert (folder / "_SUCCESS").exists()
    rows: list[dict[str, int]] = []
    for part in manifest["parts"]:
        path = folder / part["path"]
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
        else:
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(rows, key=lambda row: row["x"])


def expected(ids: list[int]) -> list[dict[str, int]]:
    return [{"x": i, "y": 2 * i + 1} for i in ids]


@pytest.mark.parametrize("batch_format", ["records", "pyarrow", "pandas", "numpy"])
def test_a_folder_of_parquet_becomes_a_folder_of_parquet_in_each_batch_format(
    workdir, batch_format: str
) -> None:
    tmp, module = workdir
    ids = parquet_folder(tmp / "in")
    done = cli(tmp, f"{module}:{batch_format}", "-i", "in", "-o", "out",
               "--batch-format", batch_format, "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert output_rows(tmp / "out") == expected(ids)
    assert sorted(p.name for p in (tmp / "out").glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert not (tmp / "out.job.sqlite").exists()  # deleted once the run completed
    assert "30 items" in done.stderr


def test_a_malformed_jsonl_line_is_listed_with_its_file_and_line_and_exit_1(workdir) -> None:
    tmp, module = workdir
    (tmp / "in").mkdir()
    (tmp / "in" / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    (tmp / "in" / "b.jsonl").write_text('{"x": 3}\n{"x": \n{"x": -4}\n{"x": 5}\n')
    done = cli(tmp, f"{module}:records", "-i", "in", "-o", "out", "--no-progress")
    assert done.returncode == 1, done.stderr
    assert output_rows(tmp / "out") == expected([1, 2, 3, 5])  # JSON Lines by default
    failures = [
        json.loads(line) for line in (tmp / "out" / "_errors.jsonl").read_text().splitlines()
    ]
    b = str(tmp / "in" / "b.jsonl")
    assert [(f["file"], f["line"]) for f in failures] == [(b, 2), (b, 3)]
    assert failures[1]["error"] == "ValueError: negative -4"
    assert f"first: {b}:2:" in done.stderr
    assert "6 items (2 failed)" in done.stderr


def test_a_glob_and_two_inputs_each_make_one_partitioned_run(workdir) -> None:
    tmp, module = workdir
    ids = parquet_folder(tmp / "in", files=3)
    done = cli(tmp, f"{module}:records", "-i", "in/part[01].parquet", "-o", "globbed",
               "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert output_rows(tmp / "globbed") == expected(ids[:20])
    twice = cli(tmp, f"{module}:records", "-i", "in/part0.parquet", "-i", "in/part2.parquet",
                "-o", "twice", "--output-format", "jsonl", "--no-progress")  # fmt: skip
    assert twice.returncode == 0, twice.stderr
    assert output_rows(tmp / "twice") == expected(ids[:10] + ids[20:])
    assert sorted(p.name for p in (tmp / "twice").glob("part-*")) == [
        "part-00000.jsonl",
        "part-00001.jsonl",
    ]


def test_s3_in_and_out_with_storage_options(workdir, s3) -> None:
    tmp, module = workdir
    fs = s3.filesystem()
    for i in range(2):
        with fs.open(f"{s3.url}/in/part{i}.parquet", "wb") as file:
            pq.write_table(pa.table({"x": [i * 10 + j for j in range(10)]}), file)
    with fs.open(f"{s3.url}/in/bad.jsonl", "wb") as file:
        file.write(b'{"x": -1}\n')
    options = ["--storage-option", f"endpoint_url={s3.endpoint}", "--storage-option", "key=testing",
               "--storage-option", "secret=testing"]  # fmt: skip
    done = cli(tmp, f"{module}:records", "-i", f"{s3.url}/in/", "-o", f"{s3.url}/out",
               "--job", "s3.job.sqlite", "--output-format", "parquet", "--no-progress",
               *options)  # fmt: skip
    assert done.returncode == 1, done.stderr
    names = sorted(path.rsplit("/", 1)[-1] for path in fs.ls(f"{s3.url}/out"))
    # partition 0 is bad.jsonl (sorted first): no row, so no part
    assert names == ["_SUCCESS", "_errors.jsonl", "_manifest.json", "part-00001.parquet",
                     "part-00002.parquet"]  # fmt: skip
    got = [pq.read_table(f"{s3.url}/out/part-0000{i}.parquet", filesystem=fs).to_pylist()
           for i in (1, 2)]  # fmt: skip
    assert got == [expected(list(range(10))), expected(list(range(10, 20)))]
    failure = json.loads(fs.cat(f"{s3.url}/out/_errors.jsonl"))
    assert failure["file"].endswith("/in/bad.jsonl") and failure["line"] == 1
    remote = cli(tmp, f"{module}:records", "-i", f"{s3.url}/in/", "-o", f"{s3.url}/out2",
                 "--no-progress", *options)  # fmt: skip
    assert remote.returncode == 2 and "--job FILE" in remote.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_executor_dask_on_a_cluster_of_two_worker_processes(workdir) -> None:
    distributed = pytest.importorskip("dask.distributed")
    tmp, module = workdir
    ids = parquet_folder(tmp / "in", files=6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster:  # fmt: skip
        done = cli(tmp, f"{module}:pyarrow", "-i", "in", "-o", "out", "--batch-format",
                   "pyarrow", "--executor", "dask", "--address", cluster.scheduler_address,
                   "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert output_rows(tmp / "out") == expected(ids)


def test_max_failures_stops_with_exit_3_and_resume_finishes(workdir) -> None:
    tmp, module = workdir
    (tmp / "in").mkdir()
    for i in range(6):
        rows = [{"x": -1 - i}] + [{"x": 10 * i + j} for j in range(1, 4)]
        (tmp / "in" / f"f{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = cli(tmp, f"{module}:records", "-i", "in", "-o", "out", "--max-failures", "1",
               "--workers", "1", "--no-progress")  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "more than --max-failures 1 records failed" in done.stderr
    assert "--resume" in done.stderr
    assert not (tmp / "out" / "_SUCCESS").exists()
    assert (tmp / "out.job.sqlite").exists()
    with sqlite3.connect(tmp / "out.job.sqlite") as db:
        recorded = db.execute("SELECT count(*) FROM partitions").fetchone()[0]
    assert 2 <= recorded < 6  # stopped once the second failure was counted, not at the end
    again = cli(tmp, f"{module}:records", "-i", "in", "-o", "out", "--no-progress")
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = cli(tmp, f"{module}:records", "-i", "in", "-o", "out", "--resume", "--no-progress")
    assert resumed.returncode == 1, resumed.stderr
    ids = [10 * i + j for i in range(6) for j in range(1, 4)]
    assert output_rows(tmp / "out") == expected(ids)
    assert len((tmp / "out" / "_errors.jsonl").read_text().splitlines()) == 6


def test_fail_fast_stops_at_the_first_failed_row_with_exit_3(workdir) -> None:
    tmp, module = workdir
    (tmp / "in").mkdir()
    (tmp / "in" / "a.jsonl").write_text('{"x": 1}\n{"x": -2}\n')
    (tmp / "in" / "b.jsonl").write_text('{"x": 3}\n')
    done = cli(tmp, f"{module}:records", "-i", "in", "-o", "out", "--fail-fast", "--no-progress")
    assert done.returncode == 3, done.stderr
    assert f"--fail-fast: {tmp / 'in' / 'a.jsonl'}:1: ValueError: negative -2" in done.stderr
    assert not (tmp / "out" / "_SUCCESS").exists()


def _recorded(job: Path) -> int:
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM partitions").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.timeout(300)
def test_a_sigkilled_run_resumes_to_an_exactly_once_output(workdir) -> None:
    tmp, module = workdir
    ids = parquet_folder(tmp / "in", files=12, rows=20)
    argv = [f"{module}:slow", "-i", "in", "-o", "out", "--workers", "2", "--batch-size", "5",
            "--no-progress"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "batchpilot", "run", *argv], cwd=tmp, env=_env(tmp),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: _recorded(tmp / "out.job.sqlite") >= 3 or process.poll() is not None,
                  "3 partitions recorded")  # fmt: skip
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert _recorded(tmp / "out.job.sqlite") < 12
    assert not (tmp / "out" / "_SUCCESS").exists()
    resumed = cli(tmp, *argv, "--resume", env={"SLOW_SECONDS": "0"})
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the checkpoint" in resumed.stderr
    assert output_rows(tmp / "out") == expected(ids)  # each row once
    assert len(list((tmp / "out").glob("part-*"))) == 12
    assert not [p for p in (tmp / "out").iterdir() if p.name.endswith(".tmp")]
