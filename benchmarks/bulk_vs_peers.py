"""Benchmark: batchpilot.map_batches against joblib, mpire and concurrent.futures.

Run from the repository root (peers are installed in a separate venv that this
script creates on first use, never in batchpilot's dependencies)::

    .venv/bin/python benchmarks/bulk_vs_peers.py            # all sections
    .venv/bin/python benchmarks/bulk_vs_peers.py --quick    # fewer items, 1 repeat

Sections (issue 5, Targets):

* ``trivial``: 1,000,000 items, ``x*2``; best of 3 after a warm-up. Peers at their
  defaults with a per-item function (joblib threads/loky ``batch_size="auto"``,
  mpire ``WorkerPool.map``, ``concurrent.futures`` map) are so slow that they run
  on ``--peer-items`` items (default 100,000) and are reported in items/s, which
  does not depend on the count for them. Hand-chunked peers get the same batch
  function on chunks of 10,000 items.
* ``variable``: a batch function that costs 2 ms per call plus 0.1..1.0 ms per
  item (10x spread, fixed seed); ``batch_size="auto"`` against the best of a
  grid of fixed sizes, same executor and workers; median of 3.
* ``memory``: peak RSS growth while streaming 10,000,000 small items (subprocess).
* ``resume``: a job killed with SIGKILL at random points, then rerun: lost and
  duplicated items.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".venv-bench"
PEER_PACKAGES = ["joblib", "mpire", "numpy", "psutil", "tqdm", "cloudpickle"]
WORKERS = 2
HAND_CHUNK = 10_000


def ensure_bench_venv() -> None:
    """Re-run this script inside .venv-bench, creating it (with the peers) if needed."""
    python = BENCH_VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == BENCH_VENV.resolve():
        return
    if not python.exists():
        print(f"creating {BENCH_VENV} with {', '.join(PEER_PACKAGES)} ...", flush=True)
        venv.create(BENCH_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    os.execve(str(python), [str(python), __file__, *sys.argv[1:]], env)


# -- workloads (module level: process pools pickle them) ---------------------


def double(x: int) -> int:
    return x * 2


def double_batch(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def chunks_of(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def best_of(run: Callable[[], int], repeats: int) -> float:
    """Best wall time of ``repeats`` runs after one warm-up; checks the item count."""
    expected = run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        count = run()
        times.append(time.perf_counter() - began)
        assert count == expected
    return min(times)


# -- trivial items -------------------------------------------------------------


def trivial_section(items: int, peer_items: int, repeats: int) -> list[dict[str, Any]]:
    import concurrent.futures as cf

    from joblib import Parallel, delayed
    from mpire import WorkerPool

    from batchpilot.bulk import map_batches

    def serial() -> int:
        return len(double_batch(list(range(items))))

    def batchpilot_default() -> int:
        return len(list(map_batches(double_batch, range(items))))

    def joblib_auto(backend: str) -> Callable[[], int]:
        def run() -> int:
            parallel = Parallel(n_jobs=WORKERS, backend=backend, batch_size="auto")
            return len(parallel(delayed(double)(x) for x in range(peer_items)))

        return run

    def mpire_map() -> int:
        with WorkerPool(n_jobs=WORKERS) as pool:
            return len(pool.map(double, range(peer_items)))

    def futures_map() -> int:
        with cf.ThreadPoolExecutor(WORKERS) as pool:
            return len(list(pool.map(double, range(peer_items))))

    def hand_joblib_threads() -> int:
        parallel = Parallel(n_jobs=WORKERS, backend="threading")
        parts = parallel(delayed(double_batch)(c) for c in chunks_of(range(items), HAND_CHUNK))
        return len(list(chain.from_iterable(parts)))

    def hand_pool(pool_type: type[cf.Executor]) -> Callable[[], int]:
        def run() -> int:
            with pool_type(WORKERS) as pool:
                parts = pool.map(double_batch, chunks_of(range(items), HAND_CHUNK))
                return len(list(chain.from_iterable(parts)))

        return run

    cases: list[tuple[str, str, Callable[[], int], int]] = [
        ("serial list comprehension (reference)", "reference", serial, items),
        ("batchpilot map_batches (defaults)", "batchpilot", batchpilot_default, items),
        ("joblib threads, batch_size=auto, per item", "auto", joblib_auto("threading"), peer_items),
        ("joblib loky, batch_size=auto, per item", "auto", joblib_auto("loky"), peer_items),
        ("mpire WorkerPool.map, per item", "auto", mpire_map, peer_items),
        ("concurrent.futures ThreadPool map, per item", "auto", futures_map, peer_items),
        ("hand-chunked joblib threads (10,000)", "hand", hand_joblib_threads, items),
        (
            "hand-chunked ThreadPoolExecutor (10,000)",
            "hand",
            hand_pool(cf.ThreadPoolExecutor),
            items,
        ),
        (
            "hand-chunked ProcessPoolExecutor (10,000)",
            "hand",
            hand_pool(cf.ProcessPoolExecutor),
            items,
        ),
    ]
    rows = []
    for label, group, run, count in cases:
        seconds = best_of(run, repeats)
        rows.append(
            {
                "case": label,
                "group": group,
                "items": count,
                "seconds": seconds,
                "items_per_s": count / seconds,
            }
        )
        print(f"  {label:48s} {count / seconds / 1e6:8.3f} M items/s", flush=True)
    return rows


# -- variable-cost items -------------------------------------------------------

CALL_COST = 0.002
UNIT_COST = 0.0001


def costly_batch(costs: list[int]) -> list[int]:
    time.sleep(CALL_COST + UNIT_COST * sum(costs))
    return costs


def variable_section(items: int, repeats: int, workers: int) -> dict[str, Any]:
    from batchpilot.bulk import map_batches

    rng = random.Random(5)
    costs = [rng.randint(1, 10) for _ in range(items)]

    def timed(batch_size: Any) -> float:
        samples = []
        for _ in range(repeats):
            began = time.perf_counter()
            out = list(map_batches(costly_batch, costs, batch_size=batch_size, workers=workers))
            samples.append(time.perf_counter() - began)
            assert out == costs
        return statistics.median(samples)

    fixed = {size: timed(size) for size in (8, 32, 128, 512, 2048)}
    for size, seconds in fixed.items():
        print(f"  fixed batch_size={size:5d}: {seconds:6.3f} s", flush=True)
    auto = timed("auto")
    best_size = min(fixed, key=fixed.__getitem__)
    print(f"  auto: {auto:6.3f} s; best fixed ({best_size}): {fixed[best_size]:6.3f} s", flush=True)
    return {
        "items": items,
        "workers": workers,
        "fixed": fixed,
        "auto": auto,
        "best_fixed_size": best_size,
        "ratio": auto / fixed[best_size],
    }


# -- memory --------------------------------------------------------------------

MEMORY_PROBE = """
import sys
sys.path.insert(0, {src!r})
from batchpilot.bulk import map_batches

