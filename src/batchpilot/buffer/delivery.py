"""Delivery of one flush: the callback, retries, bisection, the dead letter handler.

`Deliverer.deliver` calls the flush callback on a `FlushJob`'s entries. A failure
goes to the shared isolation driver (`batchpilot._core.isolation.run_isolated`,
the same one the other engines use): the whole batch is retried while ``retry_on``
accepts the error, then bisected so only the bad entries fail. The buffer's own
stop-bisecting rule is the driver's ``bisect_on``: an error still accepted after
the last retry means the sink is down, not the data bad, so the batch fails whole;
a callback that takes no entries is never bisected either. What happened is
written into a `Delivery`; delivered entries leave the journal at once.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

from .._core.clock import Clock
from .._core.isolation import Outcome, run_isolated
from .._core.replay import replay_first
from .._core.retry import RetryPolicy
from ..errors import QueueFullError
from .journal import EntryJournal
from .state import BufferedEntry

__all__ = [
    "DeadLetterHandler",
    "Deliverer",
    "Delivery",
    "FlushBatch",
    "FlushCallback",
    "FlushJob",
    "takes_entries",
]

_log = logging.getLogger("batchpilot.buffer")

FlushCallback = Callable[[list[BufferedEntry]], object] | Callable[[], object]
"""Receives the flushed entries (or nothing, if it takes no arguments)."""

DeadLetterHandler = Callable[[list[BufferedEntry], BaseException], object]
"""Receives entries given up on and the error: the flush's last one, or a
`QueueFullError` for entries dropped by ``overflow="drop_oldest"``."""


class FlushBatch(list[BufferedEntry]):
    """The entries of one flush call: a list, plus ids that are stable across replays.

    Attributes:
        entry_ids: the entries' uuids, in order (the idempotency keys of a sink).
        batch_id: a digest of ``entry_ids``: the same entries flushed again after
            a crash or a retry carry the same id.
    """

    @property
    def entry_ids(self) -> list[str]:
        return [item.uuid for item in self]

    @property
    def batch_id(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for uuid in self.entry_ids:
            digest.update(uuid.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()


class FlushJob(NamedTuple):
    """One flush the flusher took: its entries, why, when, and where they go."""

    entries: list[BufferedEntry]
    reason: str
    started: float
    callback: FlushCallback | None = None
    takes_entries: bool = True


class Delivery:
    """What happened to one flush's entries, filled in while it runs."""

    def __init__(self, size: int) -> None:
        self.settled = [False] * size  # delivered, or handed to the dead letter handler
        self.delivered = 0  # entries whose callback call returned
        self.failures: list[tuple[int, BaseException]] = []  # (index, error) given up on
        self.whole_calls = 0  # callback calls on the whole batch (the first and its retries)
        self.attempt_time = 0.0  # seconds the last callback call took
        self.last_error: BaseException | None = None  # what the last failing call raised

    @property
    def retries(self) -> int:
        """Whole-batch calls after the first."""
        return max(0, self.whole_calls - 1)

    def unsettled(self, entries: list[BufferedEntry]) -> list[BufferedEntry]:
        """The entries neither delivered nor dead-lettered, in order."""
        return [item for item, done in zip(entries, self.settled, strict=True) if not done]


class _GaveUp(BaseException):
    """close() gave up on this flush: stop it, its undelivered entries kept.

    Not an `Exception`, so the isolation driver lets it through like any
    `BaseException` of user code; `Deliverer.deliver` catches it.
    """


