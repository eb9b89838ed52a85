"""``batchpilot run`` against hostile functions and inputs (issues 13 and 15): real files.

Each case was once a false success, a raw error or a lost run. Most tests call
``main(argv)`` in-process; the job-lock test runs two real processes.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from batchpilot.cli import errors_path, job_path, main
from batchpilot.cli.common import INTERRUPTED

FUNCTIONS = textwrap.dedent(
    """
    import os
    import pathlib
    import signal
    import sys
    import time

    def exits_zero(records):
        sys.exit(0)

    def interrupts(records):
        raise KeyboardInterrupt

    def signals_itself(records):
        # A real SIGINT, as a Ctrl-C sends it (it reaches the main thread).
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        return list(records)

    def lengths(records):
        return [{"id": r["id"], "n": len(r["text"])} for r in records]

    def case_clash(records):
        return [{"Name": r["id"], "name": -r["id"]} for r in records]

    def clash_after_flag(records):
        # Stops (KeyboardInterrupt) at id 20 until ./clash exists, then clashes there.
        if any(r["id"] >= 20 for r in records):
            if not pathlib.Path("clash").exists():
                raise KeyboardInterrupt
            return [{"Name": r["id"], "name": 0} for r in records]
        return [{"Name": r["id"]} for r in records]

    def slow_double(records):
        # Blocks at id 50 until ./go exists (so a second run can meet the first one).
        if any(r["id"] >= 50 for r in records):
            pathlib.Path("blocked").touch()
            while not pathlib.Path("go").exists():
                time.sleep(0.01)
        return [{"id": r["id"], "y": 2 * r["id"]} for r in records]

    def flaky(record):
        # Fails the records with id % 5 == 0 until ./healed exists.
        if record["id"] % 5 == 0 and not pathlib.Path("healed").exists():
            raise ValueError(f"not yet: {record['id']}")
        return {"id": record["id"], "y": 2 * record["id"]}
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A temp dir as cwd, holding a uniquely named module of batch functions."""
    module = f"hostilefns_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(FUNCTIONS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, module


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["run", *argv])
    return code, capsys.readouterr().err


# ------------------------------------------------------------ user code ends the run


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_sys_exit_0_in_the_function_is_an_error_not_a_success(workdir, capsys, executor) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(10)])
    code, err = run(
        capsys, f"{module}:exits_zero", "-i", "in.jsonl", "-o", "out.jsonl", "--no-progress",
        "--executor", executor,
    )  # fmt: skip
    assert code == 1
    assert err.count("\n") == 1, err
    assert f"{module}:exits_zero raised SystemExit(0) (it called sys.exit)" in err
    assert not (tmp / "out.jsonl").exists()


def test_sys_exit_0_in_the_console_script_exits_1_with_the_error(workdir) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(10)])
    done = subprocess.run(
        [sys.executable, "-m", "batchpilot", "run", f"{module}:exits_zero", "-i", "in.jsonl",
         "-o", "out.jsonl", "--no-progress"],
        cwd=tmp, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "raised SystemExit(0)" in done.stderr
    assert not (tmp / "out.jsonl").exists()


def test_sys_exit_while_importing_the_module_is_a_usage_error(workdir, capsys) -> None:
    tmp, _ = workdir
    (tmp / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    write_jsonl(tmp / "in.jsonl", [{"id": 1}])
    code, err = run(capsys, "exits_on_import:f", "-i", "in.jsonl", "-o", "out.jsonl")
    assert code == 2
    assert "importing module 'exits_on_import' failed: SystemExit: 0" in err


def test_a_keyboard_interrupt_raised_by_the_function_is_not_taken_for_ctrl_c(
    workdir, capsys
) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(10)])
    code, err = run(capsys, f"{module}:interrupts", "-i", "in.jsonl", "-o", "out.jsonl")
    assert code == 1
    assert f"{module}:interrupts raised KeyboardInterrupt itself (not a Ctrl-C)" in err
    assert not (tmp / "out.jsonl").exists()


@pytest.mark.timeout(60)
def test_a_real_sigint_is_still_the_interrupt_of_a_ctrl_c(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(10)])
    code, err = run(
        capsys, f"{module}:signals_itself", "-i", "in.jsonl", "-o", "out.jsonl", "--workers",
        "1", "--no-progress",
    )  # fmt: skip
    assert code == 1
    assert err.strip() == f"batchpilot: error: {INTERRUPTED}"


# ------------------------------------------------------------ large CSV/TSV fields


@pytest.mark.parametrize(("suffix", "delimiter"), [(".csv", ","), (".tsv", "\t")])
def test_a_field_of_200_kib_is_read(workdir, capsys, suffix: str, delimiter: str) -> None:
    tmp, module = workdir
    big = "a" * (200 * 1024)
    with (tmp / f"in{suffix}").open("w", newline="") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(["id", "text"])
        writer.writerows([[1, "short"], [2, big], [3, "x" * (2 << 20)]])  # 2 MiB > a block
    code, err = run(
        capsys, f"{module}:lengths", "-i", f"in{suffix}", "-o", "out.jsonl", "--no-progress"
    )
    assert code == 0, err
    assert read_jsonl(tmp / "out.jsonl") == [
        {"id": 1, "n": 5},
        {"id": 2, "n": len(big)},
        {"id": 3, "n": 2 << 20},
    ]


def test_a_csv_output_with_a_200_kib_field_can_be_appended_to(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": 1, "text": "b" * (200 * 1024)}])
    (tmp / "out.csv").write_text("id,n\n")
    code, err = run(
        capsys, f"{module}:lengths", "-i", "in.jsonl", "-o", "out.csv", "--if-exists", "append"
    )
    assert code == 0, err
    assert (tmp / "out.csv").read_text() == f"id,n\n1,{200 * 1024}\n"


# ------------------------------------------------------------ SQLite column names


def test_result_keys_differing_only_in_case_are_one_clear_error_for_sqlite(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(5)])
    code, err = run(capsys, f"{module}:case_clash", "-i", "in.jsonl", "-o", "out.sqlite")
    assert code == 2
    assert err.count("\n") == 1, err
    assert "results have the keys 'Name' and 'name', which are one column in SQLite" in err
    assert not (tmp / "out.sqlite").exists()
    assert not job_path(tmp / "out.sqlite").exists()
    # JSON Lines keeps both keys.
    assert run(capsys, f"{module}:case_clash", "-i", "in.jsonl", "-o", "out.jsonl")[0] == 0
    assert read_jsonl(tmp / "out.jsonl")[1] == {"Name": 1, "name": -1}


def test_resume_meeting_a_case_clash_gives_the_same_error_and_keeps_the_job(
    workdir, capsys
) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(40)])
    argv = [f"{module}:clash_after_flag", "-i", "in.jsonl", "-o", "out.sqlite",
            "--batch-size", "4", "--workers", "1", "--no-progress"]  # fmt: skip
    code, err = run(capsys, *argv)
    assert code == 1 and "--resume continues from the checkpoint" in err
    job = job_path(tmp / "out.sqlite")
    assert job.exists()
    (tmp / "clash").touch()
    code, err = run(capsys, *argv, "--resume")
    assert code == 2 and err.count("\n") == 1, err
    assert "results have the keys 'Name' and 'name'" in err
    assert job.exists()


def test_appending_to_a_table_whose_column_differs_in_case_uses_that_column(
    workdir, capsys
) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": 1, "text": "abc"}])
    with sqlite3.connect(tmp / "out.sqlite") as db:
        db.execute("CREATE TABLE results (ID INTEGER, N INTEGER)")
        db.execute("INSERT INTO results VALUES (0, 0)")
    db.close()
    code, err = run(
        capsys, f"{module}:lengths", "-i", "in.jsonl", "-o", "out.sqlite", "--if-exists", "append"
    )
    assert code == 0, err
    with sqlite3.connect(tmp / "out.sqlite") as db:
        assert db.execute("SELECT * FROM results ORDER BY rowid").fetchall() == [(0, 0), (1, 3)]
    db.close()


# ------------------------------------------------------------ paths (issue 13, item 9)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["-i", "folder", "-o", "out.jsonl"],
            "no input files in folder",
        ),  # a folder is partitioned
        (["-i", "in.jsonl", "-o", "missing/out.jsonl"], "output folder not found: missing"),
    ],
)
def test_a_directory_input_and_a_missing_output_folder_exit_2(
    workdir, capsys, argv: list[str], expected: str
) -> None:
    tmp, module = workdir
    (tmp / "folder").mkdir()
    write_jsonl(tmp / "in.jsonl", [{"id": 1, "text": ""}])
    code, err = run(capsys, f"{module}:lengths", *argv)
    assert code == 2
    assert err.strip() == f"batchpilot: error: {expected}"


# ------------------------------------------------------------ two runs of one job


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_a_second_run_of_a_job_in_use_is_refused_and_the_first_completes(workdir) -> None:
    tmp, module = workdir
    total = 100
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(total)])
    argv = [sys.executable, "-m", "batchpilot", "run", f"{module}:slow_double", "-i",
            "in.jsonl", "-o", "out.jsonl", "--batch-size", "10", "--workers", "1",
            "--no-progress"]  # fmt: skip
    job = job_path(tmp / "out.jsonl")
    # A first run interrupted after a checkpoint, so that both next runs are --resume.
    first = subprocess.Popen(argv, cwd=tmp, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (tmp / "blocked").exists() and job.exists(), "a checkpoint")
    finally:
        first.kill()
        first.communicate(timeout=30)
    (tmp / "blocked").unlink()
    resumed = subprocess.Popen([*argv, "--resume"], cwd=tmp, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (tmp / "blocked").exists(), "the resumed run to block")
        second = subprocess.run([*argv, "--resume"], cwd=tmp, capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        (tmp / "go").touch()
        _, resumed_err = resumed.communicate(timeout=60)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.communicate(timeout=30)
    assert second.returncode == 2, second.stderr
    assert f"job {job.name} in use by pid {resumed.pid}" in second.stderr
    assert second.stderr.count("\n") == 1, second.stderr
    assert resumed.returncode == 0, resumed_err
    assert read_jsonl(tmp / "out.jsonl") == [{"id": i, "y": 2 * i} for i in range(total)]
    assert not job.exists()
    assert not job.with_name(job.name + ".lock").exists()


# ------------------------------------------------------------ --retry-failed (issue 13, 3)


def test_retry_failed_reruns_the_listed_failures_into_the_output(workdir, capsys) -> None:
    tmp, module = workdir
    total = 23
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(total)])
    argv = [f"{module}:flaky", "--per-item", "-i", "in.jsonl", "-o", "out.jsonl",
            "--batch-size", "4", "--no-progress"]  # fmt: skip
    code, err = run(capsys, *argv)
    assert code == 1
    failed = [i for i in range(total) if i % 5 == 0]
    assert [f["line"] for f in read_jsonl(errors_path(tmp / "out.jsonl"))] == [
        i + 1 for i in failed
    ]
    assert [r["id"] for r in read_jsonl(tmp / "out.jsonl")] == [
        i for i in range(total) if i not in failed
    ]
    (tmp / "healed").touch()
    code, err = run(capsys, *argv, "--retry-failed")
    assert code == 0, err
    assert f"{len(failed)} items (retried from the failures list)" in err
    assert sorted(r["id"] for r in read_jsonl(tmp / "out.jsonl")) == list(range(total))
    assert len(read_jsonl(tmp / "out.jsonl")) == total
    assert not errors_path(tmp / "out.jsonl").exists()
    code, err = run(capsys, *argv, "--retry-failed")
    assert code == 2 and "nothing to retry" in err
