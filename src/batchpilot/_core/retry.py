"""Retry policy: how often and after which delays a failed batch is tried again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: retry ``i`` (1-based) waits ``retry_delay * backoff**(i-1)``.

    The waits are capped at ``max_delay`` when given. The policy only computes
    delays; the engine that owns the thread or task does the waiting, with its own
    (injectable) sleep, so the same policy serves sync and async code.

    Attributes:
        max_retries: retries after the first failed attempt (0: no retry).
        retry_delay: seconds before the first retry.
        backoff: factor by which each further wait grows (>= 1).
        max_delay: cap on any single wait in seconds; None: no cap.
    """

    max_retries: int = 3
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.retry_delay < 0:
            raise ValueError(f"retry_delay must be >= 0, got {self.retry_delay}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff}")
        if self.max_delay is not None and self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        wait = self.retry_delay * self.backoff ** (retry - 1)
        return wait if self.max_delay is None else min(wait, self.max_delay)

    def delays(self) -> Iterator[float]:
        """The waits before each retry, in order."""
        return (self.delay(i) for i in range(1, self.max_retries + 1))


NO_RETRY = RetryPolicy(max_retries=0, retry_delay=0.0)