class Deliverer:
    """Delivers flush jobs for one manager (stateless between jobs)."""

    def __init__(
        self,
        name: str,
        retry: RetryPolicy,
        clock: Clock,
        journal: EntryJournal | None,
        on_dead_letter: DeadLetterHandler | None,
        given_up: Callable[[], bool],
    ) -> None:
        self._name = name  # for the log
        self._retry = retry  # retries of a whole batch, and which errors are transient
        self._clock = clock  # times each call and sleeps the back-off
        self._journal = journal  # delivered and dead-lettered entries leave it
        self._on_dead_letter = on_dead_letter  # where failed and dropped entries go
        self._given_up = given_up  # true once close() gave up: no further attempt

    def deliver(self, job: FlushJob, delivery: Delivery) -> None:
        """Deliver ``job``, then hand its failed entries to the dead letter handler.

        A `BaseException` of user code propagates, with ``delivery`` up to date.
        """
        try:
            try:
                self._attempt(job, 0, len(job.entries), delivery)
                return  # delivered whole: the common case needs no plan
            except Exception as exc:
                outcomes = self._isolate(job, delivery, exc)
        except _GaveUp:
            return
        delivery.failures.extend(
            (index, outcome.value) for index, outcome in enumerate(outcomes) if not outcome.ok
        )
        self._dead_letter_failures(job.entries, delivery)

    def _isolate(self, job: FlushJob, delivery: Delivery, error: Exception) -> list[Outcome]:
        """Retry, then bisect, the batch whose first call raised ``error`` (shared driver)."""

        def call(start: int, stop: int) -> list[None]:
            return self._attempt(job, start, stop, delivery)

        def bisect_on(last: BaseException) -> bool:
            # once close() gave up, the next call stops the flush with its entries kept
            return self._given_up() or (job.takes_entries and not self._retry.retry_on(last))

        size = len(job.entries)
        return run_isolated(
            replay_first(error, call), size, self._retry, self._clock.sleep, bisect_on
        )

    def give_up_dropped(self, entries: list[BufferedEntry]) -> None:
        """Entries ``overflow="drop_oldest"`` removed: to the dead letter handler, or logged."""
        error = QueueFullError(f"{self._name}: dropped by overflow='drop_oldest'")
        if not self._hand_to_dead_letter(entries, error):
            _log.warning("%s: dropped %d entries (buffer full)", self._name, len(entries))
        self._remove_from_journal(entries)

    def _attempt(self, job: FlushJob, start: int, stop: int, delivery: Delivery) -> list[None]:
        """One callback call on ``entries[start:stop]``; delivered entries leave the journal."""
        if self._given_up():
            raise _GaveUp
        callback = job.callback
        assert callback is not None
        part = job.entries[start:stop]
        if stop - start == len(job.entries):
            delivery.whole_calls += 1
        begun = self._clock.now()
        try:
            if job.takes_entries:
                callback(FlushBatch(part))  # type: ignore[call-arg]
            else:
                callback()  # type: ignore[call-arg]
        except Exception as exc:
            delivery.attempt_time = self._clock.now() - begun
            delivery.last_error = exc
            kind = "transient" if self._retry.retry_on(exc) else "permanent"
            _log.warning(
                "%s: flush of %d entries failed (%s): %r", self._name, len(part), kind, exc
            )
            raise
        delivery.attempt_time = self._clock.now() - begun
        delivery.delivered += len(part)
        delivery.settled[start:stop] = [True] * len(part)
        self._remove_from_journal(part)
        return [None] * len(part)

    def _dead_letter_failures(self, entries: list[BufferedEntry], delivery: Delivery) -> None:
        """Hand failed entries to ``on_dead_letter``, one call per distinct error."""
        if self._on_dead_letter is None or not delivery.failures:
            return
        groups: dict[int, tuple[BaseException, list[int]]] = {}
        for index, error in delivery.failures:
            groups.setdefault(id(error), (error, []))[1].append(index)
        for error, indexes in groups.values():
            group = [entries[index] for index in indexes]
            if self._hand_to_dead_letter(group, error):
                self._remove_from_journal(group)
                for index in indexes:
                    delivery.settled[index] = True

    def _hand_to_dead_letter(self, entries: list[BufferedEntry], error: BaseException) -> bool:
        handler = self._on_dead_letter
        if handler is None:
            return False
        try:
            handler(list(entries), error)
        except Exception:
            _log.exception("%s: on_dead_letter failed for %d entries", self._name, len(entries))
            return False
        return True

    def _remove_from_journal(self, entries: Sequence[BufferedEntry]) -> None:
        if self._journal is None:
            return
        try:
            self._journal.remove(item.journal_id for item in entries)
        except Exception:
            _log.exception("%s: journal cleanup failed; entries may be flushed again", self._name)


def takes_entries(func: object) -> bool:
    """True if ``func`` takes the entries, False if it takes no argument.

    Raises:
        TypeError: ``func`` is not callable, or needs more than one argument.
    """
    if not callable(func):
        raise TypeError(f"flush_callback must be callable, got {func!r}")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(None)
    except TypeError:
        try:
            signature.bind()
        except TypeError:
            raise TypeError(
                f"flush_callback must accept one argument (the entries) or none: {func!r}"
            ) from None
        return False
    return True
