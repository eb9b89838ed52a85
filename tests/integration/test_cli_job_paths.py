"""``batchpilot run`` with a job file or output folder that cannot work (issue 20, items 7, 8,
12; issue 22 item 10): each refused with exit 2 before FUNC runs. Real files, real runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from batchpilot.cli import job_path, main

FUNCTIONS = textwrap.dedent(
    """
    import pathlib

    def counted(records):
        # Logs each call, so a test can tell that FUNC never ran.
        with open(pathlib.Path(__file__).with_name("calls.log"), "a") as log:
            log.write(f"{len(records)}\\n")
        return [{"id": r["id"], "y": 2 * r["id"]} for r in records]

    def blocks_the_output(records):
        # Makes a folder where the final step writes the output's partial file.
        pathlib.Path("out.jsonl.partial").mkdir(exist_ok=True)
        return [{"id": r["id"]} for r in records]

    def stops_at_20(records):
        if any(r["id"] >= 20 for r in records):
            raise KeyboardInterrupt
        return [{"id": r["id"]} for r in records]
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A temp dir as cwd, holding a uniquely named module of batch functions."""
    module = f"jobpathfns_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(FUNCTIONS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, module


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["run", *argv])
    return code, capsys.readouterr().err


def calls(tmp: Path) -> int:
    log = tmp / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# ------------------------------------------------------------ --job is a file of the run


@pytest.mark.parametrize(
    ("output", "job", "role"),
    [
        ("new.sqlite", "new.sqlite", "the output"),
        ("out.jsonl", "out.jsonl", "the output"),
        ("out.parquet", "out.parquet", "the output"),
        ("out.jsonl", "out.jsonl.errors.jsonl", "the failures list"),
        ("out.jsonl", "out.jsonl.partial", "a file the run writes"),
        ("out.jsonl", "in.jsonl", "the input"),
        ("out.jsonl", "in", "the input"),  # its lock file, in.lock, would be the input
        ("out.jsonl", "link-to-input", "the input"),  # a symlink
        ("out.jsonl", "hard-link-to-input", "the input"),  # a hard link
        ("o.sqlite", "link-to-output", "the output"),  # a symlink to an output not yet made
    ],
)
def test_a_job_path_that_is_a_file_of_the_run_is_refused_before_any_work(
    workdir, capsys, output: str, job: str, role: str
) -> None:
    tmp, module = workdir
    source = write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(30)])
    (tmp / "in.lock").symlink_to("in.jsonl")  # the lock file of the job `in`
    (tmp / "link-to-input").symlink_to("in.jsonl")
    os.link(source, tmp / "hard-link-to-input")
    (tmp / "link-to-output").symlink_to("o.sqlite")
    before = source.read_bytes()
    code, err = run(
        capsys, f"{module}:counted", "-i", "in.jsonl", "-o", output, "--job", job, "--no-progress"
    )
    assert code == 2, err
    assert err.count("\n") == 1 and f"--job {job}" in err and role in err, err
    assert "delete" not in err
    assert calls(tmp) == 0, "FUNC ran before the clash was noticed"
    assert source.read_bytes() == before
    assert not (tmp / output).exists()
    assert not (tmp / f"{job}.lock").exists() or (tmp / f"{job}.lock").is_symlink()


def test_the_advice_to_resume_with_replace_never_loses_the_output(workdir, capsys) -> None:
    # The old way to lose a run: the job file was the SQLite output, deleted when done.
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(30)])
    argv = [f"{module}:counted", "-i", "in.jsonl", "-o", "new.sqlite", "--no-progress"]
    code, err = run(capsys, *argv, "--job", "new.sqlite")
    assert code == 2 and not (tmp / "new.sqlite").exists(), err
    code, err = run(capsys, *argv, "--job", "new.sqlite", "--resume", "--if-exists", "replace")
    assert code == 2 and calls(tmp) == 0, err
    assert run(capsys, *argv, "--job", "new.job")[0] == 0
    with sqlite3.connect(tmp / "new.sqlite") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (30,)


# ------------------------------------------------------------ a read-only output folder


def _without_root_overrides() -> None:
    """In the child before exec: drop the capabilities that let root write anywhere.

    Tests run as root in CI, where a read-only folder is writable; without
    CAP_DAC_OVERRIDE (and CAP_DAC_READ_SEARCH) in the bounding set, root meets
    the folder's mode bits like any user.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mode bits and prctl: Linux")
