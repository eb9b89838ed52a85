"""The job file lock of map_batches is the core's `PidLock` on ``<job>.lock``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from batchpilot._core.pidlock import PidLock
from batchpilot.bulk import JobFileError, JobInUseError, map_batches

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")


def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def test_the_lock_file_names_the_holder_and_goes_when_the_run_closes(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    lock_file = tmp_path / "job.sqlite.lock"
    run = map_batches(double, range(30), batch_size=10, job=str(job))
    assert next(run) == 0
    assert lock_file.read_text() == str(os.getpid())
    run.close()
    assert not lock_file.exists()
    assert list(map_batches(double, range(30), batch_size=10, job=str(job))) == [
        x * 2 for x in range(30)
    ]
    assert not lock_file.exists()  # a run that finishes releases it too


def test_a_lock_file_left_by_a_dead_holder_does_not_block(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    (tmp_path / "job.sqlite.lock").write_text("999999")  # as kill -9 leaves it: no flock held
    assert list(map_batches(double, range(5), job=str(job))) == [0, 2, 4, 6, 8]


def test_a_job_held_through_the_core_lock_is_in_use(tmp_path: Path) -> None:
    """One lock for every user: a `PidLock` on the job path (as `batchpilot run` takes
    on its own job files) refuses a run, with the bulk engine's message."""
    job = tmp_path / "job.sqlite"
    held = PidLock(job)
    held.acquire()
    try:
        with pytest.raises(JobInUseError) as error:
            map_batches(double, range(5), job=str(job))
    finally:
        held.release()
    assert error.value.pid == os.getpid()
    assert str(error.value) == (
        f"job file {job} is in use by pid {os.getpid()} (it holds {job}.lock); "
        "wait for that run to finish or stop it, or use another job file"
    )
    assert not job.exists()  # refused before the job file was created


def test_a_lock_file_that_cannot_be_created_is_a_job_file_error(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    (tmp_path / "job.sqlite.lock").mkdir()
    with pytest.raises(JobFileError, match=f"cannot create the lock file {job}.lock of job file"):
        map_batches(double, range(5), job=str(job))
    assert not job.exists()
