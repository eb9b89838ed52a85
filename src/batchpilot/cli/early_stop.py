"""Stopping a run early when its records fail systematically.

Two parts. `guard` wraps the batch function so that, in each worker process,
once the first ``threshold`` single records have failed with the same exception
type and no call has succeeded yet, further calls raise `SystematicFailure`
at once instead of calling the function: the engine's bisection of a failing
chunk down to single records then costs a bounded number of calls, whatever
the size of the chunk or of the file. `StopRules` watches the results as the
CLI writes them and says when to stop: at a `SystematicFailure`, when the
first ``threshold`` records all failed the same way (and records are left),
or when more than ``--max-failures`` records failed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.callables import is_async_callable

__all__ = ["StopRules", "SystematicFailure", "guard"]


class SystematicFailure(Exception):
    """Raised instead of calling the batch function once it failed systematically."""


@dataclass
class _Breaker:
    """Per process: single-record failures seen before the first success."""

    threshold: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    succeeded: bool = False
    failures: int = 0
    first: str = ""
    same_kind: bool = True

    def check(self) -> None:
        """Raise `SystematicFailure` if the function failed systematically here."""
        if not self.succeeded and self.same_kind and self.failures >= self.threshold:
            raise SystematicFailure(
                f"the first {self.threshold} records all failed with {self.first}"
            )

    def record_failure(self, size: int, error: BaseException) -> None:
        if size != 1 or self.succeeded:
            return
        with self.lock:
            kind = type(error).__name__
            if not self.first:
                self.first = _describe(error)
            elif not self.first.startswith(kind + ":"):
                self.same_kind = False
            self.failures += 1

    def record_success(self) -> None:
        self.succeeded = True


#: The breakers of this process, by the token of the guard that made them.
_BREAKERS: dict[str, _Breaker] = {}
_BREAKERS_LOCK = threading.Lock()


def _breaker(token: str, threshold: int) -> _Breaker:
    with _BREAKERS_LOCK:
        return _BREAKERS.setdefault(token, _Breaker(threshold))


@dataclass(frozen=True)
class _Guarded:
    """A batch function behind a breaker; picklable, and one breaker per process."""

    function: Callable[[Sequence[Any]], Any]
    threshold: int
    token: str

    def __call__(self, records: Sequence[Any]) -> Any:
        breaker = _breaker(self.token, self.threshold)
        breaker.check()
        try:
            result = self.function(records)
        except Exception as error:
            breaker.record_failure(len(records), error)
            raise
        breaker.record_success()
        return result


def guard(function: Callable[..., Any], threshold: int) -> Callable[..., Any]:
    """``function`` behind a breaker tripping after ``threshold`` like failures (0: as is)."""
    if threshold <= 0:
        return function
    token = uuid.uuid4().hex
    if not is_async_callable(function):
        return _Guarded(function, threshold, token)

    async def guarded(records: Sequence[Any]) -> Any:  # asyncio runs in this process
        breaker = _breaker(token, threshold)
        breaker.check()
        try:
            result = await function(records)
        except Exception as error:
            breaker.record_failure(len(records), error)
            raise
        breaker.record_success()
        return result

    return guarded


@dataclass
class StopRules:
    """Decide, failure by failure, whether the run should stop.

    Args:
        systematic: stop when the first this many records all failed with one
            exception type and records are left (0: never).
        max_failures: stop when more failed than this (None: never).
    """

    systematic: int
    max_failures: int | None
    failed: int = 0
    _kinds: set[str] = field(default_factory=set)
    _first: str | None = None

    def on_failure(self, error: BaseException, line: int, before: int, left: bool) -> str | None:
        """Count one failed record; return why to stop, or None to go on.

        Args:
            error: the record's exception.
            line: its line number.
            before: how many records came before it in this run.
            left: whether records are left after it.
        """
        succeeded_before = before > self.failed
        self.failed += 1
        if self._first is None:
            described = "" if isinstance(error, SystematicFailure) else f": {_describe(error)}"
            self._first = f"line {line}{described}"
        first = f" (first: {self._first})"
        if isinstance(error, SystematicFailure):
            return f"{error}{first}"
        if not succeeded_before:
            self._kinds.add(type(error).__name__)
            if left and len(self._kinds) == 1 and self.failed == self.systematic:
                return (
                    f"the first {self.failed} records all failed with {type(error).__name__}{first}"
                )
        if self.max_failures is not None and self.failed > self.max_failures:
            return f"more than --max-failures {self.max_failures} records failed{first}"
        return None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
