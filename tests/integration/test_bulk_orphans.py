"""A processes job killed with SIGKILL: its pool workers exit too, none is left orphaned."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

# A script file (forkserver workers import it by path), guarded by __main__.
# Each worker prints its pid and then blocks in the batch function forever.
SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from batchpilot.bulk import ProcessExecutor, map_batches

    def stall(xs):
        os.write(1, f"worker {os.getpid()}\\n".encode())  # one write: lines never mix
        threading.Event().wait()
        return xs

    if __name__ == "__main__":
        method = sys.argv[1]
        executor = ProcessExecutor(2, start_method=method) if method else "processes"
        for _ in map_batches(stall, range(100), batch_size=1, executor=executor, workers=2):
            pass
    """
)


@pytest.mark.parametrize("start_method", ["", "fork", "spawn"])  # "": the default
def test_pool_workers_exit_when_the_job_process_is_killed(
    tmp_path: Path, start_method: str
) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), start_method], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    workers: set[int] = set()
    for line in child.stdout:
        assert line.startswith("worker "), repr(line)
        workers.add(int(line.split()[1]))
        if len(workers) == 2:
            break
    assert len(workers) == 2, "the job did not start its workers"
    descendants = psutil.Process(child.pid).children(recursive=True)
    assert workers <= {p.pid for p in descendants}
    try:
        child.send_signal(signal.SIGKILL)
        child.wait()
        _, alive = psutil.wait_procs(descendants, timeout=15)
        assert alive == []  # workers (and a fork server) followed their parent
    finally:
        for process in descendants:
            if process.is_running():
                process.kill()
