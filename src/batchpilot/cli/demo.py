"""``batchpilot demo``: batching a real model, online and in bulk, against no batching.

Runs on embedded data only (scikit-learn's bundled 8x8 digits; nothing is
downloaded) and takes a few seconds on 2 cores at ``scale=1`` (about 3 s idle):

1. Train a `LogisticRegression` on the digits.
2. **Online**: many concurrent clients ask for one prediction each, first calling
   ``model.predict`` directly (unbatched), then through a `batchpilot.batch`
   function, from threads and from asyncio tasks; then a single client, to show
   that the batcher does not wait ``max_wait`` when nobody else is coming.
3. **Bulk**: score a generated stream of noisy digit images with
   `batchpilot.map_batches` into a SQLite table (`batchpilot.db.Database`),
   against an unbatched per-item ``predict`` loop timed on a sample.

It prints a table of throughput, latency and batch sizes. Needs the ``demo`` and
``db`` extras (scikit-learn, SQLAlchemy).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .common import EXIT_OK, positive_float

__all__ = ["DemoReport", "DemoRow", "DemoSizes", "add_command", "run_demo"]

#: Online batcher settings used by the demo (the same as the benchmarks').
MAX_BATCH_SIZE = 64
MAX_WAIT = 0.005
#: Rows per SQLite insert transaction in the bulk part.
_INSERT_ROWS = 10_000


@dataclass(frozen=True)
class DemoSizes:
    """How much work each part of the demo does (``scale=1``)."""

    threads: int = 32
    requests_per_thread: int = 100
    tasks: int = 256
    requests_per_task: int = 20
    bulk_items: int = 100_000
    baseline_items: int = 2_000

    def scaled(self, scale: float) -> DemoSizes:
        """The same mix with every request and item count multiplied by ``scale``."""

        def times(n: int) -> int:
            return max(1, round(n * scale))

        return DemoSizes(
            threads=self.threads,
            requests_per_thread=times(self.requests_per_thread),
            tasks=self.tasks,
            requests_per_task=times(self.requests_per_task),
            bulk_items=times(self.bulk_items),
            baseline_items=min(times(self.baseline_items), times(self.bulk_items)),
        )


@dataclass(frozen=True)
class DemoRow:
    """One measured mode: how many items in how long, latency and batch sizes."""

    part: str
    mode: str
    items: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch: float | None = None

    @property
    def rate(self) -> float:
        """Items per second."""
        return self.items / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DemoReport:
    """Everything the demo measured, as printed."""

    accuracy: float
    database: Path
    rows_in_database: int = 0
    rows: list[DemoRow] = field(default_factory=list)

    def row(self, part: str, mode_prefix: str) -> DemoRow:
        """The first row of ``part`` whose mode starts with ``mode_prefix``."""
        return next(r for r in self.rows if r.part == part and r.mode.startswith(mode_prefix))


def run_demo(
    scale: float = 1.0,
    database: str | Path | None = None,
    out: TextIO | None = None,
    sizes: DemoSizes | None = None,
) -> DemoReport:
    """Run the demo and print its table to ``out`` (stdout by default).

    Args:
        scale: multiplies the request and item counts (1.0: about 3 s on 2 idle cores).
        database: SQLite file for the bulk scores; a fresh temp file when omitted.
        out: where the table goes.
        sizes: the work mix before scaling (default `DemoSizes()`).

    Returns:
        The measurements, also printed.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    began = time.perf_counter()
    stream = sys.stdout if out is None else out
    work = (sizes or DemoSizes()).scaled(scale)
    say = _printer(stream)
    say("batchpilot demo: a scikit-learn digits classifier, served and scored with batching")
    say("training LogisticRegression on the bundled digits data ...")
    model, test_images, accuracy = _train()
    say(f"  held-out accuracy {accuracy:.1%} on {len(test_images)} images\n")
    target = Path(database) if database is not None else _temp_database()
    report = DemoReport(accuracy=accuracy, database=target)

    say(
        f"online: {work.threads} threads x {work.requests_per_thread} requests, "
        f"{work.tasks} asyncio tasks x {work.requests_per_task} requests, one image each ..."
    )
    report.rows += _online(model, test_images, work)
    say(f"bulk: scoring {work.bulk_items:,} generated images into {target} ...\n")
    bulk_rows, report.rows_in_database = _bulk(model, test_images, work, target)
    report.rows += bulk_rows
    _print_table(report, say)
    say(f"demo finished in {time.perf_counter() - began:.1f} s")
    return report


