"""The ``batchpilot`` command end to end: real files, the real bulk engine, real subprocesses.

Most tests call ``main(argv)`` in-process (same code path as the console script);
the console script itself, ``python -m batchpilot`` and the resume-after-SIGKILL
test run as real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchpilot.cli import errors_path, job_path, main

FUNCTIONS = textwrap.dedent(
    """
    import asyncio
    import pathlib
    import time

    GATE = 50

    def double(records):
        return [{"id": int(r["id"]), "y": 2 * int(r["x"])} for r in records]

    def plus_one(record):
        x = int(record["x"])
        if x < 0:
            raise ValueError(f"negative x: {x}")
        return x + 1

    async def async_plus_one(record):
        await asyncio.sleep(0)
        return int(record["x"]) + 1

    def drops_one(records):
        return list(records)[:-1]

    NOT_A_FUNCTION = 3

    def interrupted_at_20(records):
        if any(r["id"] == 20 for r in records):
            raise KeyboardInterrupt
        return list(records)

    def logged(records):
        with open("calls.log", "a") as log:
            log.write(" ".join(str(r["id"]) for r in records) + "\\n")
        return list(records)

    def gated(records):
        # Logs its calls; blocks on the first batch holding an id >= GATE until ./go exists.
        with open("calls.log", "a") as log:
            log.write(" ".join(str(r["id"]) for r in records) + "\\n")
        if any(r["id"] >= GATE for r in records):
            pathlib.Path("blocked").touch()
            while not pathlib.Path("go").exists():
                time.sleep(0.01)
        return [{"id": r["id"], "square": r["id"] ** 2} for r in records]
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A temp dir as cwd, holding a uniquely named module of batch functions."""
    module = f"clifns_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(FUNCTIONS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, module


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def records(n: int) -> list[dict[str, object]]:
    return [{"id": i, "x": i % 7} for i in range(n)]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_csv_to_jsonl_keeps_input_order(workdir: tuple[Path, str], capsys) -> None:
    tmp, module = workdir
    (tmp / "in.csv").write_text("id,x\n" + "".join(f"{i},{i % 7}\n" for i in range(500)))
    code, err = run(
        capsys, "run", f"{module}:double", "--input", "in.csv", "--output", "out.jsonl",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert read_jsonl(tmp / "out.jsonl") == [{"id": i, "y": 2 * (i % 7)} for i in range(500)]
    assert "500 items" in err and "items/s" in err
    assert not job_path(tmp / "out.jsonl").exists()
    assert not errors_path(tmp / "out.jsonl").exists()


def test_per_item_failures_are_listed_by_line_and_exit_1(workdir: tuple[Path, str], capsys) -> None:
    tmp, module = workdir
    rows = [{"id": i, "x": -1 if i in (3, 7) else i} for i in range(20)]
    write_jsonl(tmp / "in.jsonl", rows)
    code, err = run(
        capsys, "run", f"{module}:plus_one", "--per-item", "-i", "in.jsonl", "-o", "out.sqlite",
        "--batch-size", "4", "--no-progress",
    )  # fmt: skip
    assert code == 1
    with sqlite3.connect(tmp / "out.sqlite") as db:
        values = [v for (v,) in db.execute("SELECT result FROM results ORDER BY rowid")]
    assert values == [i + 1 for i in range(20) if i not in (3, 7)]
    assert read_jsonl(errors_path(tmp / "out.sqlite")) == [
        {"line": 4, "error": "ValueError: negative x: -1"},
        {"line": 8, "error": "ValueError: negative x: -1"},
    ]
    assert "2 failed" in err and "first: line 4: ValueError: negative x: -1" in err


def test_parquet_to_parquet_on_processes(workdir: tuple[Path, str], capsys) -> None:
    tmp, module = workdir
    pq.write_table(pa.Table.from_pylist(records(300)), tmp / "in.parquet")
    code, err = run(
        capsys, "run", f"{module}:plus_one", "--per-item", "-i", "in.parquet", "-o",
        "out.parquet", "--executor", "processes", "--workers", "2", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert pq.read_table(tmp / "out.parquet").column("result").to_pylist() == [
        i % 7 + 1 for i in range(300)
    ]


def test_async_per_item_function_runs_on_asyncio(workdir: tuple[Path, str], capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(50))
    code, err = run(
        capsys, "run", f"{module}:async_plus_one", "--per-item", "-i", "in.jsonl", "-o",
        "out.jsonl", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert read_jsonl(tmp / "out.jsonl") == [{"result": i % 7 + 1} for i in range(50)]


def test_a_result_list_of_the_wrong_length_fails_every_item(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(10))
    code, _ = run(
        capsys, "run", f"{module}:drops_one", "-i", "in.jsonl", "-o", "out.jsonl",
        "--batch-size", "5", "--no-progress",
    )  # fmt: skip
    assert code == 1
    assert read_jsonl(tmp / "out.jsonl") == []
    failures = read_jsonl(errors_path(tmp / "out.jsonl"))
    assert [f["line"] for f in failures] == list(range(1, 11))
    assert all(str(f["error"]).startswith("BatchFailedError") for f in failures)


def test_an_empty_input_gives_an_empty_output(workdir: tuple[Path, str], capsys) -> None:
    tmp, module = workdir
    (tmp / "in.jsonl").write_text("")
    code, err = run(capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl")
    assert code == 0, err
    assert (tmp / "out.jsonl").read_text() == ""
    assert "0 items" in err


@pytest.mark.parametrize("rows", [[], [{"id": 1, "x": -1}]], ids=["empty input", "all failed"])
def test_appending_no_rows_leaves_an_existing_table_as_it_was(workdir, capsys, rows) -> None:
    tmp, module = workdir
    with sqlite3.connect(tmp / "wh.sqlite") as db:
        db.execute("CREATE TABLE penguins (id INTEGER, name TEXT)")
        db.execute("INSERT INTO penguins VALUES (1, 'pingu')")
    write_jsonl(tmp / "in.jsonl", rows)
    code, err = run(
        capsys, "run", f"{module}:plus_one", "--per-item", "-i", "in.jsonl", "-o", "wh.sqlite",
        "--table", "penguins", "--if-exists", "append", "--no-progress",
    )  # fmt: skip
    assert code == (1 if rows else 0), err
    with sqlite3.connect(tmp / "wh.sqlite") as db:
        # a run with no rows used to add a column "result" to the table
        assert [c[1] for c in db.execute("PRAGMA table_info(penguins)")] == ["id", "name"]
        assert db.execute("SELECT * FROM penguins").fetchall() == [(1, "pingu")]


BAD_INPUTS: dict[str, tuple[Callable[[Path, str], list[str]], str]] = {
    "missing input file": (
        lambda tmp, m: [f"{m}:double", "-i", "absent.jsonl", "-o", "out.jsonl"],
        "input file not found: absent.jsonl",
    ),
    "malformed lines": (
        lambda tmp, m: [f"{m}:double", "-i", "bad.jsonl", "-o", "out.jsonl"],
        "bad.jsonl: line 2: invalid JSON",
    ),
    "short csv row": (
        lambda tmp, m: [f"{m}:double", "-i", "bad.csv", "-o", "out.jsonl"],
        "bad.csv: line 3: 1 fields, the header has 2",
    ),
    "unknown module": (
        lambda tmp, m: ["no_such_module_xyz:f", "-i", "good.jsonl", "-o", "out.jsonl"],
        "cannot import module 'no_such_module_xyz'",
    ),
    "unknown function": (
        lambda tmp, m: [f"{m}:nope", "-i", "good.jsonl", "-o", "out.jsonl"],
        "has no function 'nope'",
    ),
    "not callable": (
        lambda tmp, m: [f"{m}:NOT_A_FUNCTION", "-i", "good.jsonl", "-o", "out.jsonl"],
        "is not callable",
    ),
    "no colon": (
        lambda tmp, m: [m, "-i", "good.jsonl", "-o", "out.jsonl"],
        "expected MODULE:FUNC",
    ),
    "bad batch size": (
        lambda tmp, m: [f"{m}:double", "-i", "good.jsonl", "-o", "o.jsonl", "--batch-size", "x"],
        "argument --batch-size: expected 'auto' or a positive integer, got 'x'",
    ),
    "zero workers": (
        lambda tmp, m: [f"{m}:double", "-i", "good.jsonl", "-o", "o.jsonl", "--workers", "0"],
        "argument --workers: expected a positive integer, got '0'",
    ),
    "async function on processes": (
        lambda tmp, m: [
            f"{m}:async_plus_one",
            "--per-item",
            "-i",
            "good.jsonl",
            "-o",
            "out.jsonl",
            "--executor",
            "processes",
        ],
        "this needs executor='asyncio'",
    ),
    "unknown output suffix": (
        lambda tmp, m: [f"{m}:double", "-i", "good.jsonl", "-o", "out.txt"],
        "cannot tell the output format of out.txt",
    ),
    "output is the input": (
        lambda tmp, m: [f"{m}:double", "-i", "good.jsonl", "-o", "good.jsonl"],
        "--output must differ from --input",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_on_stderr_and_exit_2(workdir, capsys, case: str) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "good.jsonl", records(3))
    (tmp / "bad.jsonl").write_text('{"id": 1, "x": 1}\n{"id": 2,\n{"id": 3, "x": 3}\n[4]\n')
    (tmp / "bad.csv").write_text("id,x\n1,2\n3\n")
    argv, expected = BAD_INPUTS[case]
    code, err = run(capsys, "run", *argv(tmp, module))
    assert code == 2
    assert err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("name", "bad", "problem"),
    [
        ("bad.jsonl", "[4]\n", "line 801: expected a JSON object, got list"),
        ("bad.csv", "1,2,3\n", "line 802: 3 fields, the header has 1"),
    ],
)
def test_a_malformed_line_is_reported_when_reached_and_nothing_is_written(
    workdir, capsys, name: str, bad: str, problem: str
) -> None:
    # Issue 23 item 6: no pass over the whole input before work (it converted every
    # record twice); the line is reported where the run reaches it, with its file and
    # number, exit 2, and the run leaves nothing behind, as any error while running.
    tmp, module = workdir
    if name.endswith(".jsonl"):
        good = "".join(json.dumps({"id": i}) + "\n" for i in range(800))
    else:
        good = "id\n" + "".join(f"{i}\n" for i in range(800))
    (tmp / name).write_text(good + bad + good)
    code, err = run(
        capsys, "run", f"{module}:logged", "-i", name, "-o", "out.jsonl", "--batch-size", "100",
        "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and f"{name}: {problem}" in err, err
    assert (tmp / "calls.log").exists()  # work ran before the line was reached
    assert not (tmp / "out.jsonl").exists() and not errors_path(tmp / "out.jsonl").exists()
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("out")) == []


def test_a_leftover_checkpoint_needs_resume_and_resume_needs_a_checkpoint(workdir, capsys):
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(5))
    job_path(tmp / "out.jsonl").write_bytes(b"")
    code, err = run(capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl")
    assert code == 2 and "pass --resume to continue it" in err
    job_path(tmp / "out.jsonl").unlink()
    assert run(capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl")[0] == 0
    code, err = run(
        capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--resume"
    )
    assert code == 2 and "nothing to resume" in err


def test_resume_refuses_a_checkpoint_of_another_input_and_keeps_it(workdir, capsys) -> None:
    tmp, module = workdir
    job = job_path(tmp / "out.jsonl")
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(40)])
    code, err = run(
        capsys, "run", f"{module}:interrupted_at_20", "-i", "in.jsonl", "-o", "out.jsonl",
        "--batch-size", "4", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 1 and "interrupted" in err
    before = job.read_bytes()
    write_jsonl(tmp / "in.jsonl", records(40))
    code, err = run(
        capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--resume"
    )
    assert code == 2 and err.count("\n") == 1
    assert "different input" in err and f"delete {job.name}" in err
    assert job.read_bytes() == before
    assert not (tmp / "out.jsonl").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["bench"]])
def test_every_command_has_help(capsys, command: list[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert "usage: batchpilot" in capsys.readouterr().out


def test_bench_lists_the_benchmark_scripts(tmp_path: Path, capsys) -> None:
    (tmp_path / "b_one.py").write_text("if __name__ == '__main__':\n    print('one')\n")
    (tmp_path / "_helper.py").write_text("if __name__ == '__main__':\n    pass\n")
    (tmp_path / "plugin.py").write_text("print('a module, not a script')\n")
    assert main(["bench", "--dir", str(tmp_path), "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / "b_one.py")]
    assert main(["bench", "--dir", str(tmp_path), "missing"]) == 2
    assert "no benchmark named missing" in capsys.readouterr().err


def test_bench_runs_each_script_and_reports_the_failed_ones(tmp_path: Path) -> None:
    (tmp_path / "a_ok.py").write_text(
        "import sys\nif __name__ == '__main__':\n    print('table of a_ok', sys.argv[1:])\n"
        "# accepts --quick\n"
    )
    (tmp_path / "b_broken.py").write_text("if __name__ == '__main__':\n    raise SystemExit(3)\n")
    done = subprocess.run(
        _cli("bench", "--dir", str(tmp_path)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "== a_ok.py\ntable of a_ok []\n== b_broken.py\n" in done.stdout
    assert done.stderr.strip() == "batchpilot: error: benchmarks failed: b_broken.py"
    only = subprocess.run(
        _cli("bench", "--dir", str(tmp_path), "a_ok", "--quick"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert only.returncode == 0 and "b_broken" not in only.stdout
    assert "table of a_ok ['--quick']" in only.stdout


def test_bench_outside_a_checkout_says_where_the_benchmarks_are(tmp_path: Path) -> None:
    # An installed batchpilot has no benchmarks/: they ship with the source checkout only.
    done = subprocess.run(_cli("bench", "--list"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"no benchmarks/ in {tmp_path}" in done.stderr
    assert "ship with batchpilot's source checkout" in done.stderr and "--dir" in done.stderr
    shown = subprocess.run(_cli("bench", "--help"), capture_output=True, text=True, timeout=60)
    help_text = " ".join(shown.stdout.split())
    assert "source tree" not in help_text and "source checkout" in help_text


def test_a_job_runs_on_a_local_dask_cluster(workdir: tuple[Path, str], capsys) -> None:
    pytest.importorskip("dask.distributed")
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(200))
    code, err = run(
        capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.parquet",
        "--executor", "dask", "--workers", "2", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert pq.read_table(tmp / "out.parquet").column("id").to_pylist() == list(range(200))


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "batchpilot", *argv]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _committed_items(job: Path) -> int:
    try:
        with sqlite3.connect(f"file:{job}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM run WHERE key = 'progress'").fetchone()
    except sqlite3.Error:
        return 0
    return 0 if row is None else int(json.loads(row[0])["items"])


def test_the_console_script_runs_a_job(workdir: tuple[Path, str]) -> None:
    tmp, module = workdir
    script = Path(sys.executable).with_name("batchpilot")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    write_jsonl(tmp / "in.jsonl", records(20))
    done = subprocess.run(
        [str(script), "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl"],
        cwd=tmp, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp / "out.jsonl")) == 20


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_resume_after_sigkill_writes_every_record_exactly_once(workdir: tuple[Path, str]) -> None:
    tmp, module = workdir
    total, batch = 100, 10
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(total)])
    argv = _cli(
        "run", f"{module}:gated", "-i", "in.jsonl", "-o", "out.jsonl",
        "--batch-size", str(batch), "--workers", "1", "--no-progress",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}
    first = subprocess.Popen(argv, cwd=tmp, env=env, stderr=subprocess.PIPE)
    try:
        # The batch holding id 50 blocks; the five batches before it must be committed.
        _wait_for(lambda: (tmp / "blocked").exists(), "the gated batch to start")
        _wait_for(lambda: _committed_items(job_path(tmp / "out.jsonl")) >= 50, "50 committed")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.stderr is not None
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    assert not (tmp / "out.jsonl").exists()
    (tmp / "calls.log").rename(tmp / "calls-first.log")

    (tmp / "go").touch()
    second = subprocess.run([*argv, "--resume"], cwd=tmp, env=env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert read_jsonl(tmp / "out.jsonl") == [{"id": i, "square": i * i} for i in range(total)]
    rerun_ids = {int(i) for i in (tmp / "calls.log").read_text().split()}
    assert rerun_ids.isdisjoint(range(50)), "committed batches were run again"
    assert "50 resumed from the checkpoint" in second.stderr
    assert not job_path(tmp / "out.jsonl").exists()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_parquet_output_resumes_after_sigkill_redoing_only_the_chunks_in_flight(
    workdir: tuple[Path, str],
) -> None:
    # Far fewer rows than a Parquet row group of 65,536: progress must still be per chunk.
    tmp, module = workdir
    total, batch, workers = 2_000, 10, 1
    (tmp / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(total)))
    argv = _cli(
        "run", f"{module}:gated", "-i", "in.csv", "-o", "out.parquet",
        "--batch-size", str(batch), "--workers", str(workers), "--no-progress",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}
    job = job_path(tmp / "out.parquet")
    first = subprocess.Popen(argv, cwd=tmp, env=env, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (tmp / "blocked").exists(), "the gated batch to start")
        # The five chunks before the gated one (ids 0-49) must be committed while it blocks.
        _wait_for(lambda: _committed_items(job) >= 50, "50 committed")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.stderr is not None
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    committed = _committed_items(job)
    first_ids = {int(i) for i in (tmp / "calls.log").read_text().split()}
    (tmp / "calls.log").unlink()

    (tmp / "go").touch()
    second = subprocess.run([*argv, "--resume"], cwd=tmp, env=env, capture_output=True,
                            text=True, timeout=90, check=False)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"{committed} resumed from the checkpoint" in second.stderr
    assert pq.read_table(tmp / "out.parquet").to_pylist() == [
        {"id": i, "square": i * i} for i in range(total)
    ]
    rerun_ids = [int(i) for i in (tmp / "calls.log").read_text().split()]
    assert sorted(rerun_ids) == list(range(committed, total)), "a record was run twice or lost"
    redone = first_ids & set(rerun_ids)
    # At most the chunks in flight at the kill: the engine holds 2 x workers chunks at once.
    assert 0 < len(redone) <= 2 * workers * batch
    assert not job.exists() and not Path(f"{job}.lock").exists()
    assert not Path(f"{job}.parts").exists()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_ctrl_c_ends_the_command_without_waiting_for_running_chunks(workdir) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(100)])
    argv = _cli(
        "run", f"{module}:gated", "-i", "in.jsonl", "-o", "out.jsonl",
        "--batch-size", "10", "--workers", "1",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}
    first = subprocess.Popen(argv, cwd=tmp, env=env, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (tmp / "blocked").exists(), "the gated batch to start")
    first.send_signal(signal.SIGINT)
    # The gated batch never finishes (./go does not exist): the process must not wait for it.
    _, err = first.communicate(timeout=30)
    assert first.returncode == 1
    assert err.strip().splitlines()[-1] == (
        "batchpilot: error: interrupted (rerun a job with --resume to continue it)"
    )
    assert "Traceback" not in err
    assert not (tmp / "out.jsonl.partial").exists()
    assert job_path(tmp / "out.jsonl").exists()

    (tmp / "go").touch()
    second = subprocess.run([*argv, "--resume"], cwd=tmp, env=env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert [r["id"] for r in read_jsonl(tmp / "out.jsonl")] == list(range(100))


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_metrics_port_serves_the_runs_prometheus_metrics(workdir) -> None:
    pytest.importorskip("prometheus_client")
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(100)])
    argv = _cli(
        "run", f"{module}:gated", "-i", "in.jsonl", "-o", "out.jsonl", "--batch-size", "10",
        "--workers", "1", "--no-progress", "--metrics-port", "0",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}
    job = subprocess.Popen(argv, cwd=tmp, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert job.stderr is not None
        first_line = job.stderr.readline()
        assert first_line.startswith("batchpilot: metrics at http://127.0.0.1:")
        url = first_line.split(" at ")[1].strip()
        succeeded = 'batchpilot_items_total{engine="bulk",name="out.jsonl",outcome="succeeded"}'

        def scraped_items() -> float:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            lines = [line for line in text.splitlines() if line.startswith(succeeded)]
            return float(lines[0].split()[-1]) if lines else 0.0

        # Five batches of 10 finish, then the batch holding id 50 blocks until ./go exists.
        _wait_for(lambda: scraped_items() == 50.0, "50 items in the scraped metrics")
        (tmp / "go").touch()
        assert job.wait(timeout=60) == 0
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
        if job.stderr is not None:
            job.stderr.close()
    assert len(read_jsonl(tmp / "out.jsonl")) == 100


def test_a_metrics_port_in_use_is_a_one_line_error(workdir, capsys) -> None:
    pytest.importorskip("prometheus_client")
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(3))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(
            capsys, "run", f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl",
            "--metrics-port", str(port),
        )  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert f"cannot serve metrics on port {port}" in err
