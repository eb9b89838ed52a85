"""``batchpilot run --executor dask|ray --address``: real clusters on loopback (issue 13, item 5).

The Dask test starts ``dask scheduler`` and two ``dask worker`` processes, SIGKILLs
one worker while the job runs and checks every record is in the output exactly
once. The Ray test starts ``ray start --head --block`` in its own temp dir and runs a job
with ``--address HOST:PORT`` and one with ``--address auto``. Each
process started here is ended by its pid in a ``finally`` (not ``ray stop``,
which would stop every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchpilot.cli import job_path, main

BIN = Path(sys.executable).parent
FUNCTIONS = textwrap.dedent(
    """
    import os
    import time

    def slow_double(records):
        # About 0.1 s per call; logs which process ran which ids.
        time.sleep(0.1)
        with open("calls.log", "a") as log:
            log.write(f"{os.getpid()} {' '.join(str(r['id']) for r in records)}\\n")
        return [{"id": r["id"], "y": 2 * r["id"]} for r in records]
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A temp dir as cwd, holding a uniquely named module of batch functions."""
    module = f"clusterfns_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(FUNCTIONS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _committed_items(job: Path) -> int:
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM run WHERE key = 'progress'").fetchone()
    except sqlite3.Error:
        return 0
    return 0 if row is None else int(json.loads(row[0])["items"])


def _end(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` and every process it started, by pid: SIGTERM, then SIGKILL."""
    import psutil

    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=15)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=15)
    process.wait(timeout=15)


@contextlib.contextmanager
def _started(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            _end(process)


def _python_path(tmp: Path) -> str:
    """The user's module first, then this interpreter's path (the tested source tree)."""
    return os.pathsep.join([str(tmp), *sys.path])


def _cli_run(
    tmp: Path, module: str, *argv: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchpilot", "run", f"{module}:slow_double", "-i", "in.jsonl",
         "-o", "out.jsonl", "--batch-size", "10", "--no-progress", *argv],
        cwd=tmp, env={**os.environ, **(env or {}), "PYTHONPATH": _python_path(tmp)},
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _ids(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_job_on_a_dask_cluster_survives_a_worker_killed_mid_job(workdir) -> None:
    pytest.importorskip("dask.distributed")
    tmp, module = workdir
    total = 600
    (tmp / "in.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(total)))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": _python_path(tmp)}  # the workers import the user's module
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker_argv = [str(BIN / "dask"), "worker", address, "--no-nanny", "--nthreads", "1",
                   "--host", "127.0.0.1", "--no-dashboard"]  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    workers = [
        subprocess.Popen([*worker_argv, "--name", f"w{n}"], cwd=tmp, env=env, **quiet)
        for n in range(2)
    ]
    with _started(*workers, scheduler):
        from dask.distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        job = _cli_run(tmp, module, "--executor", "dask", "--address", address)
        try:
            _wait_for(lambda: _committed_items(job_path(tmp / "out.jsonl")) >= 100, "100 done")
            assert job.poll() is None, "the job ended before a worker could be killed"
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=30)
            _, err = job.communicate(timeout=180)
        finally:
            if job.poll() is None:
                job.kill()
                job.communicate(timeout=30)
        assert job.returncode == 0, err
        assert f"{total} items" in err
    assert _ids(tmp / "out.jsonl") == list(range(total))  # 0 lost, 0 duplicated, in order
    pids = {line.split()[0] for line in (tmp / "calls.log").read_text().splitlines()}
    assert str(workers[0].pid) in pids and str(workers[1].pid) in pids


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_job_runs_on_a_ray_cluster_started_by_ray_start(workdir) -> None:
    pytest.importorskip("ray")
    tmp, module = workdir
    total = 200
    (tmp / "in.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(total)))
    port = _free_port()
    temp_dir = Path(f"/tmp/bp_ray_{uuid.uuid4().hex[:8]}")  # short: Ray's socket paths
    # Ray 2.5x+ clusters require a token; the CLI's driver finds it in the same variables.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--port", str(port),
         "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--num-cpus", "2",
         "--temp-dir", str(temp_dir), "--disable-usage-stats"],
        cwd=tmp, env={**os.environ, **auth, "PYTHONPATH": _python_path(tmp)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, temp_dir, ignore_errors=True)
        cleanup.enter_context(_started(head))
        address = f"127.0.0.1:{port}"
        _wait_for(lambda: _listening(port), f"the Ray head on port {port}", timeout=120)
        # HOST:PORT, then "auto", which finds the cluster through RAY_ADDRESS; each run's
        # output is checked (every chunk ran in a Ray worker), then moved aside.
        for argument, env in ((address, auth), ("auto", {**auth, "RAY_ADDRESS": address})):
            job = _cli_run(tmp, module, "--executor", "ray", "--address", argument, env=env)
            try:
                _, err = job.communicate(timeout=180)
            finally:
                if job.poll() is None:
                    job.kill()
                    job.communicate(timeout=30)
            assert job.returncode == 0, f"--address {argument}: {err}"
            assert f"{total} items" in err
            assert _ids(tmp / "out.jsonl") == list(range(total))
            callers = {
                int(line.split()[0]) for line in (tmp / "calls.log").read_text().splitlines()
            }
            assert job.pid not in callers and os.getpid() not in callers
            (tmp / "out.jsonl").rename(tmp / f"out-{argument.replace(':', '-')}.jsonl")
            (tmp / "calls.log").unlink()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_address_needs_a_cluster_executor(workdir, capsys) -> None:
    tmp, module = workdir
    (tmp / "in.jsonl").write_text('{"id": 1}\n')
    code = main(["run", f"{module}:slow_double", "-i", "in.jsonl", "-o", "out.jsonl",
                 "--address", "tcp://127.0.0.1:1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "batchpilot: error: --address needs --executor dask or ray"


@pytest.mark.timeout(60)
def test_an_unreachable_dask_scheduler_is_one_line_and_exit_2(workdir, capsys) -> None:
    pytest.importorskip("dask.distributed")
    tmp, module = workdir
    (tmp / "in.jsonl").write_text('{"id": 1}\n')
    address = f"tcp://127.0.0.1:{_free_port()}"
    code = main(["run", f"{module}:slow_double", "-i", "in.jsonl", "-o", "out.jsonl",
                 "--executor", "dask", "--address", address, "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"batchpilot: error: cannot connect to the dask cluster at {address}: ")
    assert err.count("\n") == 1, err
    assert not (tmp / "out.jsonl").exists()
    assert not job_path(tmp / "out.jsonl").exists()
