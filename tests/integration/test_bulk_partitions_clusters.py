"""Partitioned runs on real clusters: a Dask cluster of 2 worker processes and a local Ray.

The driver is a real process, killed with SIGKILL at random points (after a random
number of partitions were recorded) and started again with the same job file; the
output then holds every input row exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchpilot import sinks, sources
from batchpilot.bulk import map_batches

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FILES, ROWS_PER_FILE = 4, 400  # 16 partitions of 100 rows

DRIVER = """
import sys, time
import pyarrow.compute as pc
from batchpilot import sinks, sources
from batchpilot.bulk import map_batches

kind, address, source, out, job = sys.argv[1:6]

def slow(table):
    time.sleep(0.05)
    return table.append_column("y", pc.multiply(table["x"], 2.0))

if kind == "dask":
    from dask.distributed import Client
    executor = Client(address)
else:
    import ray
    ray.init(address=address, log_to_driver=False)
    executor = "ray"
run = map_batches(slow, sources.parquet(source, partition_rows=100), batch_format="pyarrow",
                  batch_size=50, sink=sinks.parquet(out), job=job, executor=executor)
run.wait()
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1"
    )
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def write_input(folder: Path) -> Path:
    folder.mkdir()
    for i in range(FILES):
        ids = np.arange(i * ROWS_PER_FILE, (i + 1) * ROWS_PER_FILE)
        pq.write_table(
            pa.table({"id": ids, "x": ids * 0.5}), folder / f"in-{i}.parquet", row_group_size=100
        )
    return folder


def recorded(job: Path) -> int:
    """Partitions the job file records as finished (0 before it exists)."""
    if not job.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM partitions").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def output_ids(folder: Path) -> list[int]:
    manifest = json.loads((folder / "_manifest.json").read_text())
    ids: list[int] = []
    for part in manifest["parts"]:
        ids += pq.read_table(folder / part["path"])["id"].to_pylist()
    return ids


def kill_and_resume(kind: str, address: str, tmp_path: Path, kills: int) -> list[int]:
    """Start the driver, SIGKILL it after a random number of recorded partitions,
    ``kills`` times, then let it finish; return the output's ids."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    source, out, job = write_input(tmp_path / "in"), tmp_path / "out", tmp_path / "job.sqlite"
    command = [sys.executable, str(script), kind, address, str(source), str(out), str(job)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = random.Random(23)
    for _ in range(kills):
        target = recorded(job) + rng.randint(1, 3)
        driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while recorded(job) < target and driver.poll() is None:
            assert time.monotonic() < deadline, "the driver recorded no partition in 120 s"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert not (out / "_SUCCESS").exists()
    finished = subprocess.run(command, env=env, capture_output=True, timeout=240)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert (out / "_SUCCESS").exists()
    return output_ids(out)


def test_driver_sigkill_then_resume_on_dask_writes_every_row_once(
    dask_address: str, tmp_path: Path
) -> None:
    ids = kill_and_resume("dask", dask_address, tmp_path, kills=2)
    assert sorted(ids) == list(range(FILES * ROWS_PER_FILE))  # none lost, none twice


def test_driver_sigkill_then_resume_on_ray_writes_every_row_once(
    ray_address: str, tmp_path: Path
) -> None:
    ids = kill_and_resume("ray", ray_address, tmp_path, kills=2)
    assert sorted(ids) == list(range(FILES * ROWS_PER_FILE))


def _double_x(table: Any) -> Any:
    import pyarrow.compute as pc

    return table.append_column("y", pc.multiply(table["x"], 2.0))


def test_dask_workers_read_and_write_their_own_partitions(
    dask_address: str, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("dask.distributed")
    source = sources.parquet(write_input(tmp_path / "in"), partition_rows=100)
    with distributed.Client(dask_address) as client:
        run = map_batches(
            _double_x,
            source,
            batch_format="pyarrow",
            sink=sinks.parquet(tmp_path / "out"),
            executor=client,
        )
        run.wait()
    assert sorted(output_ids(tmp_path / "out")) == list(range(FILES * ROWS_PER_FILE))
    workers = run.stats()["workers"]
    assert 1 <= workers <= 2


def _die_once(marker: str) -> Any:
    """A pyarrow function whose worker process dies (SIGKILL) on partition 8, once."""

    def fn(table: Any) -> Any:
        if table["id"][0].as_py() == 800 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return _double_x(table)

    return fn


def test_a_lost_dask_worker_loses_no_row_and_duplicates_none(
    dask_address: str, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("dask.distributed")
    source = sources.parquet(write_input(tmp_path / "in"), partition_rows=100)
    marker = tmp_path / "died"
    with distributed.Client(dask_address) as client:
        run = map_batches(
            _die_once(str(marker)),
            source,
            batch_format="pyarrow",
            sink=sinks.parquet(tmp_path / "out"),
            job=str(tmp_path / "job.sqlite"),
            executor=client,
        )
        run.wait()
        client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next test
    assert marker.exists()  # a worker did die mid-partition
    assert sorted(output_ids(tmp_path / "out")) == list(range(FILES * ROWS_PER_FILE))


def _pid_model(log: str) -> type:
    """A model class whose setup() appends its process id to ``log``."""

    class PidModel:
        def setup(self) -> None:
            with open(log, "a") as file:
                file.write(f"{os.getpid()}\n")

        def predict(self, table: Any) -> Any:
            return _double_x(table)

    return PidModel


def _setups_of(log: Path) -> list[str]:
    return log.read_text().split()


def test_a_model_is_set_up_once_per_dask_worker_process(dask_address: str, tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    log = tmp_path / "setups.log"
    source = sources.parquet(write_input(tmp_path / "in"), partition_rows=100)
    with distributed.Client(dask_address) as client:
        run = map_batches(
            _pid_model(str(log)), source, batch_format="pyarrow", executor=client,
            sink=sinks.parquet(tmp_path / "out"),
        )  # fmt: skip
        run.wait()
    pids = _setups_of(log)
    assert len(pids) == len(set(pids)) == run.stats()["model_setups"]  # once per process
    assert 1 <= len(pids) <= 2 and str(os.getpid()) not in pids
    assert sorted(output_ids(tmp_path / "out")) == list(range(FILES * ROWS_PER_FILE))


def test_a_model_is_set_up_once_per_ray_actor(ray_address: str, tmp_path: Path) -> None:
    log = tmp_path / "setups.log"
    source = sources.parquet(write_input(tmp_path / "in"), partition_rows=100)
    run = map_batches(
        _pid_model(str(log)), source, batch_format="pyarrow", executor="ray",
        sink=sinks.parquet(tmp_path / "out"),
    )  # fmt: skip
    run.wait()
    pids = _setups_of(log)
    assert len(pids) == len(set(pids)) == run.stats()["model_setups"]
    assert 1 <= len(pids) <= 2 and str(os.getpid()) not in pids
    assert sorted(output_ids(tmp_path / "out")) == list(range(FILES * ROWS_PER_FILE))