@pytest.mark.parametrize("output", ["out.jsonl", "out.sqlite", "out.parquet", "lake/"])
def test_a_read_only_output_folder_is_refused_before_any_work(workdir, output: str) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(30)])
    folder = tmp / "readonly"
    folder.mkdir()
    if output.endswith("/"):
        (folder / output).mkdir()
        (folder / output).chmod(0o555)
    folder.chmod(0o555)
    (tmp / "jobs").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "batchpilot", "run", f"{module}:counted", "-i", "in.jsonl",
             "-o", f"readonly/{output}", "--job", "jobs/j.sqlite", "--no-progress"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=60,
            preexec_fn=_without_root_overrides if os.geteuid() == 0 else None,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    target = folder / output.rstrip("/")
    assert done.returncode == 2, done.stderr
    written_into = "readonly/lake" if output.endswith("/") else "readonly"
    assert done.stderr.strip() == f"batchpilot: error: output folder not writable: {written_into}"
    assert calls(tmp) == 0, "FUNC ran before the folder was found read-only"
    assert sorted(p.name for p in (tmp / "jobs").iterdir()) == []
    assert not target.exists() or target.is_dir()


def test_an_output_that_cannot_be_written_at_the_end_keeps_the_job_and_no_lock(
    workdir, capsys
) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(30)])
    argv = [f"{module}:blocks_the_output", "-i", "in.jsonl", "-o", "out.jsonl", "--no-progress"]
    code, err = run(capsys, *argv)
    job = job_path(tmp / "out.jsonl")
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot write out.jsonl" in err and f"the results are kept in {job.name}" in err
    assert job.exists() and not Path(f"{job}.lock").exists()
    (tmp / "out.jsonl.partial").rmdir()
    code, err = run(capsys, *argv, "--resume")  # every record was committed: FUNC never runs
    assert code == 0 and "30 resumed from the checkpoint" in err, err
    assert len((tmp / "out.jsonl").read_text().splitlines()) == 30


# ------------------------------------------------------------ resuming over another input


def interrupted_job(capsys, module: str, source: str, output: str) -> Path:
    """Run ``stops_at_20`` until it stops itself; return its kept job file."""
    code, err = run(
        capsys, f"{module}:stops_at_20", "-i", source, "-o", output, "--batch-size", "5",
        "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 1 and "interrupted" in err, err
    job = job_path(Path(output))
    assert job.exists()
    return job


def test_resume_after_an_edit_past_the_head_that_keeps_the_size_is_refused(workdir, capsys) -> None:
    tmp, module = workdir
    source = write_jsonl(tmp / "in.jsonl", [{"id": i, "pad": "x" * 100} for i in range(1_000)])
    assert source.stat().st_size > 65_536 + 200  # the last line is past the first 64 KiB
    job = interrupted_job(capsys, module, "in.jsonl", "out.jsonl")
    before = job.read_bytes()
    data = source.read_bytes()
    edited = data.replace(b'{"id": 999,', b'{"id": 998,')  # the last line, same size
    assert edited != data and len(edited) == len(data)
    source.write_bytes(edited)
    code, err = run(
        capsys, f"{module}:stops_at_20", "-i", "in.jsonl", "-o", "out.jsonl", "--resume",
        "--batch-size", "5", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "different input (or the input changed)" in err
    assert f"the job's input was {source.name} ({len(data)} bytes" in err
    assert "same size, other content" in err
    assert job.read_bytes() == before and not (tmp / "out.jsonl").exists()


def test_resume_over_another_input_names_both_inputs(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "a.jsonl", [{"id": i} for i in range(40)])
    write_jsonl(tmp / "b.jsonl", [{"id": i} for i in range(41)])
    interrupted_job(capsys, module, "a.jsonl", "out.jsonl")
    code, err = run(
        capsys, f"{module}:stops_at_20", "-i", "b.jsonl", "-o", "out.jsonl", "--resume",
        "--batch-size", "5", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    size_a, size_b = (tmp / "a.jsonl").stat().st_size, (tmp / "b.jsonl").stat().st_size
    assert f"the job's input was a.jsonl ({size_a} bytes" in err
    assert f"this run's is b.jsonl ({size_b} bytes" in err
