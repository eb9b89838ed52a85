"""Benchmark: the price of exactly once for a bulk job writing into a database.

Run from the repository root::

    .venv/bin/python benchmarks/db_exactly_once.py                 # SQLite file, 3 repeats
    .venv/bin/python benchmarks/db_exactly_once.py --url postgresql+psycopg://...

Each contender runs ``map_batches`` over ``--items`` numbers in chunks of
``--batch-size`` with a job file, squaring each number and writing one row per
item into a fresh table:

* ``batch_insert``: a batch function calling ``Database.batch_insert``; at least
  once (a chunk replayed after ``kill -9`` fails on the primary key, or with
  no key is stored twice);
* ``bulk_writer``: ``Database.bulk_writer``, an ``INSERT ... ON CONFLICT DO
  NOTHING`` keyed on the input index; exactly once after ``kill -9``.

Prints rows per second (the median over repeats, contenders interleaved) and
the ratio to ``batch_insert``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from batchpilot.bulk import map_batches
from batchpilot.db import Database

BatchFunction = Callable[[list[Any]], list[Any]]


def square(numbers: list[int]) -> list[int]:
    return [n * n for n in numbers]


def plain_insert(db: Database, table: str) -> BatchFunction:
    def write(pairs: list[tuple[int, int]]) -> list[int]:
        db.batch_insert(table, [{"item_id": i, "result": n * n} for i, n in pairs])
        return [i for i, _ in pairs]

    return write


def idempotent_insert(db: Database, table: str) -> BatchFunction:
    return db.bulk_writer(table, square)


CONTENDERS: dict[str, Callable[[Database, str], BatchFunction]] = {
    "batch_insert": plain_insert,
    "bulk_writer": idempotent_insert,
}


def rows_per_second(url: str, make: Callable[[Database, str], BatchFunction], args: Any) -> float:
    table = f"bench_{uuid.uuid4().hex[:8]}"
    with Database(url) as db, tempfile.TemporaryDirectory() as scratch:
        db.create_table(table, {"item_id": int, "result": int}, primary_key="item_id")
        write = make(db, table)
        started = time.perf_counter()
        ids = list(
            map_batches(
                write,
                enumerate(range(args.items)),
                batch_size=args.batch_size,
                job=str(Path(scratch) / "bench.job"),
            )
        )
        elapsed = time.perf_counter() - started
        assert ids == list(range(args.items)), "every item once, in order"
        with db.engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))
    return args.items / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'bench.db'}"
        rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for _ in range(args.repeats):
            for name, make in CONTENDERS.items():
                rates[name].append(rows_per_second(url, make, args))
    base = statistics.median(rates["batch_insert"])
    print(f"{args.items:,} items, chunks of {args.batch_size}, {args.repeats} repeats")
    print(f"{'contender':14s} {'rows/s':>10s} {'vs batch_insert':>16s}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:14s} {rate:10,.0f} {rate / base:15.2f}x")


if __name__ == "__main__":
    main()