def status_kb(field):
    # VmHWM is this process's own peak RSS; ru_maxrss would include the parent's
    # RSS at fork time (Linux keeps it across exec).
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])

def double_batch(xs):
    return [x * 2 for x in xs]

base = status_kb("VmRSS")
count = 0
for value in map_batches(double_batch, (i for i in range({items}))):
    count += 1
print(count, (status_kb("VmHWM") - base) / 1024)
"""


def memory_section(items: int) -> dict[str, Any]:
    probe = MEMORY_PROBE.format(src=str(ROOT / "src"), items=items)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    count, growth = out.stdout.split()
    print(f"  streamed {int(count):,} items, peak RSS growth {float(growth):.1f} MB", flush=True)
    return {"items": int(count), "rss_growth_mb": float(growth)}


# -- resume after SIGKILL --------------------------------------------------------

RESUME_CHILD = """
import json, sys, time
sys.path.insert(0, {src!r})
from batchpilot.bulk import map_batches
def slow_double(xs):
    time.sleep(0.001 + 1e-5 * len(xs))
    return [x * 2 for x in xs]
out = list(map_batches(slow_double, range({items}), batch_size="auto", job={job!r}))
print(json.dumps(out))
"""


def committed_items(job: str) -> int:
    import sqlite3

    with sqlite3.connect(job) as db:
        return int(db.execute("SELECT COALESCE(SUM(stop - start), 0) FROM chunks").fetchone()[0])


def resume_section(items: int, trials: int) -> dict[str, Any]:
    from collections import Counter

    rng = random.Random(7)
    lost = duplicated = 0
    expected = Counter(x * 2 for x in range(items))
    for trial in range(trials):
        with tempfile.TemporaryDirectory() as tmp:
            job = os.path.join(tmp, "job.sqlite")
            child = RESUME_CHILD.format(src=str(ROOT / "src"), items=items, job=job)
            proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.DEVNULL)
            kill_after = rng.uniform(0.4, 1.2)
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            before = committed_items(job)
            rerun = subprocess.run(
                [sys.executable, "-c", child], capture_output=True, text=True, check=True
            )
            got = Counter(json.loads(rerun.stdout))
            lost += sum((expected - got).values())
            duplicated += sum((got - expected).values())
            print(
                f"  trial {trial}: SIGKILL after {kill_after:.2f} s with {before:,} items "
                f"committed; rerun returned {sum(got.values()):,} results",
                flush=True,
            )
    return {"items": items, "trials": trials, "lost": lost, "duplicated": duplicated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--peer-items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--sections", default="trivial,variable,memory,resume")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.items, args.peer_items, args.repeats = 200_000, 20_000, 1
    ensure_bench_venv()
    sections = args.sections.split(",")
    results: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if "trivial" in sections:
        print(f"trivial x*2, {args.items:,} items, best of {args.repeats}:", flush=True)
        rows = trivial_section(args.items, args.peer_items, args.repeats)
        ours = next(r["items_per_s"] for r in rows if r["group"] == "batchpilot")
        best_auto = max(r["items_per_s"] for r in rows if r["group"] == "auto")
        best_hand = max(r["items_per_s"] for r in rows if r["group"] == "hand")
        results["trivial"] = {
            "rows": rows,
            "vs_best_auto": ours / best_auto,
            "vs_best_hand": ours / best_hand,
        }
        print(
            f"  => {ours / best_auto:.1f}x best auto peer (target >= 5x), "
            f"{ours / best_hand:.2f}x best hand-chunked (target >= 0.7x)",
            flush=True,
        )
    if "variable" in sections:
        print("variable cost (2 ms/call + 0.1-1.0 ms/item), 4 threads, median of 3:", flush=True)
        results["variable"] = variable_section(2_000 if args.quick else 10_000, 3, 4)
        print(f"  => auto / best fixed = {results['variable']['ratio']:.3f} (target <= 1.10)")
    if "memory" in sections:
        print("memory, streaming a generator of small items:", flush=True)
        results["memory"] = memory_section(1_000_000 if args.quick else 10_000_000)
    if "resume" in sections:
        print("resume after SIGKILL at random points:", flush=True)
        results["resume"] = resume_section(200_000, 2 if args.quick else 3)
        print(
            f"  => lost {results['resume']['lost']}, duplicated {results['resume']['duplicated']}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
