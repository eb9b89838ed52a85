"""``batchpilot run`` in data pipelines (issue 14), end to end on real files.

Existing data is never destroyed (``--if-exists``), systematic failures stop a
run early at a cost that does not grow with the input, the formats (CSV/TSV,
.gz/.zst, standard input/output, typed columns, ``--line-column``), a resume
that reads only what is left, and clean exits.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from batchpilot.cli import errors_path, job_path, main
from batchpilot.cli.job import FORMAT
from batchpilot.cli.records_io import Position, RecordSource

FUNCTIONS = textwrap.dedent(
    """
    import os
    import time

    def _log(records):
        with open("calls.log", "a") as log:
            log.write(" ".join(str(r.get("id")) for r in records) + "\\n")

    def double(records):
        _log(records)
        return [{"id": r["id"], "y": 2 * r["x"]} for r in records]

    def needs_price(records):
        _log(records)
        return [{"id": r["id"], "total": r["price"] * 2} for r in records]

    def odd_fails(record):
        if record["id"] % 2:
            raise ValueError(f"odd id {record['id']}")
        return {"id": record["id"]}

    def echo(records):
        return list(records)

    def grows(records):
        return [{"id": r["id"], **({"extra": 1} if r["id"] >= 5 else {})} for r in records]

    def stop_at_600(records):
        # Interrupts itself at id 600 while ./stop exists, like a Ctrl-C there;
        # takes 0.1 s a call while ./slow exists.
        _log(records)
        if os.path.exists("slow"):
            time.sleep(0.1)
        if os.path.exists("stop") and any(r["id"] == 600 for r in records):
            raise KeyboardInterrupt
        return [{"id": r["id"]} for r in records]

    def slow_double(records):
        time.sleep(0.05)
        return double(records)
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A temp dir as cwd, holding a uniquely named module of batch functions."""
    module = f"pipefns_{uuid.uuid4().hex[:10]}"
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
    code = main(["run", *argv])
    return code, capsys.readouterr().err


def calls(tmp: Path) -> list[str]:
    log = tmp / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def leftovers(tmp: Path, output: str) -> list[str]:
    """Job files, segments or partial files a run left next to ``output``."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(output + "."))


# ---------------------------------------------------------------- 1. never destroy data


