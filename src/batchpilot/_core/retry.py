"""Retry policy: which failures are tried again, how often and after which delays."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import BatchFailedError

__all__ = [
    "NO_RETRY",
    "RetryPolicy",
    "RetryPredicate",
    "retry_any_exception",
    "retry_unless_batch_failed",
]

RetryPredicate = Callable[[BaseException], bool]
"""Given the exception a failed attempt raised: whether another attempt is worth it."""


def retry_any_exception(error: BaseException) -> bool:
    """Retry every `Exception`; never `KeyboardInterrupt`, `SystemExit` or a cancellation."""
    return isinstance(error, Exception)


def retry_unless_batch_failed(error: BaseException) -> bool:
    """The default `RetryPolicy.retry_on`: every `Exception` but a `BatchFailedError`.

    A `BatchFailedError` (e.g. the function returned the wrong number of results)
    was caused by no single item, and the same batch would raise it again.
    """
    return retry_any_exception(error) and not isinstance(error, BatchFailedError)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: retry ``i`` (1-based) waits ``retry_delay * backoff**(i-1)``.

    The waits are capped at ``max_delay`` when given. ``retry_on`` decides which
    failures get retried at all (tenacity's ``retry_if_exception``): a failure it
    rejects is final at once. The policy only decides and computes delays; the
    engine that owns the thread or task does the waiting, with its own
    (injectable) sleep, so the same policy serves sync and async code.

    Attributes:
        max_retries: retries after the first failed attempt (0: no retry).
        retry_delay: seconds before the first retry.
        backoff: factor by which each further wait grows (>= 1).
        max_delay: cap on any single wait in seconds; None: no cap.
        retry_on: called with a failed attempt's exception; True retries it. Default:
            every `Exception` but `BatchFailedError` (`retry_unless_batch_failed`).
    """

    max_retries: int = 3
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    retry_on: RetryPredicate = field(default=retry_unless_batch_failed, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.retry_delay < 0:
            raise ValueError(f"retry_delay must be >= 0, got {self.retry_delay}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff}")
        if self.max_delay is not None and self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay}")
        if not callable(self.retry_on):
            raise TypeError(f"retry_on must be callable, got {self.retry_on!r}")

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