def _printer(stream: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    return say


def _temp_database() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="batchpilot-demo-"))
    return folder / "scores.sqlite"


@functools.lru_cache(maxsize=1)
def _train() -> tuple[Any, np.ndarray, float]:
    """The trained model, the held-out images and the model's accuracy on them (cached)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("the demo needs scikit-learn: pip install scikit-learn") from None
    images, labels = load_digits(return_X_y=True)
    images = images / 16.0
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.25, random_state=0
    )
    model = LogisticRegression(max_iter=200).fit(train_x, train_y)
    return model, test_x, float(model.score(test_x, test_y))


# ---------------------------------------------------------------- online serving


def _online(model: Any, images: np.ndarray, work: DemoSizes) -> list[DemoRow]:
    from ..batching import batch

    def predict_one(image: np.ndarray) -> int:
        return int(model.predict(image[None, :])[0])

    @batch(max_batch_size=MAX_BATCH_SIZE, max_wait=MAX_WAIT)
    def predict(batch_of_images: np.ndarray) -> np.ndarray:
        return model.predict(batch_of_images)

    alone = replace(work, threads=1)
    with predict:
        return [
            _threaded("unbatched predict, threads", predict_one, images, work, None),
            _threaded("@batch, threads", predict, images, work, predict),
            _async_clients("@batch, asyncio tasks", predict, images, work),
            _threaded("@batch, 1 thread (never waits 5 ms)", predict, images, alone, predict),
        ]


def _threaded(
    mode: str, call: Callable[[np.ndarray], Any], images: np.ndarray, work: DemoSizes, batched: Any
) -> DemoRow:
    before = _batch_counts(batched)
    latencies: list[list[float]] = [[] for _ in range(work.threads)]
    start_line = threading.Barrier(work.threads + 1)

    def client(index: int) -> None:
        mine = latencies[index]
        start_line.wait()
        for request in range(work.requests_per_thread):
            image = images[(index * 7919 + request) % len(images)]
            began = time.perf_counter()
            call(image)
            mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(work.threads)]
    for thread in threads:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    flat = [x for per_thread in latencies for x in per_thread]
    return _row("online", mode, flat, seconds, _mean_batch(batched, before))


def _async_clients(mode: str, predict: Any, images: np.ndarray, work: DemoSizes) -> DemoRow:
    before = _batch_counts(predict)

    async def client(index: int, latencies: list[float]) -> None:
        for request in range(work.requests_per_task):
            image = images[(index * 7919 + request) % len(images)]
            began = time.perf_counter()
            await predict(image)
            latencies.append(time.perf_counter() - began)

    async def all_clients() -> tuple[list[float], float]:
        latencies: list[float] = []
        began = time.perf_counter()
        await asyncio.gather(*(client(i, latencies) for i in range(work.tasks)))
        return latencies, time.perf_counter() - began

    latencies, seconds = asyncio.run(all_clients())
    return _row("online", mode, latencies, seconds, _mean_batch(predict, before))


def _row(part: str, mode: str, latencies: list[float], seconds: float, batch: float) -> DemoRow:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = cuts[98] * 1000 if cuts else p50
    return DemoRow(part, mode, len(latencies), seconds, p50, p99, batch)


def _batch_counts(batched: Any) -> tuple[int, int]:
    if batched is None:
        return 0, 0
    stats = batched.statistics()
    return stats.batches, stats.items


def _mean_batch(batched: Any, before: tuple[int, int]) -> float:
    if batched is None:
        return 1.0
    batches, items = _batch_counts(batched)
    done = batches - before[0]
    return (items - before[1]) / done if done else 0.0


# ---------------------------------------------------------------- bulk scoring


def _bulk(
    model: Any, images: np.ndarray, work: DemoSizes, target: Path
) -> tuple[list[DemoRow], int]:
    from ..bulk import ItemFailure, map_batches
    from ..db import Database

    def score(batch_of_images: Sequence[np.ndarray]) -> list[tuple[int, float]]:
        probabilities = model.predict_proba(np.stack(batch_of_images))
        labels = probabilities.argmax(axis=1).tolist()
        return list(zip(labels, probabilities.max(axis=1).tolist(), strict=True))

    def score_one(image: np.ndarray) -> tuple[int, float]:
        probabilities = model.predict_proba(image[None, :])[0]
        return int(probabilities.argmax()), float(probabilities.max())

    began = time.perf_counter()
    for image in _generated(images, work.baseline_items):
        score_one(image)
    baseline = DemoRow(
        "bulk",
        f"per-item predict, first {work.baseline_items:,} items",
        work.baseline_items,
        time.perf_counter() - began,
    )

    target.unlink(missing_ok=True)
    with Database(f"sqlite:///{target}") as db:
        db.create_table("predictions", {"label": int, "confidence": float})
        began = time.perf_counter()
        inserting = 0.0
        run = map_batches(score, _generated(images, work.bulk_items))
        rows: list[dict[str, Any]] = []
        for value in run:
            if isinstance(value, ItemFailure):  # pragma: no cover - score never fails here
                raise value.error
            rows.append({"label": value[0], "confidence": value[1]})
            if len(rows) == _INSERT_ROWS or len(rows) == work.bulk_items:
                inserting += _insert(db, rows)
                rows = []
        if rows:
            inserting += _insert(db, rows)
        seconds = time.perf_counter() - began
        stored = _count_rows(db)
    chunks = run.progress().chunks
    mean_chunk = work.bulk_items / chunks if chunks else 0.0
    scoring = DemoRow(
        "bulk", 'map_batches(batch_size="auto")', work.bulk_items, seconds - inserting,
        mean_batch=mean_chunk,
    )  # fmt: skip
    end_to_end = DemoRow(
        "bulk", "  + Database.batch_insert into SQLite", work.bulk_items, seconds,
        mean_batch=float(_INSERT_ROWS),
    )  # fmt: skip
    return [baseline, scoring, end_to_end], stored


def _insert(db: Any, rows: list[dict[str, Any]]) -> float:
    began = time.perf_counter()
    db.batch_insert("predictions", rows)
    return time.perf_counter() - began


def _generated(images: np.ndarray, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """A lazy stream of noisy copies of the test images (nothing held in memory)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < count:
        n = min(4096, count - done)
        picks = images[rng.integers(0, len(images), n)]
        noisy = np.clip(picks + rng.normal(0.0, 0.1, picks.shape), 0.0, 1.0)
        yield from noisy
        done += n


