"""Writing a run's results as they come: segments, checkpoints, failures, early stops.

`consume` takes the ordered result stream of `map_batches` and the input
positions of its records, writes successful results into the run's `Segment`
and failures into an `ErrorLog`, and commits a `Checkpoint` at every durable
point (about once per chunk), so a killed run resumes where the last commit
left it. It stops early when the `StopRules` say so. Nothing is committed while
no record has succeeded yet, so a run stopped by a systematic failure at its
start leaves no checkpoint behind.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..bulk import ItemFailure
from .early_stop import StopRules
from .job import Checkpoint
from .outputs import Segment
from .records_io import Position, RecordsFormatError, to_row

__all__ = ["Destination", "ErrorLog", "Outcome", "consume"]


class ErrorLog:
    """The failed records, one JSON line each: a parts file, or standard error.

    Args:
        path: The file (appended to after being cut back to ``size``), or None
            for standard error.
        size: The committed size of an existing file.
    """

    def __init__(self, path: Path | None, size: int = 0) -> None:
        self.path = path
        self._file: Any = None
        if path is not None:
            self._file = path.open("ab")
            self._file.truncate(size)
            self._file.seek(size)

    def __repr__(self) -> str:
        return f"ErrorLog({self.path!r})"

    def add(self, line: int, error: BaseException) -> None:
        """List the record of ``line`` as failed with ``error``."""
        text = json.dumps({"line": line, "error": f"{type(error).__name__}: {error}"})
        if self._file is None:
            print(f"batchpilot: failed: {text}", file=sys.stderr)
        else:
            self._file.write(text.encode("utf-8") + b"\n")

    def size(self) -> int:
        """Bytes written, after flushing them."""
        if self._file is None:
            return 0
        self._file.flush()
        return int(self._file.tell())

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._file is not None:
            self._file.close()


@dataclass
class Outcome:
    """What `consume` did: the last checkpoint, and why it stopped early (if it did)."""

    checkpoint: Checkpoint
    stopped: str | None = None


@dataclass(frozen=True)
class Destination:
    """Where a run's results go, and how its progress is committed."""

    segment: Segment  # the rows of this run
    number: int  # the segment's key in checkpoints
    errors: ErrorLog  # the failed records
    commit: Callable[[Checkpoint], None]  # records a checkpoint (the first call creates the job)

    def checkpoint(self, start: Checkpoint, done: int, failed: int, at: Position) -> Checkpoint:
        """``start`` moved on by ``done`` records (``failed`` in all), up to ``at``."""
        return replace(
            start,
            items=start.items + done,
            failed=start.failed + failed,
            position=at,
            segments={**start.segments, self.number: self.segment.size()},
            errors=self.errors.size(),
        )


def consume(
    results: Iterable[Any],
    positions: deque[tuple[int, int]],
    *,
    start: Checkpoint,
    into: Destination,
    rules: StopRules,
    left: Callable[[], bool],
    line_column: str | None,
    next_size: Callable[[], int],
) -> Outcome:
    """Write ``results`` (in input order) and commit as they become durable.

    Args:
        results: the run's result stream, an `ItemFailure` for each failed record.
        positions: ``(line, offset_after)`` of each record handed to the engine, in
            order (see `RecordSource.located`); one is taken per result.
        start: the checkpoint this run starts from; ``into``: where the results go.
        rules: when to stop early; ``left``: whether records are left after the
            one whose result was just taken.
        line_column: put each record's line number into its row under this name.
        next_size: the engine's next chunk size (results between commit checks).

    Returns:
        The last checkpoint reached (committed, unless it stopped early) and the
        reason for an early stop.
    """
    pending: list[Any] = []
    done = 0
    line, offset = start.position
    next_check = max(1, next_size())
    last = start
    segment, errors = into.segment, into.errors
    for value in results:
        line, offset = positions.popleft()
        done += 1
        if isinstance(value, ItemFailure):
            errors.add(line, value.error)
            reason = rules.on_failure(value.error, line, done - 1, left())
            if reason is not None:
                return Outcome(last, reason)
        elif line_column is None:
            pending.append(value)
        else:
            pending.append(_with_line(value, line, line_column))
        if done >= next_check:
            next_check = done + max(1, next_size())
            durable = segment.write(pending)
            pending.clear()
            if durable and done > rules.failed:
                last = into.checkpoint(start, done, rules.failed, Position(line, offset))
                into.commit(last)
    segment.write(pending)
    segment.flush()
    last = into.checkpoint(start, done, rules.failed, Position(line, offset))
    into.commit(last)
    return Outcome(last)


def _with_line(value: Any, line: int, line_column: str) -> dict[str, Any]:
    """The row of ``value`` with its input ``line`` under ``line_column``, first."""
    row = to_row(value)
    if line_column in row:
        raise RecordsFormatError(
            f"--line-column {line_column!r}: the results have a key {line_column!r} "
            "already; choose another name"
        )
    return {line_column: line, **row}