def warehouse(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
        db.executemany("INSERT INTO customers VALUES (?, ?)", [(1, "ada"), (2, "bob")])
    return path


def table(path: Path, name: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()


def test_writing_a_table_into_a_database_keeps_its_other_tables(workdir, capsys) -> None:
    tmp, module = workdir
    wh = warehouse(tmp / "wh.sqlite")
    write_jsonl(tmp / "in.jsonl", records(5))
    argv = [f"{module}:double", "-i", "in.jsonl", "-o", "wh.sqlite", "--table", "penguins"]
    code, err = run(capsys, *argv, "--no-progress")
    assert code == 0, err
    assert table(wh, "customers") == [(1, "ada"), (2, "bob")]
    assert table(wh, "penguins") == [(i, 2 * (i % 7)) for i in range(5)]

    code, err = run(capsys, *argv)  # the default --if-exists fail: the table exists
    assert code == 2 and err.count("\n") == 1
    assert "wh.sqlite (table penguins) exists; pass --if-exists append" in err
    assert leftovers(tmp, "wh.sqlite") == []

    assert run(capsys, *argv, "--if-exists", "append", "--no-progress")[0] == 0
    assert len(table(wh, "penguins")) == 10
    write_jsonl(tmp / "in.jsonl", records(3))
    assert run(capsys, *argv, "--if-exists", "replace", "--no-progress")[0] == 0
    assert table(wh, "penguins") == [(0, 0), (1, 2), (2, 4)]
    assert table(wh, "customers") == [(1, "ada"), (2, "bob")]
    assert leftovers(tmp, "wh.sqlite") == []


def test_an_existing_file_is_kept_unless_append_or_replace_is_asked(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(2))
    (tmp / "out.jsonl").write_text('{"old": 1}\n')
    argv = [f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--no-progress"]
    code, err = run(capsys, *argv)
    assert code == 2 and "out.jsonl exists" in err
    assert (tmp / "out.jsonl").read_text() == '{"old": 1}\n'
    assert run(capsys, *argv, "--if-exists", "append")[0] == 0
    assert read_jsonl(tmp / "out.jsonl") == [{"old": 1}, {"id": 0, "y": 0}, {"id": 1, "y": 2}]
    assert run(capsys, *argv, "--if-exists", "replace")[0] == 0
    assert read_jsonl(tmp / "out.jsonl") == [{"id": 0, "y": 0}, {"id": 1, "y": 2}]


def test_replace_in_a_parquet_dataset_replaces_only_the_named_table(workdir, capsys) -> None:
    tmp, module = workdir
    (tmp / "lake" / "customers").mkdir(parents=True)
    pq.write_table(pa.table({"name": ["ada"]}), tmp / "lake" / "customers" / "part-0.parquet")
    write_jsonl(tmp / "in.jsonl", records(4))
    argv = [f"{module}:double", "-i", "in.jsonl", "-o", "lake", "--table", "penguins"]
    assert run(capsys, *argv, "--no-progress")[0] == 0
    assert run(capsys, *argv, "--no-progress", "--if-exists", "append")[0] == 0
    assert pq.read_table(tmp / "lake" / "penguins").num_rows == 8
    assert run(capsys, *argv, "--no-progress", "--if-exists", "replace")[0] == 0
    assert pq.read_table(tmp / "lake" / "penguins").column("id").to_pylist() == [0, 1, 2, 3]
    assert pq.read_table(tmp / "lake" / "customers").to_pylist() == [{"name": "ada"}]


@pytest.mark.parametrize("if_exists", ["fail", "append", "replace"])
def test_an_sqlite_output_that_is_not_a_database_is_refused_before_any_work(
    workdir, capsys, if_exists: str
) -> None:
    tmp, module = workdir
    (tmp / "notes.db").write_text("my notes, not a database\n")
    write_jsonl(tmp / "in.jsonl", records(3))
    code, err = run(
        capsys, f"{module}:double", "-i", "in.jsonl", "-o", "notes.db", "--if-exists", if_exists,
        "--no-progress",
    )  # fmt: skip
    # append and replace used to run the job, then fail at the end with exit 1 and leave a
    # job file that refused the next run
    assert code == 2 and err.count("\n") == 1, err
    assert "notes.db: not an SQLite database" in err
    assert (tmp / "notes.db").read_text() == "my notes, not a database\n"
    assert leftovers(tmp, "notes.db") == [] and calls(tmp) == []


@pytest.mark.parametrize("name", ["..", ".", "../lake", "sub/table", "ABSOLUTE"])
def test_a_dataset_table_must_be_one_folder_name_so_replace_stays_inside(
    workdir, capsys, name: str
) -> None:
    tmp, module = workdir
    (tmp / "data" / "lake").mkdir(parents=True)
    precious = tmp / "data" / "precious.parquet"  # beside the dataset, not part of it
    pq.write_table(pa.table({"n": [1]}), precious)
    pq.write_table(pa.table({"n": [2]}), tmp / "data" / "lake" / "root.parquet")
    write_jsonl(tmp / "in.jsonl", records(3))
    table_name = str(tmp / "data") if name == "ABSOLUTE" else name
    code, err = run(
        capsys, f"{module}:double", "-i", "in.jsonl", "-o", "data/lake", "--table", table_name,
        "--if-exists", "replace", "--no-progress",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert f"--table {table_name!r} is not a folder name" in err
    # replace used to delete every *.parquet of data/lake/TABLE, here data/ or data/lake/
    assert pq.read_table(precious).to_pylist() == [{"n": 1}]
    assert sorted(p.name for p in (tmp / "data").rglob("*")) == [
        "lake", "precious.parquet", "root.parquet",
    ]  # fmt: skip


def test_an_existing_directory_as_output_is_a_dataset_only_when_asked(
    workdir, capsys, monkeypatch
) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(3))
    (tmp / "scores.sqlite").mkdir()
    argv = [f"{module}:double", "-i", "in.jsonl", "--no-progress"]
    code, err = run(capsys, *argv, "-o", "scores.sqlite")
    assert code == 2 and err.count("\n") == 1, err
    assert "output is a directory, not a file: scores.sqlite" in err
    assert list((tmp / "scores.sqlite").iterdir()) == [] and leftovers(tmp, "scores.sqlite") == []
    # a trailing / asks for a dataset in that folder
    assert run(capsys, *argv, "-o", "scores.sqlite/")[0] == 0
    assert pq.read_table(tmp / "scores.sqlite" / "results").num_rows == 3
    # so does the current folder, "." (its job file used to be an unexpected ValueError)
    (tmp / "lake").mkdir()
    monkeypatch.chdir(tmp / "lake")
    code, err = run(capsys, argv[0], "-i", "../in.jsonl", "-o", ".", "--no-progress")
    assert code == 0, err
    assert pq.read_table(tmp / "lake" / "results").num_rows == 3
    assert leftovers(tmp, "lake") == []


def test_appending_to_a_csv_with_another_header_is_refused(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(2))
    (tmp / "out.csv").write_text("a,b\n1,2\n")
    code, err = run(
        capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.csv", "--if-exists", "append",
        "--no-progress",
    )  # fmt: skip
    assert code == 2 and "its header is ['a', 'b'], the results have columns ['id', 'y']" in err
    assert (tmp / "out.csv").read_text() == "a,b\n1,2\n"


# ---------------------------------------------------------------- 2. stop early


@pytest.mark.parametrize("batch_size", ["auto", "500"])
def test_a_systematic_failure_stops_after_calls_that_do_not_grow_with_the_file(
    workdir, capsys, batch_size: str
) -> None:
    tmp, module = workdir
    counts = {}
    for size in (2_000, 50_000):
        write_jsonl(tmp / "in.jsonl", records(size))  # no "price" column: every record fails
        (tmp / "calls.log").unlink(missing_ok=True)
        code, err = run(
            capsys, f"{module}:needs_price", "-i", "in.jsonl", "-o", "out.jsonl",
            "--batch-size", batch_size, "--workers", "2", "--no-progress",
        )  # fmt: skip
        assert code == 3, err
        assert err.count("\n") == 1
        assert "stopped early: the first 10 records all failed with KeyError" in err
        assert "KeyError: 'price'" in err and "(first: line 1" in err
        counts[size] = len(calls(tmp))
        assert leftovers(tmp, "out.jsonl") == [] and not (tmp / "out.jsonl").exists()
    # Without the guard, bisecting every chunk down to single records makes calls grow with
    # the file: at least 50,000 for the larger one. With it, the count is bounded.
    assert counts[50_000] <= 80, counts
    assert counts[50_000] <= counts[2_000] + 20, counts


def test_max_failures_stops_once_more_records_failed(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i} for i in range(100)])
    argv = [f"{module}:odd_fails", "--per-item", "-i", "in.jsonl", "-o", "out.jsonl"]
    code, err = run(capsys, *argv, "--max-failures", "3", "--batch-size", "4", "--no-progress")
    assert code == 3
    assert "more than --max-failures 3 records failed (first: line 2: ValueError: odd id 1)" in err
    assert not (tmp / "out.jsonl").exists()
    # the same input without the limit: every odd record is listed, exit 1
    job_path(tmp / "out.jsonl").unlink(missing_ok=True)
    for leftover in leftovers(tmp, "out.jsonl"):
        path = tmp / leftover
        subprocess.run(["rm", "-rf", str(path)], check=True)
    code, err = run(capsys, *argv, "--batch-size", "4", "--no-progress")
    assert code == 1 and "50 failed" in err
    assert len(read_jsonl(errors_path(tmp / "out.jsonl"))) == 50


def test_fail_fast_stops_at_the_first_failing_call(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(1_000))
    code, err = run(
        capsys, f"{module}:needs_price", "-i", "in.jsonl", "-o", "out.jsonl", "--fail-fast",
        "--batch-size", "100", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 3 and err.count("\n") == 1
    assert "--fail-fast: a call of FUNC raised KeyError: 'price'" in err
    assert len(calls(tmp)) <= 2  # the failing chunk, and at most the one queued behind it
    assert leftovers(tmp, "out.jsonl") == []


def test_without_the_systematic_check_every_record_is_tried(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(30))
    code, err = run(
        capsys, f"{module}:needs_price", "-i", "in.jsonl", "-o", "out.jsonl",
        "--systematic-failures", "0", "--batch-size", "1", "--no-progress",
    )  # fmt: skip
    assert code == 1 and "30 failed" in err
    assert len(calls(tmp)) == 30


# ---------------------------------------------------------------- 3. formats


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".tsv.zst", ".jsonl.gz"])
def test_text_outputs_and_compressed_inputs_round_trip(workdir, capsys, suffix: str) -> None:
    tmp, module = workdir
    source = tmp / f"in{suffix}"
    text = "".join(json.dumps(r) + "\n" for r in records(300))
    if ".csv" in suffix or ".tsv" in suffix:
        sep = "," if ".csv" in suffix else "\t"
        text = f"id{sep}x\n" + "".join(f"{i}{sep}{i % 7}\n" for i in range(300))
    data = text.encode()
    if suffix.endswith(".gz"):
        data = gzip.compress(data)
    elif suffix.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    source.write_bytes(data)
    out = f"out{suffix}"
    code, err = run(capsys, f"{module}:double", "-i", source.name, "-o", out, "--no-progress")
    assert code == 0, err
    raw = (tmp / out).read_bytes()
    if suffix.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif suffix.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read()
    lines = raw.decode().splitlines()
    if ".jsonl" in suffix:
        assert [json.loads(line) for line in lines] == [
            {"id": i, "y": 2 * (i % 7)} for i in range(300)
        ]
    else:
        sep = "," if ".csv" in suffix else "\t"
        assert lines == [f"id{sep}y"] + [f"{i}{sep}{2 * (i % 7)}" for i in range(300)]


