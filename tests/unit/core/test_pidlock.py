"""`PidLock`: one owner per lock file, and no descriptor left behind on failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from batchpilot._core.pidlock import LockHeldError, PidLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock locks are POSIX")


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_second_lock_is_refused_with_the_holders_pid_and_leaks_nothing(tmp_path: Path) -> None:
    held = PidLock(tmp_path / "job")
    held.acquire()
    before = _open_descriptors()
    with pytest.raises(LockHeldError) as refused:
        PidLock(tmp_path / "job").acquire()
    assert refused.value.pid == os.getpid()
    assert _open_descriptors() == before
    assert held.held
    held.release()
    assert not (tmp_path / "job.lock").exists()


def test_a_lock_file_that_cannot_be_written_raises_and_leaks_no_descriptor(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "job.lock")  # opens and locks, but ftruncate fails with EINVAL
    before = _open_descriptors()
    lock = PidLock(tmp_path / "job")
    with pytest.raises(OSError):
        lock.acquire()
    assert _open_descriptors() == before
    assert not lock.held
