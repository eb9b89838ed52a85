"""A chunk between its launch and its collection, and what is kept of its failures."""

from __future__ import annotations

import concurrent.futures as cf
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .runner import ChunkResult, ItemFailure

__all__ = ["InFlight", "merged", "release_frames"]


@dataclass
class InFlight:
    """One chunk between planning and collection.

    ``future`` is None for a chunk stored in the job file (``items`` are its
    input items, ``base`` its stored values once loaded). When only some of a
    chunk's items run (``offsets``), ``base`` holds the values of the others
    and the future's results are merged into it; ``resumed`` of them came from
    the job file.
    """

    start: int
    future: cf.Future[ChunkResult] | None
    digest: bytes = b""
    settled: ChunkResult | None = None
    base: list[Any] | None = None
    offsets: list[int] | None = None
    resumed: int = 0
    items: list[Any] | None = None


def merged(entry: InFlight, ran: ChunkResult) -> ChunkResult:
    """A whole chunk's result: ``entry.base`` with the items at ``entry.offsets`` replaced."""
    assert entry.base is not None and entry.offsets is not None
    values = list(entry.base)
    for offset, value in zip(entry.offsets, ran.values, strict=True):
        if isinstance(value, ItemFailure):
            value = ItemFailure(entry.start + offset, value.item, value.error)
        values[offset] = value
    errors = Counter(type(v.error).__name__ for v in values if isinstance(v, ItemFailure))
    failed = sum(errors.values())
    return ChunkResult(entry.start, values, ran.duration, failed, dict(errors), ran.batches)


def release_frames(error: BaseException) -> None:
    """Drop the tracebacks of a kept failure's exception and of its causes.

    A traceback's frames hold the chunk, the executor's and the isolation's frames
    alive (each finished frame also keeps its caller's): about 290 KB per failure,
    so `BulkRun.failures` grew without bound on a long job. Failures from process,
    Dask and Ray workers arrive without a traceback anyway; the message and the
    exception's type stay.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
