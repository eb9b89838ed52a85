"""The input of a job with a job file: checked against what the file stored, chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain, islice
from typing import Any

from .._core.sizing import SizeController
from .checkpoint import HEAD_ITEMS, JobMismatchError, JobStore, digest
from .chunking import Chunk, read_chunks

__all__ = ["read_job_chunks"]


def read_job_chunks(
    store: JobStore,
    iterator: Iterator[Any],
    controller: SizeController,
    cap: Callable[[int], int | None] | None,
) -> Iterator[Chunk]:
    """Chunks of the input, the ones ``store`` holds at their stored boundaries.

    The input's head must match the job's fingerprint, each stored chunk's items
    its digest, and a finished job's input must not grow (`JobMismatchError`).
    """
    head: list[Any] = []
    source: Iterator[Any] = iterator
    try:
        head.extend(islice(iterator, HEAD_ITEMS))
    except Exception as error:  # no fingerprint from a partial head; run it, then raise
        source = _raising(error)
    else:
        store.check_head(head)
    stored = store.done_ranges()
    stored_digests = {start: chunk_digest for start, _, chunk_digest in stored}
    chunks = read_chunks(
        chain(head, source),
        controller,
        [(start, stop) for start, stop, _ in stored],
        cap=cap,
    )
    end = 0
    for chunk in chunks:
        if chunk.stored and digest(chunk.items) != stored_digests[chunk.start]:
            raise JobMismatchError(
                f"{store.path}: input items {chunk.start}..{chunk.stop} differ "
                "from the ones this job stored; use another job file"
            )
        end = chunk.stop
        yield chunk
    finished_total = store.total
    if finished_total is not None and end > finished_total:
        raise JobMismatchError(
            f"{store.path}: the input has more than the {finished_total} items "
            "this finished job processed; use another job file"
        )


def _raising(error: Exception) -> Iterator[Any]:
    """An iterator that raises ``error`` when first advanced."""
    raise error
    yield  # makes this a generator
