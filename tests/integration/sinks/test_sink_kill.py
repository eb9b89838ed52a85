"""A worker SIGKILLed while writing its part leaves no part; the redo commits exactly one.

Each worker is a real child process that unpickles the sink (as a cluster worker
does) and writes batches (``write_part.py``); the test kills it with SIGKILL once
it says it wrote some batches (synchronised on its output, no sleeps), then
resumes as a restarted driver would: ``prepare(resume=True)``, redo the
partition, ``finish``. Local folders (Parquet, gzip JSON Lines), a real S3
endpoint (moto's server through s3fs), and real SQLite and PostgreSQL tables.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from batchpilot import sinks
from batchpilot.sinks import PartInfo

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("write_part.py")
BATCHES, ROWS, HOLD_AFTER = 5, 10, 3  # a partition's batches; the kill comes after 3


def expected_ids(partitions: range) -> list[int]:
    return [p * 1_000_000 + i for p in partitions for i in range(BATCHES * ROWS)]


def run_worker(sink_file: Path, partition: int, env: dict[str, str] | None = None) -> PartInfo:
    """Write and commit ``partition``'s part in a child process."""
    done = subprocess.run(
        [sys.executable, str(CHILD), str(sink_file), str(partition), str(BATCHES), str(ROWS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return PartInfo(**json.loads(done.stdout.splitlines()[-1]))


def kill_worker(sink_file: Path, partition: int, env: dict[str, str] | None = None) -> None:
    """Start writing ``partition``'s part in a child; SIGKILL it after `HOLD_AFTER` batches."""
    arguments = [str(sink_file), str(partition), str(BATCHES), str(ROWS), str(HOLD_AFTER)]
    with subprocess.Popen(
        [sys.executable, str(CHILD), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "wrote\n"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL


def save(sink: Any, tmp_path: Path) -> Path:
    path = tmp_path / "sink.pickle"
    path.write_bytes(pickle.dumps(sink))
    return path


def killed_then_redone(sink: Any, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    """Partition 0 commits; partition 1's worker is killed mid-part; a resumed driver
    redoes partition 1 and also partition 0 again (committed twice), then finishes."""
    sink.prepare(resume=False)
    sink_file = save(sink, tmp_path)
    run_worker(sink_file, 0, env)
    kill_worker(sink_file, 1, env)


@pytest.mark.parametrize(
    ("make", "suffix"),
    [
        (lambda folder: sinks.parquet(folder, row_group_rows=ROWS), ".parquet"),
        (lambda folder: sinks.jsonl(folder, compression="gzip"), ".jsonl.gz"),
    ],
    ids=["parquet", "jsonl-gzip"],
)
def test_local_folder_kill_leaves_only_hidden_temp_data_and_the_redo_one_part(
    make: Any, suffix: str, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    sink = make(folder)
    killed_then_redone(sink, tmp_path)

    visible = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    assert visible == [f"part-00000{suffix}"]
    hidden = [name for name in os.listdir(folder) if name.startswith(".")]
    assert len(hidden) == 1 and hidden[0].startswith(f".part-00001{suffix}.")
    assert hidden[0].endswith(".tmp")  # what the killed worker wrote, if not still buffered

    sink.prepare(resume=True)  # the restarted driver
    assert sorted(os.listdir(folder)) == [f"part-00000{suffix}"]
    sink_file = save(sink, tmp_path)
    parts = [run_worker(sink_file, 1), run_worker(sink_file, 0)]
    sink.finish(parts)

    assert sorted(os.listdir(folder)) == [
        "_SUCCESS",
        "_manifest.json",
        f"part-00000{suffix}",
        f"part-00001{suffix}",
    ]
    assert read_ids(folder, suffix) == expected_ids(range(2))
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["rows"] == 2 * BATCHES * ROWS
    assert [part["path"] for part in manifest["parts"]] == [
        f"part-00000{suffix}",
        f"part-00001{suffix}",
    ]


def read_ids(folder: Path, suffix: str) -> list[int]:
    """Every id in the folder's parts, as a reader of the folder sees them, sorted."""
    if suffix == ".parquet":  # a dataset reader skips hidden and _ files
        return sorted(ds.dataset(folder, format="parquet").to_table()["id"].to_pylist())
    ids = []
    for path in folder.glob(f"part-*{suffix}"):
        with gzip.open(path, "rt") as lines:
            ids += [json.loads(line)["id"] for line in lines]
    return sorted(ids)


def test_s3_kill_leaves_no_object_and_the_redo_one_part(s3: Any, tmp_path: Path) -> None:
    url = f"{s3.url}/out"
    sink = sinks.parquet(url, storage_options=s3.storage_options, row_group_rows=ROWS)
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(worker_tmp)}
    killed_then_redone(sink, tmp_path, env)

    fs = s3.filesystem()
    assert [Path(key).name for key in fs.ls(url)] == ["part-00000.parquet"]
    left = os.listdir(worker_tmp)  # the killed worker's upload buffer, never uploaded
    assert len(left) == 1 and left[0].startswith(".part-00001.parquet.")

    sink.prepare(resume=True)
    sink_file = save(sink, tmp_path)
    sink.finish([run_worker(sink_file, 1, env), run_worker(sink_file, 0, env)])

    fs = s3.filesystem()
    assert sorted(Path(key).name for key in fs.ls(url)) == [
        "_SUCCESS",
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    table = ds.dataset(url.removeprefix("s3://"), filesystem=fs, format="parquet").to_table()
    assert sorted(table["id"].to_pylist()) == expected_ids(range(2))


def test_database_kill_then_redo_stores_every_row_once(db_url: str, tmp_path: Path) -> None:
    from batchpilot.db import Database

    with Database(db_url) as db:
        db.create_table("scores", {"id": int, "y": int}, primary_key="id")
    sink = sinks.database(db_url, "scores", key="id")
    killed_then_redone(sink, tmp_path)
    assert len(stored(db_url)) == BATCHES * ROWS + HOLD_AFTER * ROWS  # committed per write

    sink.prepare(resume=True)
    sink_file = save(sink, tmp_path)
    parts = [run_worker(sink_file, 1), run_worker(sink_file, 0)]
    sink.finish(parts)

    assert parts == [PartInfo(1, None, BATCHES * ROWS), PartInfo(0, None, BATCHES * ROWS)]
    rows = stored(db_url)
    assert [row[0] for row in rows] == expected_ids(range(2))
    assert all(y == 2 * i + 1 for i, y in rows)


def stored(url: str) -> list[tuple[int, int]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, y FROM scores ORDER BY id"))
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()
