#!/usr/bin/env python3
"""batchpilot's online engine against the peer batchers, in one run of the peers harness.

    python benchmarks/online_vs_peers.py --quick              # smoke run, ~1-2 min
    python benchmarks/online_vs_peers.py --repeats 3          # full run, ~12 min

1. Creates ``.venv-peers`` in the project root (outside the package's dependencies)
   with ``numpy batched 'ray[serve]' psutil``, unless it already exists.
2. Runs ``../shared/bench/peers/bench.py`` in it with ``benchmarks/peers_plugin.py``
   (contenders ``batchpilot_async`` and ``batchpilot_thread``) beside ``naive``,
   ``batched`` and ``ray_serve_batch_patched`` and the ``direct``/``direct64``
   ceilings, same settings (max batch 64, max wait 5 ms).
3. Writes the results JSON (``bench-online.json`` by default), prints the harness's
   markdown tables and a check of issue 4's targets, and with ``--doc PATH`` writes
   both, with the command and the machine's load, as a markdown page
   (``docs/perf-online.md``).

Other options are passed through to bench.py (e.g. ``--workloads matmul``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT.parent / "shared" / "bench" / "peers" / "bench.py"
PLUGIN = ROOT / "benchmarks" / "peers_plugin.py"
PEERS_VENV = ROOT / ".venv-peers"
PEER_PACKAGES = ["numpy", "batched", "ray[serve]", "psutil"]
CONTENDERS = [
    "direct",
    "direct64",
    "naive",
    "batched",
    "ray_serve_batch_patched",
    "batchpilot_async",
    "batchpilot_thread",
]
PEERS = ("naive", "batched", "ray_serve_batch_patched")


def peers_python() -> Path:
    """The peers venv's interpreter, creating and filling the venv on first use."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEERS_VENV} with {' '.join(PEER_PACKAGES)}", flush=True)
        venv.create(PEERS_VENV, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def _median(cell: dict, key: str) -> float | None:
    median = cell.get("median") or {}
    return median.get(key)


def target_report(results: dict) -> str:
    """Issue 4's targets, each checked against the medians of this run."""
    cells = {
        (c["scenario"], c["workload"], c["concurrency"], c["contender"]): c
        for c in results["cells"]
    }

    def thr(scenario: str, workload: str, conc: int | None, name: str) -> float:
        cell = cells.get((scenario, workload, conc, name))
        value = None if cell is None or cell["status"] != "OK" else _median(cell, "throughput")
        return float("nan") if value is None else float(value)

    def p(scenario: str, workload: str, conc: int, name: str, key: str) -> float:
        cell = cells.get((scenario, workload, conc, name))
        value = None if cell is None else _median(cell, key)
        return float("nan") if value is None else float(value)

    lines = ["| target | measured | met |", "|---|---|---|"]

    def row(text: str, measured: str, ok: bool) -> None:
        lines.append(f"| {text} | {measured} | {'yes' if ok else 'NO'} |")

    workloads = results["meta"]["workloads"]
    clients = results["meta"]["clients"]
    ours = "batchpilot_async"
    for workload in ("trivial", "matmul"):
        if workload not in workloads:
            continue
        for conc in (1, 32):
            if conc not in clients:
                continue
            best = max(thr("async", workload, conc, name) for name in PEERS)
            mine = thr("async", workload, conc, ours)
            p50 = p("async", workload, conc, ours, "p50_ms")
            row(
                f"async {workload} C={conc}: >= 10x best peer, p50 <= 0.3 ms",
                f"{mine / best:.1f}x, p50 {p50:.3f} ms",
                mine >= 10 * best and p50 <= 0.3,
            )
        if 256 in clients:
            best = max(
                thr("async", workload, 256, n) for n in ("batched", "ray_serve_batch_patched")
            )
            naive = thr("async", workload, 256, "naive")
            mine = thr("async", workload, 256, ours)
            row(
                f"async {workload} C=256: >= 2.5x best of batched/ray, >= 1.0x naive",
                f"{mine / best:.2f}x, {mine / naive:.2f}x naive",
                mine >= 2.5 * best and mine >= naive,
            )
    if "fixed_cost" in workloads and 256 in clients:
        ceiling = thr("ceiling", "fixed_cost", None, "direct64")
        mine = thr("async", "fixed_cost", 256, ours)
        row(
            "async fixed_cost C=256: >= 95% of direct64",
            f"{100 * mine / ceiling:.1f}%",
            mine >= 0.95 * ceiling,
        )
        best_p99 = min(p("async", "fixed_cost", 256, n, "p99_ms") for n in PEERS)
        p99 = p("async", "fixed_cost", 256, ours, "p99_ms")
        row(
            "async fixed_cost C=256: p99 <= best peer",
            f"{p99:.2f} ms vs {best_p99:.2f} ms",
            p99 <= best_p99,
        )
    threads = results["meta"]["threads"]
    for workload, factor in (("trivial", 5.0), ("matmul", 5.0), ("fixed_cost", 2.0)):
        if workload not in workloads or not threads:
            continue
        peer = thr("thread", workload, threads, "batched")
        mine = thr("thread", workload, threads, "batchpilot_thread")
        row(
            f"threads {workload} T={threads}: >= {factor:g}x batched",
            f"{mine / peer:.2f}x",
            mine >= factor * peer,
        )
    return "\n".join(lines)


def harness_tables(python: Path, results_path: str) -> str:
    """The harness's own markdown tables of a results file."""
    command = [str(python), str(HARNESS), "--table", results_path]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def write_doc(path: str, command: str, results: dict, tables: str, load: tuple[str, str]) -> None:
    """The benchmark page: how it was run, on what, the tables and the targets."""
    meta = results["meta"]
    config = meta["config"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    text = f"""# Online engine vs peer batchers

Generated by `benchmarks/online_vs_peers.py`; regenerate with the command below.
Contenders: `batchpilot_async` (`await f(x)` from asyncio tasks) and
`batchpilot_thread` (blocking `f(x)` from threads), both `batchpilot.batch` with
the peers' settings (max batch {config["max_batch_size"]}, max wait
{config["max_wait_s"] * 1000:g} ms), beside `naive`, `batched` and
`ray_serve_batch_patched` in the same run of `../shared/bench/peers/bench.py`
(its README explains workloads, scenarios and metrics).

```sh
{command}
```

Run {meta["started"]} to {meta.get("finished", "?")} on {meta["cpu"]}
({meta["cpu_count"]} cores), Python {meta["python"]}, {versions}, BLAS threads
{meta["blas_threads"]}. Load average before / after the run: {load[0]} / {load[1]}.
The machine is shared with other engineers' builds and benchmarks, so absolute
numbers are lower and noisier than on an idle machine (see the `spread %` column);
all contenders of a cell ran interleaved in the same rounds, so the ratios are the
fair comparison.

## Targets (issue 4), from the medians below

{target_report(results)}

## Tables (median of {config["repeats"]} runs)

{tables}
"""
    Path(path).write_text(text)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench-online.json"))
    parser.add_argument("--doc", metavar="PATH", help="write the markdown page here")
    parser.add_argument("--targets", metavar="RESULTS_JSON", help="only check a results file")
    parser.add_argument(
        "--command", help="with --targets and --doc: the command that produced the results"
    )
    args, passthrough = parser.parse_known_args(argv)
    if args.targets:
        with open(args.targets) as handle:
            results = json.load(handle)
        print(target_report(results))
        if args.doc:
            tables = harness_tables(peers_python(), args.targets)
            write_doc(args.doc, args.command or "?", results, tables, ("?", "?"))
        return 0
    load_before = _load()
    python = peers_python()
    command = [
        str(python),
        str(HARNESS),
        "--plugin",
        str(PLUGIN),
        "--contenders",
        ",".join(CONTENDERS),
        "--out",
        args.out,
        *passthrough,
    ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    with open(args.out) as handle:
        results = json.load(handle)
    print()
    print(target_report(results))
    if args.doc:
        invocation = " ".join(
            ["python", "benchmarks/online_vs_peers.py", *map(shlex.quote, argv or sys.argv[1:])]
        )
        write_doc(
            args.doc, invocation, results, harness_tables(python, args.out), (load_before, _load())
        )
        print(f"wrote {args.doc}")
    spreads = [
        c["median"]["thr_spread_pct"]
        for c in results["cells"]
        if c.get("median") and c["median"].get("thr_spread_pct") is not None
    ]
    if spreads:
        print(f"\nmedian spread across cells: {statistics.median(spreads):.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
