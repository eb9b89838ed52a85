"""What a `Database` measures: per-operation counters and its `statistics()` snapshot."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .._core.clock import Clock
from .._core.statistics import Statistics

__all__ = ["Call", "DatabaseStatistics", "Meter", "OperationStatistics"]

#: The operations that insert records: each call is one batch of the shared vocabulary.
_INSERTS = ("batch_insert", "insert_idempotent")


@dataclass
class Call:
    """What one operation did, filled in while it runs."""

    records: int = 0  # records the caller gave (insert calls only)
    rows: int = 0  # rows it inserted (for a transaction: so far)
    retries: int = 0  # transient failures retried
    duplicates: int = 0  # records dropped because an earlier record had their key


@dataclass(frozen=True)
class OperationStatistics:
    """One operation's totals (``Database.get_metrics()[operation]`` is its `as_dict`).

    Attributes:
        calls: operations run.
        rows: rows inserted by successful calls; for ``transaction``, rows committed.
        duplicates: records `Database.insert_idempotent` dropped because an earlier
            record of the same call had their key.
        errors: calls that raised.
        retries: transient failures retried.
        rollbacks: transactions rolled back.
        total_duration: seconds, retry waits included.
        avg_duration: ``total_duration / calls`` (0 before a call).
        max_duration: the longest call, seconds.
        error_types: failed calls by exception class name.
    """

    calls: int
    rows: int
    duplicates: int
    errors: int
    retries: int
    rollbacks: int
    total_duration: float
    avg_duration: float
    max_duration: float
    error_types: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict."""
        return asdict(self)


@dataclass(frozen=True)
class DatabaseStatistics(Statistics):
    """A snapshot of a `Database` (plain values, never live internals).

    The shared fields count insert calls (`Database.batch_insert`,
    `Database.insert_idempotent`) as batches and their records as items: a
    record succeeded when its call returned (inserted, or skipped as stored
    already), failed when its call raised. A `Database` has no batch size and no
    queue of its own: ``current_batch_size`` and ``queue_depth`` are 0.

    Attributes:
        rows: rows inserted by insert calls that returned.
        duplicates: records dropped because an earlier record of their call had their key.
        retries: transient failures retried, over every operation.
        rollbacks: transactions rolled back.
        open_transactions: transactions open now.
        connections_in_use: pooled connections checked out now (None when the pool
            does not say).
        closed: `Database.close` was called.
        dialect: the database kind (``"sqlite"``, ``"postgresql"``, ...).
        operations: totals per operation, once used (``batch_insert``,
            ``insert_idempotent``, ``transaction``, ``create_table``).
    """

    rows: int
    duplicates: int
    retries: int
    rollbacks: int
    open_transactions: int
    connections_in_use: int | None
    closed: bool
    dialect: str
    operations: Mapping[str, OperationStatistics]


@dataclass
class _Totals:
    """One operation's running totals; the `Meter`'s lock guards every access."""

    calls: int = 0  # operations run
    rows: int = 0  # rows inserted (committed, for transactions) by successful calls
    duplicates: int = 0  # records dropped for a key repeated within their call
    errors: int = 0  # calls that raised
    retries: int = 0  # transient failures retried
    rollbacks: int = 0  # transactions rolled back
    total_duration: float = 0.0  # seconds over all calls
    max_duration: float = 0.0  # the longest call, seconds
    succeeded: int = 0  # records of calls that returned
    failed: int = 0  # records of calls that raised
    error_types: Counter[str] = field(default_factory=Counter)  # failed calls by class name

    def add(
        self, duration: float, call: Call, error: BaseException | None, rolled_back: bool
    ) -> None:
        self.calls += 1
        self.rollbacks += rolled_back
        self.retries += call.retries
        self.total_duration += duration
        self.max_duration = max(self.max_duration, duration)
        if error is None and not rolled_back:
            self.rows += call.rows
            self.duplicates += call.duplicates
        if error is None:
            self.succeeded += call.records
        else:
            self.failed += call.records
            self.errors += 1
            self.error_types[type(error).__name__] += 1

    def snapshot(self) -> OperationStatistics:
        return OperationStatistics(
            calls=self.calls,
            rows=self.rows,
            duplicates=self.duplicates,
            errors=self.errors,
            retries=self.retries,
            rollbacks=self.rollbacks,
            total_duration=self.total_duration,
            avg_duration=self.total_duration / self.calls if self.calls else 0.0,
            max_duration=self.max_duration,
            error_types=dict(self.error_types),
        )


class Meter:
    """Counts and times a `Database`'s operations; thread-safe."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock  # times operations and the rate
        self._started = clock.now()  # when the Database opened, for the rate
        self._lock = threading.Lock()  # guards the totals
        self._totals: dict[str, _Totals] = {}  # by operation name, once used

    def now(self) -> float:
        """The clock's time, to pass back as ``started`` to `record`."""
        return self._clock.now()

    @contextlib.contextmanager
    def measured(self, operation: str) -> Iterator[Call]:
        """Time the block and record it as one ``operation`` call, raising or not."""
        call = Call()
        started = self._clock.now()
        try:
            yield call
        except BaseException as error:
            self.record(operation, started, call, error)
            raise
        self.record(operation, started, call, None)

    def record(
        self,
        operation: str,
        started: float,
        call: Call,
        error: BaseException | None,
        rolled_back: bool = False,
    ) -> None:
        """Add one ``operation`` call that began at ``started`` and ends now."""
        duration = self._clock.now() - started
        with self._lock:
            self._totals.setdefault(operation, _Totals()).add(duration, call, error, rolled_back)

    def statistics(
        self,
        *,
        open_transactions: int,
        connections_in_use: int | None,
        closed: bool,
        dialect: str,
    ) -> DatabaseStatistics:
        """The totals so far, with the live values the `Database` reads."""
        elapsed = self._clock.now() - self._started
        with self._lock:
            operations = {name: totals.snapshot() for name, totals in self._totals.items()}
            inserts = [self._totals[name] for name in _INSERTS if name in self._totals]
            succeeded = sum(totals.succeeded for totals in inserts)
            failed = sum(totals.failed for totals in inserts)
            return DatabaseStatistics(
                name="",
                batches=sum(totals.calls for totals in inserts),
                items=succeeded + failed,
                succeeded=succeeded,
                failed=failed,
                current_batch_size=0,
                queue_depth=0,
                rate=(succeeded + failed) / elapsed if elapsed > 0 else 0.0,
                rows=sum(totals.rows for totals in inserts),
                duplicates=sum(totals.duplicates for totals in inserts),
                retries=sum(totals.retries for totals in self._totals.values()),
                rollbacks=sum(totals.rollbacks for totals in self._totals.values()),
                open_transactions=open_transactions,
                connections_in_use=connections_in_use,
                closed=closed,
                dialect=dialect,
                operations=operations,
            )
