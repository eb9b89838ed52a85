"""Standard output: JSON Lines written as the results come, nothing staged or finished."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Segment, Target
from .encode import jsonl_text

__all__ = ["StdoutTarget"]


class StdoutTarget(Target):
    """``-``: the rows go straight to standard output."""

    staged = False

    def __str__(self) -> str:
        return "standard output"

    def files(self) -> list[Path]:
        return []

    def exists(self) -> bool:
        return False

    def open_segment(self, parts: Path, number: int, columns: list[str] | None) -> Segment:
        return _StdoutSegment()

    def finish(
        self, parts: Path, committed: dict[int, int], columns: list[str] | None, if_exists: str
    ) -> None:
        """Every row is written already."""


class _StdoutSegment:
    """JSON Lines straight to standard output: nothing to commit or finish."""

    columns: list[str] | None = None

    def write(self, results: Sequence[Any]) -> bool:
        sys.stdout.write(jsonl_text(results))
        sys.stdout.flush()
        return True

    def flush(self) -> None:
        sys.stdout.flush()

    def size(self) -> int:
        return 0

    def close(self) -> None:
        sys.stdout.flush()
