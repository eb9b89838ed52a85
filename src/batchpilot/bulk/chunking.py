"""Cutting a lazy input into chunks whose sizes a controller chooses.

`make_controller` turns the ``batch_size=`` argument of `map_batches` into a core
`SizeController`. `read_chunks` reads the input with `itertools.islice`, one
chunk at a time and only when the engine asks, so memory stays bounded by the
chunks in flight. When resuming a job it re-reads the chunks already stored
(as `Chunk` with ``stored=True``) at their recorded boundaries and plans new
chunks only in the gaps between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from .._core.sizing import Fixed, SizeController, TargetLatency

__all__ = [
    "AUTO_LATENCY_TARGET",
    "AUTO_MAX_SIZE",
    "Chunk",
    "make_auto_controller",
    "make_controller",
    "read_chunks",
]

AUTO_LATENCY_TARGET = 0.1
"""Seconds one chunk should take under ``batch_size="auto"``."""

AUTO_MAX_SIZE = 65_536
"""Largest automatic chunk: bounds memory for trivially cheap items."""

AUTO_INITIAL_SIZE = 1
"""First automatic chunk: safe for slow functions; doubling reaches the cap fast."""


def make_auto_controller() -> TargetLatency:
    """The ``"auto"`` strategy: `TargetLatency` fed by measured chunk durations.

    Chunks start at one item and at most double per step (the core's growth
    cap) until a chunk takes about `AUTO_LATENCY_TARGET` seconds, never above
    `AUTO_MAX_SIZE` items.
    """
    return TargetLatency(
        AUTO_LATENCY_TARGET, min_size=1, max_size=AUTO_MAX_SIZE, initial=AUTO_INITIAL_SIZE
    )


def make_controller(batch_size: Any) -> SizeController:
    """``"auto"``, a fixed positive int, or any `SizeController`; else a clear error."""
    if isinstance(batch_size, str):
        if batch_size == "auto":
            return make_auto_controller()
        raise ValueError(
            f'batch_size must be "auto", an int or a SizeController, got {batch_size!r}'
        )
    if isinstance(batch_size, bool):
        raise TypeError(f"batch_size must be an int, not bool ({batch_size!r})")
    if isinstance(batch_size, int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return Fixed(batch_size)
    if isinstance(batch_size, SizeController):
        return batch_size
    raise TypeError(
        f'batch_size must be "auto", an int or a SizeController, got {type(batch_size).__name__}'
    )


@dataclass
class Chunk:
    """A slice ``[start, start + len(items))`` of the input, read and ready to run."""

    start: int
    items: list[Any]
    stored: bool = False

    @property
    def stop(self) -> int:
        return self.start + len(self.items)


def read_chunks(
    iterator: Iterator[Any],
    controller: SizeController,
    stored: Sequence[tuple[int, int]] = (),
    *,
    cap: Callable[[int], int | None] | None = None,
) -> Iterator[Chunk]:
    """Yield consecutive chunks of ``iterator``; ``stored`` ranges come back as stored chunks.

    New chunks take ``controller.next_size()`` items, asked afresh for every
    chunk, but never more than ``cap(position)`` (when it gives a number) and
    never run into a stored range. A stored range the input ends before comes
    back short, which the caller treats as a different input.

    If the input raises, the items read before the error come back as a last
    (short) chunk, and the error is raised on the next call.
    """
    position = 0
    pending = iter(stored)
    upcoming = next(pending, None)
    while True:
        if upcoming is not None and upcoming[0] == position:
            items = list(islice(iterator, upcoming[1] - upcoming[0]))
            yield Chunk(position, items, stored=True)
            if len(items) < upcoming[1] - upcoming[0]:
                return
            position, upcoming = upcoming[1], next(pending, None)
            continue
        size = max(1, controller.next_size())
        limit = None if cap is None else cap(position)
        if limit is not None:
            size = max(1, min(size, limit))
        if upcoming is not None:
            size = min(size, upcoming[0] - position)
        items = []
        try:
            items.extend(islice(iterator, size))  # keeps what was read if the input raises
        except Exception:
            if items:
                yield Chunk(position, items)
            raise
        if not items:
            return
        yield Chunk(position, items)
        position += len(items)