def _count_rows(db: Any) -> int:
    import sqlalchemy as sa

    with db.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one())


# ---------------------------------------------------------------- the table


def _print_table(report: DemoReport, say: Callable[[str], None]) -> None:
    header = f"  {'mode':<42}{'items':>9}{'items/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'batch':>8}"
    for part, title in (("online", "online serving"), ("bulk", "bulk scoring")):
        say(f"{title}:")
        say(header)
        for row in (r for r in report.rows if r.part == part):
            say(
                f"  {row.mode:<42}{row.items:>9,}{row.rate:>11,.0f}"
                f"{_cell(row.p50_ms, '.2f'):>9}{_cell(row.p99_ms, '.2f'):>9}"
                f"{_cell(row.mean_batch, '.1f'):>8}"
            )
        say("")
    unbatched = report.row("online", "unbatched").rate
    threads, tasks = (
        report.row("online", "@batch, threads"),
        report.row("online", "@batch, asyncio"),
    )
    bulk_base, bulk = report.row("bulk", "per-item"), report.row("bulk", "map_batches")
    stored = report.row("bulk", "  + Database")
    say(
        f"speed-up over unbatched: online {threads.rate / unbatched:.1f}x (threads), "
        f"{tasks.rate / unbatched:.1f}x (asyncio); bulk {bulk.rate / bulk_base.rate:.1f}x "
        f"(scoring), {stored.rate / bulk_base.rate:.1f}x (with inserts)"
    )
    say(
        f"{report.rows_in_database:,} predictions stored in {report.database} "
        f"(table predictions; 'batch' is the mean batch/chunk size)"
    )


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def add_command(commands: Any) -> None:
    """Add the ``demo`` subparser to ``commands`` (an argparse subparsers action)."""
    demo = commands.add_parser(
        "demo",
        help="train a small model and show online and bulk batching against no batching",
        description="Train a scikit-learn classifier on the bundled digits data (nothing "
        "is downloaded), serve it through the online batcher to concurrent clients, and "
        "score a generated data set into SQLite with the bulk engine; each against an "
        "unbatched baseline.",
    )
    demo.add_argument(
        "--scale",
        type=positive_float,
        metavar="X",
        default=1.0,
        help="multiply the number of requests and records (1.0, a few seconds on 2 cores)",
    )
    demo.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="SQLite file for the scores, replaced (default: a new temp file)",
    )
    demo.set_defaults(handler=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    run_demo(scale=args.scale, database=args.output)
    return EXIT_OK
