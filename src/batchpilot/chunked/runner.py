"""Running one chunk: the bulk engine's batch function for `BatchProcessor`.

Each chunk is one batch of the engine (``batch_size=1`` over planned chunks); the
runner calls the target function once per target, so a failing target fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core.isolation import Outcome
from .config import ChunkConfig

__all__ = ["ChunkOutcome", "ChunkRunner", "PlannedChunk"]

_log = logging.getLogger("batchpilot.chunked")


@dataclass(frozen=True)
class PlannedChunk:
    """Chunk number ``index``: ``targets`` starting at input index ``start``."""

    index: int
    start: int
    targets: list[Any]


@dataclass(frozen=True)
class ChunkOutcome:
    """A finished chunk: successful results in order, and ``(offset, error)`` failures."""

    chunk: PlannedChunk
    results: list[Any]
    errors: list[tuple[int, BaseException]]
    duration: float
    slow_targets: int = 0


class ChunkRunner:
    """The engine's batch function: runs one chunk's targets, one call per target.

    Each target gets its own result or error, so a failing target fails alone without
    re-running its neighbours. Async targets are sent to the caller's ``loop``. A
    runner of a sync function is picklable (when the function and ``now`` are), so
    process, Dask and Ray executors can ship it to their workers.
    """

    def __init__(
        self,
        func: Callable[[Any], Any],
        config: ChunkConfig,
        now: Callable[[], float],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._func = func
        self._fail_fast = not config.enable_error_recovery
        self._time_limit = config.max_processing_time
        self._now = now
        self._loop = loop

    def __call__(self, batch: list[PlannedChunk]) -> list[ChunkOutcome]:
        return [self._run(chunk) for chunk in batch]

    def _run(self, chunk: PlannedChunk) -> ChunkOutcome:
        began = self._now()
        if self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._run_async(chunk.targets), self._loop)
            results, errors = future.result()
            slow = 0
        else:
            results, errors, slow = self._run_sync(chunk.targets)
        return ChunkOutcome(chunk, results, errors, self._now() - began, slow)

    def _run_sync(
        self, targets: list[Any]
    ) -> tuple[list[Any], list[tuple[int, BaseException]], int]:
        func, now, limit = self._func, self._now, self._time_limit
        results: list[Any] = []
        errors: list[tuple[int, BaseException]] = []
        slow = 0
        for offset, target in enumerate(targets):
            began = now()
            try:
                results.append(func(target))
            except Exception as error:
                if self._fail_fast:
                    raise
                errors.append((offset, error))
            if now() - began > limit:
                slow += 1
                _log.warning("target %r ran longer than max_processing_time", target)
        return results, errors, slow

    async def _run_async(
        self, targets: list[Any]
    ) -> tuple[list[Any], list[tuple[int, BaseException]]]:
        outcomes = await asyncio.gather(*(self._one_async(target) for target in targets))
        results = [outcome.value for outcome in outcomes if outcome.ok]
        errors = [(offset, o.value) for offset, o in enumerate(outcomes) if not o.ok]
        return results, errors

    async def _one_async(self, target: Any) -> Outcome:
        try:
            return Outcome(True, await asyncio.wait_for(self._func(target), self._time_limit))
        except asyncio.TimeoutError:
            error: Exception = TimeoutError(
                f"target took longer than max_processing_time={self._time_limit}s"
            )
        except Exception as exc:
            error = exc
        if self._fail_fast:
            raise error
        return Outcome(False, error)
