"""Benchmark: partitioned bulk jobs on a cluster (issue 23) against Dask and Ray Data.

Run from the repository root::

    .venv/bin/python benchmarks/bulk_partitions.py                 # 3.2M rows, 5 rounds
    .venv/bin/python benchmarks/bulk_partitions.py --quick         # 400k rows, 1 round
    .venv/bin/python benchmarks/bulk_partitions.py --rows 20000000 --contenders bp-pyarrow

Data: ``--rows`` rows (default 3.2M) in ``--files`` Parquet files (default 8), columns
``id`` (int64) and ``x`` (float64); the job is ``y = x * 2 + 1``. A cluster of
``--workers`` worker processes (default 2, one thread each) is started once per
kind: a Dask scheduler and workers (``dask scheduler`` / ``dask worker``) and a local
Ray (held by one process), both on 127.0.0.1. Every contender runs as its own driver
process against that cluster and reports what the job alone cost it (imports and
connecting excluded): wall seconds, its CPU seconds, its peak RSS, and the whole
machine's CPU seconds meanwhile (the job's, since nothing else runs).

Contenders (``--contenders``):

* ``bp-pyarrow``, ``bp-pandas``, ``bp-numpy``, ``bp-records``: ``map_batches`` over
  ``batchpilot.sources.parquet`` into ``batchpilot.sinks.parquet``, on Dask, in each
  batch format (the records function is the same dict function the peers get);
* ``bp-ray-pyarrow``: the same on Ray;
* ``bp-model``: a model class whose ``setup()`` takes 1 s; its setups are counted;
* ``dask-df`` / ``dask-records``: ``dd.read_parquet().map_partitions(fn).to_parquet()``
  with a pandas function / the dict function;
* ``ray-data`` / ``ray-records``: ``ray.data.read_parquet().map_batches(fn,
  batch_format="pyarrow").write_parquet()`` with a pyarrow function / the dict function;
* ``cli-dask``: the driver-fed ``batchpilot run --executor dask --address`` on the
  same rows in one Parquet file; ``cli-threads``: ``batchpilot run`` on threads; with
  ``--cli-src`` they run another batchpilot (e.g. the one before issue 23).

``--kills N`` (default 5) also runs a resumable job on each cluster kind and SIGKILLs
its driver N times at random points (after 1-4 newly recorded partitions), then lets
it finish, and counts the input ids lost and duplicated in the output.

Rounds interleave the contenders; each cell is the median of its rounds. Each output
is checked (its row count, and ``y`` of a sample of rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

DASK_CONTENDERS = ("bp-pyarrow", "bp-pandas", "bp-numpy", "bp-records", "bp-model")
DASK_PEERS = ("dask-df", "dask-records")
RAY_CONTENDERS = ("bp-ray-pyarrow", "ray-data", "ray-records")
CLI_CONTENDERS = ("cli-dask", "cli-threads")
ALL = DASK_CONTENDERS + DASK_PEERS + RAY_CONTENDERS + CLI_CONTENDERS
DEFAULT = ("bp-pyarrow", "bp-records", "bp-model", *DASK_PEERS, *RAY_CONTENDERS, "cli-threads")

# The job, importable by the driver and the workers alike (written next to the data).
FUNCTIONS = '''
import os, time
import pyarrow as pa
import pyarrow.compute as pc

def add_pyarrow(table):
    return table.append_column("y", pc.add(pc.multiply(table["x"], 2.0), 1.0))

def add_pandas(frame):
    return frame.assign(y=frame["x"] * 2.0 + 1.0)

def add_numpy(columns):
    return {**columns, "y": columns["x"] * 2.0 + 1.0}

def add_records(rows):
    return [{**row, "y": row["x"] * 2.0 + 1.0} for row in rows]

def slow_add_pyarrow(table):
    time.sleep(0.05)
    return add_pyarrow(table)

def records_as_pandas(frame):
    import pandas as pd
    return pd.DataFrame(add_records(frame.to_dict("records")))

def records_as_pyarrow(table):
    return pa.Table.from_pylist(add_records(table.to_pylist()))

class SlowModel:
    """A model whose setup takes 1 s; each setup appends its pid to $BENCH_SETUP_LOG."""

    def setup(self):
        time.sleep(1.0)
        with open(os.environ["BENCH_SETUP_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")

    def predict(self, table):
        return add_pyarrow(table)
'''


# --- data ------------------------------------------------------------------------------


def make_data(folder: Path, rows: int, files: int) -> Path:
    """``files`` Parquet files of ``rows`` rows in all, and the same rows in one file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = folder / "input"
    parts.mkdir(parents=True)
    rng = np.random.default_rng(23)
    per_file = -(-rows // files)
    with pq.ParquetWriter(
        folder / "all.parquet", pa.schema([("id", pa.int64()), ("x", pa.float64())])
    ) as whole:
        for i in range(files):
            start = i * per_file
            count = max(0, min(per_file, rows - start))
            table = pa.table({"id": np.arange(start, start + count), "x": rng.random(count)})
            pq.write_table(table, parts / f"part-{i:03d}.parquet")
            whole.write_table(table)
    return parts


def check_output(path: Path, rows: int) -> None:
    """``path`` (a file or a folder of Parquet parts) holds ``rows`` rows with the right y."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = [p for p in sorted(path.rglob("*.parquet")) if not p.name.startswith((".", "_"))]
    table = ds.dataset([str(p) for p in files] or str(path), format="parquet").to_table()
    if table.num_rows != rows:
        raise AssertionError(f"{path}: {table.num_rows} rows, expected {rows}")
    sample = table.slice(0, 1000)
    expected = pc.add(pc.multiply(sample["x"], 2.0), 1.0)
    if not pc.all(pc.less(pc.abs(pc.subtract(sample["y"], expected)), 1e-9)).as_py():
        raise AssertionError(f"{path}: wrong y")


# --- clusters --------------------------------------------------------------------------


class Cluster:
    """A Dask or Ray cluster of ``workers`` one-thread worker processes on 127.0.0.1."""

    def __init__(self, kind: str, workers: int, workdir: Path, env: dict[str, str]) -> None:
        self.kind = kind
        self._procs: list[subprocess.Popen[bytes]] = []
        self._env = env
        bin_dir = Path(sys.executable).parent
        if kind == "dask":
            scheduler_file = workdir / "scheduler.json"
            self._spawn(
                [
                    bin_dir / "dask",
                    "scheduler",
                    "--host",
                    HOST,
                    "--port",
                    "0",
                    "--dashboard-address",
                    ":0",
                    "--scheduler-file",
                    scheduler_file,
                ]
            )
            deadline = time.monotonic() + 60
            while not scheduler_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.address = json.loads(scheduler_file.read_text())["address"]
            self._spawn(
                [
                    bin_dir / "dask",
                    "worker",
                    self.address,
                    "--nworkers",
                    str(workers),
                    "--nthreads",
                    "1",
                    "--host",
                    HOST,
                    "--no-dashboard",
                    "--memory-limit",
                    "0",
                ]
            )
            from dask.distributed import Client

            with Client(self.address, timeout="60s") as client:
                client.wait_for_workers(workers, timeout=120)
        else:  # a process that holds a local Ray runtime, as `ray.init` starts it
            holder = subprocess.Popen(
                [sys.executable, "-c", RAY_HOLDER, HOST, str(workers)],
                env=env,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            self._procs.append(holder)
            assert holder.stdout is not None
            self.address = holder.stdout.readline().decode().strip()

    def _spawn(self, command: list[Any]) -> None:
        self._procs.append(
            subprocess.Popen(
                [str(c) for c in command],
                env=self._env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for proc in self._procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


RAY_HOLDER = """
import signal, sys, ray
context = ray.init(num_cpus=int(sys.argv[2]), include_dashboard=False,
                   _node_ip_address=sys.argv[1], log_to_driver=False)
print(context.address_info["gcs_address"], flush=True)
signal.signal(signal.SIGTERM, lambda *_: (ray.shutdown(), sys.exit(0)))
signal.pause()
"""


# --- drivers (each runs in its own process) --------------------------------------------


def connect(kind: str, address: str) -> Any:
    """What ``map_batches`` runs on: a client of the Dask cluster, or "ray" once connected."""
    if kind == "ray":
        import ray

        ray.init(address=address, log_to_driver=False)
        return "ray"
    from dask.distributed import Client

    return Client(address)


class JobMeter:
    """What the driver spends on the job alone (imports and connecting excluded): wall
    seconds, its CPU seconds (its children's included: the CLI runs as one), the whole
    machine's CPU seconds, and its peak RSS."""

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = self._own_cpu()
        self._machine = sum(psutil.cpu_times()[:3])

    @staticmethod
    def _own_cpu() -> float:
        own, children = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def report(self) -> dict[str, float]:
        # VmHWM is this process's own peak (ru_maxrss survives fork+exec on Linux, so it
        # would report the harness's peak); the CLI contender's work is its child's.
        own_kb = next(
            int(line.split()[1])
            for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
        peak_kb = max(own_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        return {
            "seconds": time.perf_counter() - self._wall,
            "driver_cpu_s": self._own_cpu() - self._cpu,
            "job_cpu_s": sum(psutil.cpu_times()[:3]) - self._machine,
            "driver_peak_rss_mb": peak_kb / 1024,
        }


def drive(name: str, source: Path, whole: Path, out: Path, address: str) -> dict[str, float]:
    """The driver of contender ``name``: connect, run the job (writing the output under
    ``out``), and return what the job alone cost (`JobMeter`)."""
    import bpbench_functions as job

    meter = JobMeter()

    if name.startswith("kill-"):  # a resumable run, killed and restarted by `kill_trials`
        from batchpilot import sinks, sources
        from batchpilot.bulk import map_batches

        executor = connect(name.removeprefix("kill-"), address)
        meter.start()
        map_batches(
            job.slow_add_pyarrow,
            sources.parquet(str(source.parent / "kill-input")),
            batch_format="pyarrow",
            batch_size=5_000,
            sink=sinks.parquet(str(out)),
            job=str(out.parent / f"{name}.job.sqlite"),
            executor=executor,
        ).wait()
    elif name.startswith("bp-"):
        from batchpilot import sinks, sources
        from batchpilot.bulk import map_batches

        fmt = {"bp-model": "pyarrow", "bp-ray-pyarrow": "pyarrow"}.get(name, name[3:])
        fn = job.SlowModel if name == "bp-model" else getattr(job, f"add_{fmt}")
        executor = connect("ray" if name == "bp-ray-pyarrow" else "dask", address)
        meter.start()
        run = map_batches(
            fn,
            sources.parquet(str(source)),
            batch_format=fmt,
            sink=sinks.parquet(str(out)),
            executor=executor,
        )
        run.wait()
        if run.failures:
            raise SystemExit(f"{name}: {len(run.failures)} rows failed, first {run.failures[0]}")
    elif name.startswith("dask-"):
        import dask.dataframe as dd
        from dask.distributed import Client

        with Client(address):
            fn = job.add_pandas if name == "dask-df" else job.records_as_pandas
            meter.start()
            dd.read_parquet(str(source)).map_partitions(fn).to_parquet(str(out))
    elif name.startswith("ray-"):
        import ray

        ray.init(address=address, log_to_driver=False)
        fn = job.add_pyarrow if name == "ray-data" else job.records_as_pyarrow
        meter.start()
        ray.data.read_parquet(str(source)).map_batches(fn, batch_format="pyarrow").write_parquet(
            str(out)
        )
    else:
        out.mkdir()
        meter.start()
        command = [
            sys.executable,
            "-m",
            "batchpilot",
            "run",
            "bpbench_functions:add_records",
            "-i",
            str(whole),
            "-o",
            str(out / "out.parquet"),
        ]
        if name == "cli-dask":
            command += ["--executor", "dask", "--address", address]
        baseline = os.environ.get("BENCH_CLI_SRC")  # the batchpilot that the CLI rows run
        env = os.environ.copy()
        if baseline:
            env["PYTHONPATH"] = os.pathsep.join([baseline, env.get("PYTHONPATH", "")])
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return meter.report()


def run_cell(
    name: str, args: argparse.Namespace, data: Path, rows: int, address: str, env: dict[str, str]
) -> dict[str, Any]:
    """One timed run of ``name``'s driver process; its output checked."""
    out = data / "out" / name
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(exist_ok=True)
    setup_log = Path(env["BENCH_SETUP_LOG"])  # the workers' setups append to it
    setup_log.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--drive", name, "--data", str(data), "--address", address]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, check=False)
    if done.returncode:
        raise RuntimeError(f"{name}: driver exited {done.returncode}")
    check_output(out, rows)
    cost = json.loads(done.stdout.decode().strip().splitlines()[-1])
    cell = {"contender": name, "rows": rows, **cost, "rows_per_s": rows / cost["seconds"]}
    if setup_log.exists():
        pids = setup_log.read_text().split()
        cell["setups"] = len(pids)
        cell["setup_processes"] = len(set(pids))
    return cell


def kill_trials(
    kind: str, data: Path, address: str, env: dict[str, str], kills: int, seed: int = 23
) -> dict[str, Any]:
    """Kill the driver of a resumable run with SIGKILL ``kills`` times, each after a
    random number (1-4) of newly recorded partitions, then let it finish; count the
    input ids lost and duplicated in the output."""
    import random
    import sqlite3

    import pyarrow.parquet as pq

    name = f"kill-{kind}"
    out = data / "out" / name
    job_file = out.parent / f"{name}.job.sqlite"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(exist_ok=True)
    job_file.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--drive", name, "--data", str(data), "--address", address]

    def recorded() -> int:
        try:
            with sqlite3.connect(f"file:{job_file}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM partitions").fetchone()[0])
        except sqlite3.Error:
            return 0

    rng = random.Random(seed)
    done = 0
    for _ in range(kills):
        target = recorded() + rng.randint(1, 4)
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        while recorded() < target and driver.poll() is None:
            time.sleep(0.01)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        done += 1
    finished = subprocess.run(command, env=env, capture_output=True, check=False)
    if finished.returncode:
        raise RuntimeError(f"{name}: the last run failed:\n{finished.stderr.decode()[-3000:]}")
    manifest = json.loads((out / "_manifest.json").read_text())
    ids: list[int] = []
    for part in manifest["parts"]:
        ids += pq.read_table(out / part["path"], columns=["id"])["id"].to_pylist()
    expected = set(range(KILL_FILES * KILL_ROWS))
    return {
        "cluster": kind,
        "kills": done,
        "rows": len(expected),
        "lost": len(expected - set(ids)),
        "duplicated": len(ids) - len(set(ids)),
    }


KILL_FILES, KILL_ROWS = 32, 20_000  # the kill trials' input: 32 files of 4 row groups


def make_kill_input(data: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = data / "kill-input"
    folder.mkdir()
    for i in range(KILL_FILES):
        ids = np.arange(i * KILL_ROWS, (i + 1) * KILL_ROWS)
        table = pa.table({"id": ids, "x": ids * 0.5})
        pq.write_table(table, folder / f"part-{i:03d}.parquet", row_group_size=KILL_ROWS // 4)


# --- report ---------------------------------------------------------------------------

PLOT = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
cells = data["cells"]
names = [c["contender"] for c in cells]
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), dpi=110)
def color(name):
    if name.startswith("bp-"):
        return "tab:blue"
    return "tab:gray" if name.startswith("cli-") else "tab:orange"
colors = [color(n) for n in names]
left.barh(names, [c["rows_per_s"] / 1e6 for c in cells], color=colors)
left.invert_yaxis()
left.set_xlabel("million rows/s (median of rounds)")
left.set_title(f"{data['rows']:,} rows, y = x * 2 + 1, 2 worker processes")
shares = [100 * c["driver_cpu_s"] / max(c["job_cpu_s"], 1e-9) for c in cells]
right.barh(names, shares, color=colors)
right.invert_yaxis()
right.set_xlabel("driver CPU, % of the job's CPU seconds")
right.set_title("what the driver spends (blue: batchpilot partitioned)")
fig.tight_layout()
fig.savefig(sys.argv[2])
"""


def plot(result: Path, image: Path, venv: Path) -> None:
    """Draw ``result`` (the --json file) into ``image`` with matplotlib from ``venv``
    (made here on first use, so batchpilot's environment does not need matplotlib)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "matplotlib"], check=True)
    subprocess.run([str(python), "-c", PLOT, str(result), str(image)], check=True)


def median_cells(cells: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(cells[0])
    for key in ("seconds", "rows_per_s", "driver_cpu_s", "driver_peak_rss_mb", "job_cpu_s"):
        merged[key] = statistics.median(c[key] for c in cells)
    merged["rounds"] = len(cells)
    return merged


def table(cells: list[dict[str, Any]], base: str) -> str:
    ref = next((c["rows_per_s"] for c in cells if c["contender"] == base), None)
    lines = [
        f"| contender | rows/s | vs {base} | driver CPU s | driver CPU share "
        "| driver peak RSS MB | setups |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        ratio = f"{c['rows_per_s'] / ref:.2f}x" if ref else "-"
        share = c["driver_cpu_s"] / c["job_cpu_s"] if c["job_cpu_s"] else 0.0
        setups = f"{c['setups']} in {c['setup_processes']} processes" if "setups" in c else ""
        lines.append(
            f"| {c['contender']} | {c['rows_per_s'] / 1e6:.2f}M | {ratio} "
            f"| {c['driver_cpu_s']:.2f} | {share:.1%} | {c['driver_peak_rss_mb']:.0f} | {setups} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_200_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--contenders", nargs="+", choices=ALL, default=list(DEFAULT))
    parser.add_argument("--quick", action="store_true", help="400k rows, 1 round")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="draw the table into this PNG (needs --json)")
    parser.add_argument(
        "--plot-venv", type=Path, default=ROOT / ".bench-venvs" / "plot", help="has matplotlib"
    )
    parser.add_argument(
        "--cli-src",
        type=Path,
        help="the src/ folder of the batchpilot the cli-* contenders run (e.g. a worktree "
        "of the commit before issue 23: 'today's' CLI); default: this one",
    )
    parser.add_argument(
        "--kills", type=int, default=5, help="driver SIGKILLs per cluster kind (0: none)"
    )
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        cost = drive(
            args.drive,
            args.data / "input",
            args.data / "all.parquet",
            args.data / "out" / args.drive,
            args.address,
        )
        print(json.dumps(cost), flush=True)
        return 0
    if args.quick:
        args.rows, args.rounds = 400_000, 1
    with tempfile.TemporaryDirectory(prefix="bp-partitions-") as tmp:
        data = Path(tmp)
        (data / "bpbench_functions.py").write_text(textwrap.dedent(FUNCTIONS))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(data), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
            ),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
            "BENCH_SETUP_LOG": str(data / "setups.log"),  # set in the workers too
            "BENCH_CLI_SRC": str(args.cli_src.resolve())
            if args.cli_src
            else "",  # a token file from another run would lock drivers out
            "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
        }
        sys.path.insert(0, str(data))
        make_data(data, args.rows, args.files)
        print(f"{args.rows:,} rows in {args.files} files; {args.workers} workers", flush=True)
        kinds = {
            "dask": [c for c in args.contenders if c not in RAY_CONTENDERS],
            "ray": [c for c in args.contenders if c in RAY_CONTENDERS],
        }
        if args.kills:
            make_kill_input(data)
        cells: dict[str, list[dict[str, Any]]] = {}
        trials: list[dict[str, Any]] = []
        for kind, names in kinds.items():
            if not names and not args.kills:
                continue
            cluster = Cluster(kind, args.workers, data, env)
            try:
                if args.kills:
                    trials.append(kill_trials(kind, data, cluster.address, env, args.kills))
                    print(f"kill trials: {trials[-1]}", flush=True)
                for round_ in range(args.rounds if names else 0):
                    for name in names:
                        cell = run_cell(name, args, data, args.rows, cluster.address, env)
                        cells.setdefault(name, []).append(cell)
                        print(
                            f"round {round_ + 1} {name:<15} "
                            f"{cell['rows_per_s'] / 1e6:6.2f}M rows/s "
                            f"driver {cell['driver_cpu_s']:.2f} CPU s, "
                            f"{cell['driver_peak_rss_mb']:.0f} MB"
                            + (f", {cell['setups']} setups" if "setups" in cell else ""),
                            flush=True,
                        )
            finally:
                cluster.stop()
        merged = [median_cells(c) for c in cells.values()]
        print(f"\n## {args.rows:,} rows, {args.workers} workers, median of {args.rounds} rounds\n")
        if merged:
            print(table(merged, "dask-df" if "dask-df" in cells else merged[0]["contender"]))
        if trials:
            print("\n## Driver SIGKILLed at random points, then resumed\n")
            print("| cluster | kills | rows | lost | duplicated |\n|---|---:|---:|---:|---:|")
            for t in trials:
                row = (t["cluster"], t["kills"], f"{t['rows']:,}", t["lost"], t["duplicated"])
                print("| " + " | ".join(map(str, row)) + " |")
        if args.json:
            result = {"rows": args.rows, "cells": merged, "kill_trials": trials}
            args.json.write_text(json.dumps(result, indent=2))
            if args.plot and merged:
                plot(args.json, args.plot, args.plot_venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