def test_dash_reads_standard_input_and_writes_standard_output(workdir) -> None:
    tmp, module = workdir
    text = "".join(json.dumps(r) + "\n" for r in records(50))
    done = subprocess.run(
        [sys.executable, "-m", "batchpilot", "run", f"{module}:double", "-i", "-", "-o", "-"],
        input=text, capture_output=True, text=True, cwd=tmp, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"id": i, "y": 2 * (i % 7)} for i in range(50)
    ]
    assert "50 items" in done.stderr and "-> standard output" in done.stderr
    assert leftovers(tmp, "stdout") == []


def test_a_malformed_line_on_standard_input_is_exit_2(workdir) -> None:
    tmp, module = workdir
    done = subprocess.run(
        [sys.executable, "-m", "batchpilot", "run", f"{module}:echo", "-i", "-", "-o", "o.jsonl"],
        input='{"id": 1}\nnot json\n', capture_output=True, text=True, cwd=tmp, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), *sys.path])}, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "standard input: line 2: invalid JSON" in done.stderr
    assert not (tmp / "o.jsonl").exists() and leftovers(tmp, "o.jsonl") == []


def test_csv_columns_are_typed_by_inference_or_by_schema(workdir, capsys) -> None:
    tmp, module = workdir
    (tmp / "in.csv").write_text("id,zip,price,ok\n1,007,2.5,true\n2,010,3,false\n")
    code, err = run(capsys, f"{module}:echo", "-i", "in.csv", "-o", "out.jsonl", "--no-progress")
    assert code == 0, err
    assert read_jsonl(tmp / "out.jsonl") == [
        {"id": 1, "zip": 7, "price": 2.5, "ok": True},
        {"id": 2, "zip": 10, "price": 3.0, "ok": False},
    ]
    code, err = run(
        capsys, f"{module}:echo", "-i", "in.csv", "-o", "out.jsonl", "--if-exists", "replace",
        "--schema", "zip:str", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert [r["zip"] for r in read_jsonl(tmp / "out.jsonl")] == ["007", "010"]
    code, err = run(
        capsys, f"{module}:echo", "-i", "in.csv", "-o", "out.jsonl", "--schema", "*:str",
        "--if-exists", "replace", "--no-progress",
    )  # fmt: skip
    assert read_jsonl(tmp / "out.jsonl")[0] == {
        "id": "1",
        "zip": "007",
        "price": "2.5",
        "ok": "true",
    }
    code, err = run(
        capsys, f"{module}:echo", "-i", "in.csv", "-o", "o.jsonl", "--schema", "nope:int"
    )
    assert code == 2 and "--schema names columns the input does not have: ['nope']" in err
    code, err = run(
        capsys, f"{module}:echo", "-i", "in.csv", "-o", "o.jsonl", "--schema", "zip:int,zip:str"
    )
    assert code == 2 and "--schema gives column 'zip' twice" in err  # was: the last one won
    assert not (tmp / "o.jsonl").exists()


def test_sqlite_columns_get_declared_types(workdir, capsys) -> None:
    tmp, module = workdir
    (tmp / "in.csv").write_text("id,price,name\n1,2.5,a\n2,3.5,b\n")
    code, err = run(capsys, f"{module}:echo", "-i", "in.csv", "-o", "o.sqlite", "--no-progress")
    assert code == 0, err
    with sqlite3.connect(tmp / "o.sqlite") as db:
        types = {row[1]: row[2] for row in db.execute("PRAGMA table_info(results)")}
        assert db.execute("SELECT typeof(id), typeof(price) FROM results").fetchone() == (
            "integer",
            "real",
        )
    assert types == {"id": "INTEGER", "price": "REAL", "name": "TEXT"}


def test_the_line_column_carries_the_input_line_into_each_row(workdir, capsys) -> None:
    tmp, module = workdir
    (tmp / "in.jsonl").write_text('{"id": 0, "x": 1}\n\n{"id": 1, "x": 2}\n')
    code, err = run(
        capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--line-column", "line",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert read_jsonl(tmp / "out.jsonl") == [
        {"line": 1, "id": 0, "y": 2},
        {"line": 3, "id": 1, "y": 4},
    ]


def test_a_line_column_that_a_result_already_has_is_exit_2(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(3))
    code, err = run(
        capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--line-column", "y",
        "--no-progress",
    )  # fmt: skip
    # the result's "y" used to win silently: the rows had no line numbers
    assert code == 2 and err.count("\n") == 1, err
    assert "--line-column 'y': the results have a key 'y' already" in err
    assert not (tmp / "out.jsonl").exists() and leftovers(tmp, "out.jsonl") == []


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(workdir, capsys) -> None:
    tmp, module = workdir
    (tmp / "in.csv").write_bytes(b"\xef\xbb\xbfid,x\n1,2\n2,3\n")
    code, err = run(capsys, f"{module}:echo", "-i", "in.csv", "-o", "out.sqlite", "--no-progress")
    assert code == 0, err
    with sqlite3.connect(tmp / "out.sqlite") as db:
        assert [row[1] for row in db.execute("PRAGMA table_info(results)")] == ["id", "x"]
    code, err = run(
        capsys, f"{module}:double", "-i", "in.csv", "-o", "out.jsonl", "--schema", "id:str",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert read_jsonl(tmp / "out.jsonl") == [{"id": "1", "y": 4}, {"id": "2", "y": 6}]


@pytest.mark.parametrize(("name", "text"), [("in.jsonl", ""), ("in.csv", ""), ("in.csv", "id,x\n")])
def test_an_input_of_no_records_gives_an_empty_output(workdir, capsys, name, text) -> None:
    tmp, module = workdir
    (tmp / name).write_text(text)
    code, err = run(capsys, f"{module}:double", "-i", name, "-o", "out.csv", "--no-progress")
    assert code == 0 and "0 items" in err, err
    assert (tmp / "out.csv").read_text() == "" and leftovers(tmp, "out.csv") == []


UNICODE_COLUMNS = ["id", "prénom", "名前", "a b", 'x"y', "Straße"]


@pytest.mark.parametrize("output", ["o.sqlite", "o.csv", "o.tsv.gz", "o.parquet", "lake/"])
def test_unicode_column_names_reach_every_output(workdir, capsys, output: str) -> None:
    tmp, module = workdir
    (tmp / "in.csv").write_text('id,prénom,名前,"a b","x""y",Straße\n1,é,日本,s,q,ß\n', "utf-8")
    code, err = run(capsys, f"{module}:echo", "-i", "in.csv", "-o", output, "--no-progress")
    assert code == 0, err
    path, values = tmp / output, [1, "é", "日本", "s", "q", "ß"]
    if output.endswith(".sqlite"):
        with sqlite3.connect(path) as db:
            cursor = db.execute("SELECT * FROM results")
            rows = [dict(zip([c[0] for c in cursor.description], r, strict=True)) for r in cursor]
    elif output.endswith(("/", ".parquet")):
        rows = pq.read_table(path / "results" if output.endswith("/") else path).to_pylist()
    else:
        data = gzip.decompress(path.read_bytes()) if output.endswith(".gz") else path.read_bytes()
        delimiter = "\t" if ".tsv" in output else ","
        header, *lines = csv.reader(data.decode("utf-8").splitlines(), delimiter=delimiter)
        rows, values = [dict(zip(header, line, strict=True)) for line in lines], ["1", *values[1:]]
    assert rows == [dict(zip(UNICODE_COLUMNS, values, strict=True))]


# ---------------------------------------------------------------- 4. resume


def interrupt_a_job(capsys, module: str, source: str, output: str, *extra: str) -> dict:
    """Run ``stop_at_600`` until it interrupts itself at id 600; return the checkpoint."""
    Path("stop").touch()
    code, err = run(
        capsys, f"{module}:stop_at_600", "-i", source, "-o", output, "--batch-size", "50",
        "--workers", "1", "--no-progress", *extra,
    )  # fmt: skip
    assert code == 1 and "interrupted" in err
    Path("stop").unlink()
    job = extra[extra.index("--job") + 1] if "--job" in extra else job_path(Path(output))
    with sqlite3.connect(job) as db:
        value = db.execute("SELECT value FROM run WHERE key = 'progress'").fetchone()[0]
    return dict(json.loads(value))


def output_ids(path: Path) -> list[int]:
    name = path.name
    if name.endswith(".jsonl"):
        return [int(r["id"]) for r in read_jsonl(path)]  # type: ignore[call-overload]
    if name.endswith(".csv.gz"):
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        assert lines[0] == "id"
        return [int(line) for line in lines[1:]]
    if name.endswith(".sqlite"):
        return [int(row[0]) for row in table(path, "results")]  # type: ignore[call-overload]
    return pq.read_table(path).column("id").to_pylist()


@pytest.mark.parametrize("output", ["out.jsonl", "out.csv.gz", "out.sqlite", "out.parquet"])
def test_resume_seeks_past_the_checkpoint_instead_of_rereading(
    workdir, capsys, monkeypatch, output
) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", [{"id": i, "pad": "x" * 200} for i in range(1_000)])
    progress = interrupt_a_job(capsys, module, "in.jsonl", output)
    assert progress["offset"] > 70_000 and 300 <= progress["items"] <= 600
    assert not (tmp / output).exists()
    # Note every input line decoded: a resume that re-read the committed lines would
    # decode them; one that seeks starts at the line after the checkpoint. (Editing the
    # committed lines instead would change the input, which a resume refuses.)
    decoded: list[int] = []
    text_lines = RecordSource._text_lines

    def noting(self: RecordSource, start: Position) -> Iterator[tuple[int, int, str]]:
        for item in text_lines(self, start):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(RecordSource, "_text_lines", noting)
    (tmp / "calls.log").unlink()

    code, err = run(
        capsys, f"{module}:stop_at_600", "-i", "in.jsonl", "-o", output, "--resume",
        "--batch-size", "50", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"{progress['items']} resumed from the checkpoint" in err
    assert int(calls(tmp)[0].split()[0]) == progress["items"]  # nothing before it ran again
    assert min(decoded) == progress["line"] + 1  # no committed line was read again
    assert output_ids(tmp / output) == list(range(1_000))
    assert leftovers(tmp, output) == []


def test_parquet_input_resumes_at_the_row_group_of_the_checkpoint(workdir, capsys) -> None:
    tmp, module = workdir
    rows = [{"id": i} for i in range(1_000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "in.parquet", row_group_size=100)
    progress = interrupt_a_job(capsys, module, "in.parquet", "out.jsonl")
    (tmp / "calls.log").unlink()
    code, err = run(
        capsys, f"{module}:stop_at_600", "-i", "in.parquet", "-o", "out.jsonl", "--resume",
        "--batch-size", "50", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert int(calls(tmp)[0].split()[0]) == progress["items"]
    assert output_ids(tmp / "out.jsonl") == list(range(1_000))


def test_the_progress_bar_of_a_resumed_run_starts_at_the_checkpoint(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(1_000))
    progress = interrupt_a_job(capsys, module, "in.jsonl", "out.jsonl")
    (tmp / "slow").touch()  # the bar shows after 0.5 s: 8 calls of 0.1 s are left
    code, err = run(
        capsys, f"{module}:stop_at_600", "-i", "in.jsonl", "-o", "out.jsonl", "--resume",
        "--batch-size", "50", "--workers", "1",
    )  # fmt: skip
    assert code == 0, err
    # no total for a text input (issue 23 item 6: it would take a pass over the file)
    shown = [int(n) for n in re.findall(r"(\d+)item ", err)]
    assert shown and min(shown) >= progress["items"] > 0, err


def test_another_function_or_input_cannot_resume_a_job(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(1_000))
    interrupt_a_job(capsys, module, "in.jsonl", "out.jsonl")
    before = job_path(tmp / "out.jsonl").read_bytes()
    code, err = run(capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--resume")
    assert code == 2 and "was started with other function" in err
    write_jsonl(tmp / "in.jsonl", records(1_001))
    code, err = run(
        capsys, f"{module}:stop_at_600", "-i", "in.jsonl", "-o", "out.jsonl", "--resume"
    )
    assert code == 2 and "different input (or the input changed)" in err
    assert job_path(tmp / "out.jsonl").read_bytes() == before


# ---------------------------------------------------------------- 5. clean exits


def test_an_exit_2_during_the_run_leaves_no_job_file(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(200))
    code, err = run(
        capsys, f"{module}:grows", "-i", "in.jsonl", "-o", "out.csv", "--batch-size", "2",
        "--no-progress",
    )  # fmt: skip
    assert code == 2 and "results gained columns ['extra']" in err
    assert leftovers(tmp, "out.csv") == [] and not (tmp / "out.csv").exists()
    # so the next run needs no cleaning up
    code, err = run(capsys, f"{module}:grows", "-i", "in.jsonl", "-o", "out.jsonl", "--no-progress")
    assert code == 0, err


def test_the_job_option_puts_the_checkpoint_where_asked(workdir, capsys) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(1_000))
    (tmp / "jobs").mkdir()
    interrupt_a_job(capsys, module, "in.jsonl", "out.jsonl", "--job", "jobs/nightly.sqlite")
    assert (tmp / "jobs" / "nightly.sqlite").exists()
    assert not job_path(tmp / "out.jsonl").exists()
    code, err = run(
        capsys, f"{module}:stop_at_600", "-i", "in.jsonl", "-o", "out.jsonl", "--resume",
        "--job", "jobs/nightly.sqlite", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert output_ids(tmp / "out.jsonl") == list(range(1_000))
    assert list((tmp / "jobs").iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["-i", "folder", "-o", "out.jsonl"],
            "no input files in folder",
        ),  # a folder is partitioned
        (["-i", "in.jsonl", "-o", "missing/out.jsonl"], "output folder not found: missing"),
        (["-i", "in.jsonl", "-o", "out.jsonl", "--job", "folder"], "--job is a directory"),
        (["-i", "in.jsonl", "-o", "out.sqlite.gz"], "only JSON Lines, CSV and TSV can be"),
        (["-i", "-", "-o", "out.jsonl", "--resume"], "--resume and --job need a file"),
        (["-i", "in.jsonl", "-o", "out.jsonl", "--schema", "x:int"], "CSV and TSV inputs only"),
    ],
)
def test_bad_paths_are_exit_2_with_a_clear_line(workdir, capsys, argv, expected) -> None:
    tmp, module = workdir
    (tmp / "folder").mkdir()
    write_jsonl(tmp / "in.jsonl", records(3))
    code, err = run(capsys, f"{module}:double", *argv)
    assert code == 2 and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--input", "--output", "--table", "--schema", "--line-column"])
def test_an_empty_value_is_a_usage_error_that_writes_nothing(workdir, capsys, option) -> None:
    tmp, module = workdir
    (tmp / "in.csv").write_text("id,x\n1,2\n")
    argv = {"--input": "in.csv", "--output": "out.sqlite", option: ""}  # e.g. -o "$UNSET"
    code, err = run(capsys, f"{module}:echo", *(arg for pair in argv.items() for arg in pair))
    assert code == 2 and err.count("\n") == 1, err
    assert f"argument {option}" in err and "expected a value, got ''" in err
    # -o '' used to write a Parquet dataset into the current folder; --table '' a table ""
    written = {p.name for p in tmp.iterdir()} - {f"{module}.py", "in.csv", "__pycache__"}
    assert written == set()


def test_a_checkpoint_of_the_earlier_format_is_named_and_kept(workdir, capsys) -> None:
    from batchpilot.bulk import map_batches

    tmp, module = workdir
    job = job_path(tmp / "out.jsonl")
    with map_batches(lambda rs: rs, records(40), batch_size=4, job=str(job)) as partial:
        next(partial)  # the engine's job file, as batchpilot run wrote it before
    before = job.read_bytes()
    write_jsonl(tmp / "in.jsonl", records(40))
    code, err = run(capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--resume")
    assert code == 2 and "is a checkpoint of an earlier batchpilot version" in err
    code, err = run(capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl")
    assert code == 2 and "pass --job FILE to keep it and use another job file" in err
    assert job.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"garbage" * 100, "is not a job file of batchpilot run"),
        (None, "holds no committed progress"),
    ],
)
def test_a_broken_job_file_is_a_clear_error_naming_it(workdir, capsys, content, expected) -> None:
    tmp, module = workdir
    write_jsonl(tmp / "in.jsonl", records(3))
    job = job_path(tmp / "out.jsonl")
    if content is None:  # created, killed before its first commit
        with sqlite3.connect(job) as db:
            db.execute("CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE segments (number INTEGER PRIMARY KEY, size INTEGER)")
            db.execute("INSERT INTO run VALUES ('format', ?)", (FORMAT,))
    else:
        job.write_bytes(content)
    code, err = run(capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--resume")
    assert code == 2 and err.count("\n") == 1
    assert str(job.name) in err and expected in err


# ---------------------------------------------------------------- 6. installed extras


@pytest.mark.parametrize(
    ("executor", "missing"),
    [("dask", "cloudpickle"), ("dask", "distributed"), ("ray", "cloudpickle"), ("ray", "ray")],
)
def test_a_cluster_executor_without_its_extra_is_exit_2_before_any_work(
    workdir, capsys, monkeypatch, executor: str, missing: str
) -> None:
    tmp, module = workdir
    monkeypatch.setitem(sys.modules, missing, None)  # importing it fails, as when not installed
    write_jsonl(tmp / "in.jsonl", records(3))
    code, err = run(
        capsys, f"{module}:double", "-i", "in.jsonl", "-o", "out.jsonl", "--executor", executor,
        "--no-progress",
    )  # fmt: skip
    # was: exit 1 "ModuleNotFoundError: No module named 'cloudpickle'" after the input scan
    assert code == 2 and err.count("\n") == 1, err
    assert f"--executor {executor} needs {missing}, which is not installed" in err
    assert err.rstrip().endswith(f"which is not installed: pip install {missing}"), err
    assert not (tmp / "out.jsonl").exists() and leftovers(tmp, "out.jsonl") == []


def test_each_cluster_extra_installs_what_ships_the_function() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    # dask[distributed] requires cloudpickle; ray does not, so its extra must name it
    assert any(r.startswith("dask[distributed]") for r in extras["dask"])
    assert any(r.startswith("cloudpickle") for r in extras["ray"])
