"""`JobLock`: one holder per job file, named by pid; the lock file goes with the holder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from batchpilot.cli import CliError
from batchpilot.cli.job import JobFile, JobLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")


def test_a_second_holder_is_refused_with_the_pid_of_the_first(tmp_path: Path) -> None:
    job = tmp_path / "out.jsonl.job.sqlite"
    first = JobLock(job)
    first.acquire()
    assert first.path.read_text() == str(os.getpid())
    with pytest.raises(CliError, match=rf"job {job} in use by pid {os.getpid()} "):
        JobLock(job).acquire()
    first.release()
    assert not first.path.exists()
    second = JobLock(job)
    second.acquire()  # free again
    second.release()


def test_a_lock_file_left_by_a_dead_holder_does_not_block(tmp_path: Path) -> None:
    job = tmp_path / "j.sqlite"
    (tmp_path / "j.sqlite.lock").write_text("999999")  # as kill -9 leaves it: no flock held
    lock = JobLock(job)
    lock.acquire()
    assert lock.path.read_text() == str(os.getpid())
    lock.release()


def test_closing_or_discarding_a_job_file_releases_its_lock(tmp_path: Path) -> None:
    for end in ("close", "discard"):
        job = JobFile(tmp_path / f"{end}.sqlite", {})
        job.lock.acquire()
        getattr(job, end)()
        assert not job.lock.path.exists()
        again = JobLock(job.path)
        again.acquire()  # would raise if still held
        again.release()
