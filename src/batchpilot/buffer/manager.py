"""`BatchStateManager`: the buffer, its flusher thread(s) and the flush with retries.

The package docstring (`batchpilot.buffer`) states the guarantees and the choices
made where seed 003 is silent; the global report lives in `report`, the preset
factories in `presets`.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import logging
import os
import threading
import time
import uuid as uuid_module
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from enum import Enum
from typing import Any, Literal, NamedTuple

from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.events import BatchListener, BatchRecord, as_listener, notify
from .._core.health import SampledReading, process_rss_mb, system_memory_percent
from .._core.isolation import Outcome, isolation_plan
from .._core.retry import RetryPolicy, RetryPredicate, retry_unless_permanent
from .._core.sizing import Fixed, TargetLatency
from .._core.stats import BatchStats
from .._core.validate import check_int
from ..errors import ClosedError, ConfigError, QueueFullError
from .codec import Serializer
from .config import BatchProcessingConfig
from .journal import Durability, EntryJournal
from .report import register, unregister
from .state import PRIORITIES, BufferedEntry, EntryBuffer, FlushRules, RecentKeys

__all__ = ["BatchStateManager", "DeadLetterHandler", "FlushBatch", "FlushCallback"]

_log = logging.getLogger("batchpilot.buffer")

FlushCallback = Callable[[list[BufferedEntry]], object] | Callable[[], object]
"""Receives the flushed entries (or nothing, if it takes no arguments)."""

DeadLetterHandler = Callable[[list[BufferedEntry], BaseException], object]
"""Receives entries given up on and the error: the flush's last one, or a
`QueueFullError` for entries dropped by ``overflow="drop_oldest"``."""

_STATS_WINDOW = 100
_EVENTS_KEPT = 100
_MAX_IDLE_WAIT = 1.0
_MIN_IDLE_WAIT = 0.005
_MIN_COOLDOWN = 1.0
_NAMES = itertools.count(1)


class _Unset(Enum):
    TOKEN = 0


_UNSET = _Unset.TOKEN


class _Flush(NamedTuple):
    entries: list[BufferedEntry]
    reason: str
    started: float
    callback: FlushCallback | None = None
    takes_entries: bool = True


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


class _Delivery:
    """What happened to one flush's entries, filled in while it runs."""

    def __init__(self, size: int) -> None:
        self.settled = [False] * size  # delivered, or handed to the dead letter handler
        self.delivered = 0
        self.failures: list[tuple[int, BaseException]] = []
        self.retries = 0
        self.attempt_time = 0.0
        self.last_error: BaseException | None = None

    def unsettled(self, entries: list[BufferedEntry]) -> list[BufferedEntry]:
        """The entries neither delivered nor dead-lettered, in order."""
        return [item for item, done in zip(entries, self.settled, strict=True) if not done]

    def fail_unsettled(
        self, entries: list[BufferedEntry], error: BaseException | None, keep: bool
    ) -> None:
        """Every entry not delivered failed with ``error`` (kept as is if ``keep``)."""
        if keep or error is None:
            return
        self.failures.extend((index, error) for index, done in enumerate(self.settled) if not done)


class BatchStateManager:
    """Buffers entries and flushes them in batches to ``flush_callback``.

    Args:
        max_buffer_size: entries held at most; default ``flush_config.max_buffer_size``.
        max_buffer_age_seconds: no entry waits longer than this (caps the age
            thresholds of the config).
        flush_config: thresholds and policies; default `BatchProcessingConfig()`.
        enable_performance_monitoring: keep the moving-window statistics;
            default ``flush_config.enable_performance_monitoring``.
        flush_callback: called on the flusher thread with ``list[BufferedEntry]``
            (or with no argument if it takes none). Settable later with
            `set_flush_callback`; until then entries only accumulate.
        on_dead_letter: called with ``(entries, error)`` for entries given up on.
        journal_path: SQLite file journaling every unflushed entry; entries found
            in it at start are flushed first (reason ``"recovered"``). One
            manager per file: a second one, in any process, gets
            `JournalInUseError` naming the holder's pid.
        durability: ``"normal"`` (survives a killed process) or ``"fsync"``
            (also survives power loss, slower); only with ``journal_path``.
        serializer: how the journal stores entries: ``"json"`` (plain data:
            None, bool, int, float, str, bytes, list, tuple, set, dict, numpy
            arrays; opening the file never runs code from it) or ``"pickle"``
            (any picklable entry; only for journals you trust, since loading
            a pickle can run code). Only with ``journal_path``.
        memory_reader: returns system memory use in percent; default psutil.
        clock: time source for every age trigger and retry wait.
        listeners: get one `BatchRecord` (engine ``"buffer"``) per flush.
        name: label in reports, logs and thread names.
        retry_on: which callback errors are worth a retry (`RetryPolicy.retry_on`).
            Default `retry_unless_permanent`: every `Exception` but the database
            errors about the data (``IntegrityError``, ``DataError``, ...).

    A flush whose callback raises is retried with back-off while ``retry_on``
    accepts the error. An error it rejects (permanent) bisects the batch, as the
    other engines do (`batchpilot._core.isolation`): the halves are tried again
    until each failing entry is alone, so only the bad entries fail and the
    rest are delivered. An accepted error that outlasts every retry fails the
    whole batch (the sink is down; bisecting would only hammer it). Failed
    entries go to ``on_dead_letter`` (one call per distinct error), else back to
    the buffer.

    User code (callback, dead letter handler, listeners, memory reader) that
    raises something that is not an `Exception` (``SystemExit``,
    ``KeyboardInterrupt``) stops the manager: its flush's entries are kept,
    ``queue_entry`` and `flush` raise `ClosedError` naming the cause, and
    `close` re-raises it after closing (the entries stay in the journal; a
    second `close` returns them). Nothing is swallowed and nothing is lost.

    After a flush failed all its retries and its entries were kept, automatic
    triggers pause for one more back-off step (at least 1 s), so a broken
    callback is not called in a loop; `flush` and `close` do not wait.

    Example:
        >>> flushed = []
        >>> with BatchStateManager(flush_callback=flushed.extend) as manager:
        ...     manager.queue_entry({"title": "hello"}, "rss_feed", "id-1", priority=2)
        True
        >>> [item.uuid for item in flushed]
        ['id-1']
    """

    def __init__(
        self,
        max_buffer_size: int | None = None,
        max_buffer_age_seconds: float = 3600.0,
        flush_config: BatchProcessingConfig | None = None,
        enable_performance_monitoring: bool | None = None,
        flush_callback: FlushCallback | None = None,
        *,
        on_dead_letter: DeadLetterHandler | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        durability: Durability = "normal",
        serializer: Serializer = "json",
        memory_reader: Callable[[], float] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[BatchListener | Callable[[BatchRecord], object]] = (),
        name: str | None = None,
        retry_on: RetryPredicate = retry_unless_permanent,
    ) -> None:
        config = flush_config if flush_config is not None else BatchProcessingConfig()
        if not isinstance(config, BatchProcessingConfig):
            raise TypeError(f"flush_config must be a BatchProcessingConfig, got {config!r}")
        overrides: dict[str, Any] = {}
        if max_buffer_size is not None:
            overrides["max_buffer_size"] = max_buffer_size
        if enable_performance_monitoring is not None:
            overrides["enable_performance_monitoring"] = enable_performance_monitoring
        self.config = replace(config, **overrides) if overrides else config
        if max_buffer_age_seconds <= 0:
            raise ValueError(f"max_buffer_age_seconds must be > 0, got {max_buffer_age_seconds}")
        if on_dead_letter is not None and not callable(on_dead_letter):
            raise TypeError(f"on_dead_letter must be callable, got {on_dead_letter!r}")
        if durability != "normal" and journal_path is None:
            raise ValueError("durability applies to the journal: give journal_path too")
        if serializer != "json" and journal_path is None:
            raise ValueError("serializer applies to the journal: give journal_path too")
        self.max_buffer_age_seconds = float(max_buffer_age_seconds)
        self.name = name if name is not None else f"buffer-{next(_NAMES)}"
        self._clock = clock
        self._on_dead_letter = on_dead_letter
        self._listeners = [as_listener(hook) for hook in listeners]
        self._callback = flush_callback
        self._callback_takes_entries = flush_callback is None or _takes_entries(flush_callback)

        cfg = self.config
        self._rules = _flush_rules(cfg, self.max_buffer_age_seconds)
        self._retry = RetryPolicy(cfg.max_retries, cfg.retry_delay, retry_on=retry_on)
        self._sizer: Fixed | TargetLatency = (
            TargetLatency(
                cfg.performance_target_ms / 1000.0,
                min_size=cfg.min_size_threshold,
                max_size=cfg.max_size_threshold,
                initial=cfg.size_threshold,
            )
            if cfg.enable_adaptive_sizing
            else Fixed(cfg.size_threshold)
        )
        self._memory = SampledReading(
            memory_reader or system_memory_percent, cfg.memory_check_interval_seconds, clock
        )
        self._memory_percent: float | None = None
        self._memory_failing = False
        self._stats = BatchStats(_STATS_WINDOW)
        self._events: deque[dict[str, Any]] = deque(maxlen=_EVENTS_KEPT)
        self._counts: Counter[str] = Counter()
        self._triggers: Counter[str] = Counter()
        self._queue_seconds = 0.0

        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._buffer = EntryBuffer(cfg.max_buffer_size, cfg.enable_priority_flushing)
        self._seen = RecentKeys(cfg.dedup_window)
        self._dropped: list[BufferedEntry] = []
        self._pending: str | None = None
        self._drain_reason: str | None = None
        self._drain_failed = False
        self._running = 0
        self._hold_until = float("-inf")
        self._closed = False
        self._finished = False
        self._abandoned = False  # close(timeout) gave up waiting: no new attempts
        self._fatal: BaseException | None = None  # see _stop
        self._held_back: list[BufferedEntry] = []  # returned by the close() after a fatal

        self._journal = EntryJournal(journal_path, durability, serializer) if journal_path else None
        if self._journal is not None:
            self._recover(self._journal)

        wake = self._wake
        reference = weakref.ref(self, lambda _: wake.set())  # a collected manager stops its threads
        self._threads = tuple(
            threading.Thread(
                target=_flusher_main,
                args=(reference, self._wake),
                name=f"batchpilot-{self.name}-flusher-{index}",
                daemon=True,
            )
            for index in range(cfg.max_concurrent_flushes)
        )
        for thread in self._threads:
            thread.start()
        register(self)

    # ------------------------------------------------------------------ public API

    def set_flush_callback(self, flush_callback: FlushCallback) -> None:
        """Set (or replace) where flushed entries go."""
        takes_entries = _takes_entries(flush_callback)
        with self._lock:
            self._callback = flush_callback
            self._callback_takes_entries = takes_entries
            self._pending = "callback_set"
        self._wake.set()

    def queue_entry(
        self,
        entry: Any,
        source: str,
        uuid: str | uuid_module.UUID,
        priority: int = 0,
        *,
        timeout: float | _Unset | None = _UNSET,
    ) -> bool:
        """Buffer one entry; a flush it triggers runs on the flusher thread.

        Args:
            entry: any object; with a journal, one its serializer can store.
            source: where it came from.
            uuid: its identity (str or `uuid.UUID`); a repeat within the
                de-duplication window is ignored.
            priority: 0 normal, 1 high, 2 urgent.
            timeout: longest wait for room with ``overflow="block"``;
                default ``config.overflow_timeout_seconds`` (None: forever).

        Returns:
            True if queued (and journaled), False if ignored as a duplicate.

        Raises:
            QueueFullError: the buffer stayed full (``"block"``) or was full (``"raise"``).
            ClosedError: the manager is closed.
            ConfigError: bad priority, source or uuid (a `TypeError` and a
                `ValueError`); checked before anything is journaled.
            TypeError: the journal's serializer cannot store the entry; nothing
                was journaled or queued.
        """
        started = time.perf_counter()
        if type(priority) is not int or priority not in PRIORITIES:
            priority = _check_priority(priority)  # the common case skips two calls
        key = uuid if type(uuid) is str else _uuid_key(uuid)
        if not key:
            raise ConfigError("uuid must be a non-empty string")
        if not isinstance(source, str):
            raise ConfigError(f"source must be a str, got {source!r}")
        now = self._clock.now()
        wall = time.time()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if key in self._seen:
                self._counts["duplicates_ignored"] += 1
                return False
            if self._buffer.full:
                self._make_room(
                    self.config.overflow_timeout_seconds if timeout is _UNSET else timeout
                )
                if key in self._seen:
                    self._counts["duplicates_ignored"] += 1
                    return False
            journal_id = (
                self._journal.append(key, source, priority, wall, entry)
                if self._journal is not None
                else None
            )
            self._buffer.add(BufferedEntry(entry, source, key, priority, now, wall, journal_id))
            self._seen.add(key)
            self._counts["entries_queued"] += 1
            idle_flusher = self._pending is None or self._running < len(self._threads)
            if idle_flusher and now >= self._hold_until:
                reason = self._buffer.due(now, self._sizer.next_size(), self._rules, None)
                if reason is not None:
                    self._pending = reason
                    self._wake.set()
            self._queue_seconds += time.perf_counter() - started
        return True

    def check_flush_conditions(self) -> str | None:
        """Evaluate every trigger now (memory included); wake the flusher if one fires.

        The flusher does this by itself about once per
        ``memory_check_interval_seconds``; call it after moving a fake clock.

        Returns:
            The trigger that fired (``"size_threshold"``, ``"age_normal"``,
            ``"age_priority"``, ``"age_emergency"``, ``"memory_early"``,
            ``"memory_emergency"``), or None.
        """
        memory = self._read_memory()
        now = self._clock.now()
        with self._lock:
            if self._closed or now < self._hold_until:
                return None
            reason = self._buffer.due(now, self._sizer.next_size(), self._rules, memory)
            if reason is not None:
                self._pending = reason
        if reason is not None:
            self._wake.set()
        return reason

    def flush(self, timeout: float | None = None) -> bool:
        """Flush everything buffered now, on the flusher thread, and wait for it.

        Returns:
            True if the buffer is empty afterwards; False if a flush failed, no
            callback is set, or ``timeout`` passed first.

        Raises:
            ClosedError: the manager is closed.
            RuntimeError: called from the flush callback itself.
        """
        self._refuse_flusher_thread("flush()")
        with self._lock:
            if self._closed:
                raise self._closed_error()
            self._drain_reason = "manual"
            self._drain_failed = False
            self._pending = "manual"
        self._wake.set()
        with self._lock:
            done = self._idle.wait_for(
                lambda: self._drain_reason is None and self._running == 0, timeout
            )
            return done and not self._drain_failed and self._buffer.held == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no flush is requested, running, or waiting to be dead-lettered.

        Returns:
            False if ``timeout`` passed first.
        """
        self._refuse_flusher_thread("wait_idle()")
        with self._lock:
            return self._idle.wait_for(self._is_idle, timeout)

    def close(self, timeout: float | None = None) -> list[BufferedEntry]:
        """Flush what is left, stop the flusher, and release the journal. Idempotent.

        Args:
            timeout: longest wait for the flusher thread(s), one deadline for all.

        Returns:
            Entries that could not be flushed (the callback kept failing, or none
            was set); they stay in the journal, if any. Each undelivered entry is
            returned once, and their count is logged. If a flush is still running
            when ``timeout`` passes, the buffered entries are returned at once, the
            running flush makes no further attempt, and the log (and the counter
            ``in_flight_at_close``) says how many entries it holds: a later
            `close` returns those it did not deliver.

        Raises:
            BaseException: what user code raised on the flusher thread when that
                was not an `Exception` (see the class docstring), once the manager
                is closed; a second `close` then returns the undelivered entries.
        """
        self._refuse_flusher_thread("close()")
        with self._lock:
            if not self._closed:
                self._closed = True
                self._drain_reason = "close"
                self._drain_failed = False
                self._pending = "close"
                self._not_full.notify_all()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        running = any(thread.is_alive() for thread in self._threads)
        with self._lock:
            if self._finished:
                leftovers, self._held_back = self._held_back, []
                return leftovers
            leftovers = self._buffer.drain()
            in_flight = self._buffer.in_flight
            self._counts["unflushed_at_close"] += len(leftovers)
            if running:
                self._abandoned = True
                self._counts["in_flight_at_close"] += in_flight
            else:
                self._finished = True
            fatal = self._fatal
        if running:
            _log.warning(
                "%s: close(timeout=%s) gave up waiting: %d undelivered entries returned, "
                "%d still in a flush that makes no further attempt (a later close() "
                "returns them if it fails)",
                self.name, timeout, len(leftovers), in_flight,
            )  # fmt: skip
            return leftovers
        unregister(self)
        if leftovers:
            where = "kept in the journal" if self._journal is not None else "not journaled"
            _log.warning(
                "%s closed with %d undelivered entries (%s)", self.name, len(leftovers), where
            )
        if self._journal is not None:
            self._journal.close()
        if fatal is not None:
            with self._lock:
                self._held_back = leftovers
            _log.error(
                "%s: re-raising %r from the flusher thread; close() again returns the %d "
                "undelivered entries",
                self.name, fatal, len(leftovers),
            )  # fmt: skip
            raise fatal
        return leftovers

    def __enter__(self) -> BatchStateManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def current_size_threshold(self) -> int:
        """The size trigger in force (moves when adaptive sizing is on)."""
        return self._sizer.next_size()

    @property
    def flusher_threads(self) -> tuple[threading.Thread, ...]:
        """The thread(s) that call the flush callback."""
        return self._threads

    def get_detailed_stats(self) -> dict[str, Any]:
        """A snapshot: buffer state, performance, system health, optimization events.

        ``performance["throughput_eps"]`` is entries per second of flush time over
        the last 100 flushes; ``avg_processing_time_ms`` the mean callback time.
        """
        memory = self._read_memory()
        now = self._clock.now()
        perf = self._stats.get_stats()
        with self._lock:
            counts = dict(self._counts)
            triggers = dict(self._triggers)
            events = list(self._events)
            buffer = self._buffer
            oldest = buffer.oldest_queued_at()
            utilization = 100.0 * buffer.held / buffer.capacity
            buffer_state: dict[str, Any] = {
                "buffer_size": buffer.count((0,))
                if buffer.separate_priorities
                else buffer.buffered,
                "priority_buffer_size": buffer.count((1, 2)) if buffer.separate_priorities else 0,
                "total_buffered": buffer.buffered,
                "in_flight": buffer.in_flight,
                "max_buffer_size": buffer.capacity,
                "utilization_percent": utilization,
                "current_size_threshold": self._sizer.next_size(),
                "oldest_entry_age_seconds": 0.0 if oldest is None else now - oldest,
                "flushing": self._running > 0,
                "closed": self._closed,
                "journal_path": None if self._journal is None else self._journal.path,
            }
            queued = counts.get("entries_queued", 0)
            avg_queue_us = 1e6 * self._queue_seconds / queued if queued else 0.0
        attempts = queued + counts.get("duplicates_ignored", 0) + counts.get("rejected_entries", 0)
        overflows = counts.get("overflow_events", 0)
        cfg = self.config
        processing_ms = 1000.0 * perf["avg_processing_time"]
        return {
            "name": self.name,
            "buffer_state": buffer_state,
            "performance": {
                "monitoring_enabled": cfg.enable_performance_monitoring,
                "throughput_eps": perf["throughput"],
                "avg_processing_time_ms": processing_ms,
                "p95_latency_ms": 1000.0 * perf["p95_latency"],
                "avg_batch_size": perf["avg_batch_size"],
                "avg_queue_time_ms": 1000.0 * perf["avg_queue_time"],
                "avg_queue_entry_us": avg_queue_us,
                "performance_target_ms": cfg.performance_target_ms,
                "throughput_target_eps": cfg.throughput_target_eps,
                "meets_performance_target": processing_ms <= cfg.performance_target_ms,
                "meets_throughput_target": perf["throughput"] >= cfg.throughput_target_eps,
                "error_rate": perf["error_rate"],
            },
            "counters": {
                "entries_queued": queued,
                "entries_flushed": counts.get("entries_flushed", 0),
                "flushes": counts.get("flushes", 0),
                "failed_flushes": counts.get("failed_flushes", 0),
                "retries": counts.get("retries", 0),
                "kept_after_failure": counts.get("kept_after_failure", 0),
                "dead_lettered_entries": counts.get("dead_lettered_entries", 0),
                "dropped_entries": counts.get("dropped_entries", 0),
                "duplicates_ignored": counts.get("duplicates_ignored", 0),
                "overflow_events": overflows,
                "rejected_entries": counts.get("rejected_entries", 0),
                "recovered_entries": counts.get("recovered_entries", 0),
                "quarantined_entries": counts.get("quarantined_entries", 0),
                "unflushed_at_close": counts.get("unflushed_at_close", 0),
                "in_flight_at_close": counts.get("in_flight_at_close", 0),
            },
            "flush_triggers": triggers,
            "system_health": {
                "status": _health_status(memory, cfg, utilization),
                "memory_percent": memory,
                "memory_early_flush_percent": cfg.memory_early_flush_percent,
                "memory_emergency_flush_percent": cfg.memory_emergency_flush_percent,
                "memory_efficiency_percent": 100.0 * (1 - overflows / attempts)
                if attempts
                else 100.0,
                "process_rss_mb": process_rss_mb(),
            },
            "optimization_events": events,
        }

    def __repr__(self) -> str:
        buffer = self._buffer
        return (
            f"BatchStateManager(name={self.name!r}, buffered={buffer.buffered}, "
            f"in_flight={buffer.in_flight}, max_buffer_size={buffer.capacity}, "
            f"size_threshold={self._sizer.next_size()}, flushes={self._counts['flushes']}, "
            f"closed={self._closed})"
        )

    # ----------------------------------------------------------------- internals

    def _closed_error(self) -> ClosedError:
        if self._fatal is None:
            return ClosedError(f"{self.name} is closed")
        error = ClosedError(f"{self.name} stopped: user code raised {self._fatal!r}")
        error.__cause__ = self._fatal
        return error

    def _is_idle(self) -> bool:
        return (
            self._pending is None
            and self._drain_reason is None
            and self._running == 0
            and not self._dropped
        )

    def _refuse_flusher_thread(self, what: str) -> None:
        if threading.current_thread() in self._threads:
            raise RuntimeError(f"{what} cannot be called from the flush callback")

    def _read_memory(self) -> float | None:
        """The sampled memory percentage, or None while the reader fails (logged once)."""
        try:
            self._memory_percent = self._memory.value()
        except Exception:
            if self._memory_percent is not None or not self._memory_failing:
                _log.exception("%s: memory reader failed; memory triggers skipped", self.name)
            self._memory_percent, self._memory_failing = None, True
        else:
            self._memory_failing = False
        return self._memory_percent

    def _recover(self, journal: EntryJournal) -> None:
        rows = journal.pending()
        self._counts["quarantined_entries"] += journal.quarantined
        now, wall = self._clock.now(), time.time()
        for row in rows:
            waited = max(0.0, wall - row.queued_at_wall)
            self._buffer.add(
                BufferedEntry(
                    row.entry, row.source, row.uuid, row.priority, now - waited,
                    row.queued_at_wall, row.id,
                )
            )  # fmt: skip
            self._seen.add(row.uuid)
        if rows:
            self._counts["recovered_entries"] += len(rows)
            self._drain_reason = self._pending = "recovered"
            _log.info(
                "%s: recovered %d unflushed entries from %s", self.name, len(rows), journal.path
            )

    def _make_room(self, timeout: float | None) -> None:
        """Called with the lock held and the buffer full."""
        self._counts["overflow_events"] += 1
        policy = self.config.overflow
        if policy == "drop_oldest":
            victim = self._buffer.drop_oldest()
            if victim is not None:
                self._counts["dropped_entries"] += 1
                self._dropped.append(victim)
                self._wake.set()
                return
        elif policy == "raise":
            self._counts["rejected_entries"] += 1
            raise QueueFullError(f"{self.name}: buffer full ({self._buffer.capacity} entries)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._buffer.full:
            if self._closed:
                raise ClosedError(f"{self.name} is closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._counts["rejected_entries"] += 1
                raise QueueFullError(
                    f"{self.name}: buffer full ({self._buffer.capacity} entries) for {timeout} s"
                )
            self._not_full.wait(remaining)
        if self._closed:
            raise ClosedError(f"{self.name} is closed")

    def _flusher_step(self) -> float | None:
        """Run at most one flush. Returns 0 after work, the idle wait, or None to exit."""
        memory = self._read_memory()
        now = self._clock.now()
        with self._lock:
            job = self._next_job(now, memory)
            if job is None:
                self._pending = None
                self._idle.notify_all()
                return None if self._closed else self._idle_wait(now)
            self._running += 1
        try:
            if job.reason == "dropped":
                self._give_up_dropped(job.entries)
            else:
                self._run_flush(job)
        finally:
            with self._lock:
                self._running -= 1
                self._idle.notify_all()
        return 0.0

    def _next_job(self, now: float, memory: float | None) -> _Flush | None:
        if self._dropped:
            dropped, self._dropped = self._dropped, []
            return _Flush(dropped, "dropped", now)
        buffer = self._buffer
        if self._callback is None or not buffer.buffered or self._abandoned or self._fatal:
            self._drain_reason = None
            return None
        size = self._sizer.next_size()
        reason = self._drain_reason
        if reason is None:
            if now < self._hold_until:
                return None
            reason = buffer.due(now, size, self._rules, memory)
            if reason is None:
                return None
        self._triggers[reason] += 1
        return _Flush(buffer.take(size), reason, now, self._callback, self._callback_takes_entries)

    def _idle_wait(self, now: float) -> float:
        if self._callback is None:
            return _MAX_IDLE_WAIT
        until = self._buffer.next_age_deadline(self._rules)
        if until is not None and self._hold_until > until:
            until = self._hold_until
        wait = self.config.memory_check_interval_seconds or _MAX_IDLE_WAIT
        if until is not None:
            wait = min(wait, until - now)
        return max(_MIN_IDLE_WAIT, min(_MAX_IDLE_WAIT, wait))

    def _run_flush(self, job: _Flush) -> None:
        entries = job.entries
        size = len(entries)
        delivery = _Delivery(size)
        try:
            self._deliver(job, delivery)
            self._dead_letter_failures(entries, delivery)
        except BaseException as fatal:  # not an Exception: SystemExit, KeyboardInterrupt, ...
            unsettled = delivery.unsettled(entries)
            self._stop(fatal, unsettled, size - len(unsettled))
            raise
        finished = self._clock.now()
        kept = delivery.unsettled(entries)
        failed = size - delivery.delivered
        dead_lettered = size - delivery.delivered - len(kept)
        queue_time = sum(job.started - item.queued_at for item in entries) / size
        with self._lock:
            old_size = self._sizer.next_size()
            self._sizer.observe(size, delivery.attempt_time, ok=failed == 0)
            new_size = self._sizer.next_size()
            self._counts["retries"] += delivery.retries
            self._counts["entries_flushed"] += delivery.delivered
            self._buffer.settle(size - len(kept))
            self._not_full.notify(size - len(kept))
            if kept:
                self._buffer.put_back(kept)
                self._hold_until = finished + self._cooldown()
                self._counts["kept_after_failure"] += len(kept)
            if failed == 0:
                self._counts["flushes"] += 1
            else:
                self._counts["failed_flushes"] += 1
                self._counts["dead_lettered_entries"] += dead_lettered
                self._drain_failed = True
                if kept:
                    self._drain_reason = None  # a drain stops at entries it cannot move
            if new_size != old_size:
                self._events.append(
                    _size_event(old_size, new_size, delivery.attempt_time, delivery.last_error,
                                self.config)
                )  # fmt: skip
            depth = self._buffer.buffered
        if self.config.enable_performance_monitoring:
            if failed == 0:
                self._stats.update(delivery.attempt_time, size, queue_time, queue_length=depth)
            else:
                self._stats.record_error(size)
        _log.debug(
            "%s: flush of %d (%s): %d delivered, %d dead-lettered, %d kept",
            self.name, size, job.reason, delivery.delivered, dead_lettered, len(kept),
        )  # fmt: skip
        notify(
            self._listeners,
            BatchRecord(
                engine="buffer",
                size=size,
                duration=finished - job.started,
                queue_time=queue_time,
                succeeded=delivery.delivered,
                failed=failed,
                error_types=dict(Counter(type(error).__name__ for _, error in delivery.failures)),
                queue_depth=depth,
                name=self.name,
            ),
        )

    def _deliver(self, job: _Flush, delivery: _Delivery) -> None:
        """Call the callback per the retry policy, bisecting a batch that holds bad entries.

        Drives the shared `isolation_plan`: the whole batch is retried while
        ``retry_on`` accepts the error; a rejected (permanent) error splits the
        batch until each failing entry is alone, so the others are delivered.
        An error that is still accepted after the last retry means the sink is
        down, not the data bad: the batch fails whole, without bisecting. A
        callback that takes no entries is never bisected either.
        """
        entries = job.entries
        size = len(entries)
        if self._abandoned:
            return
        reply: list[None] | Exception = self._attempt(job, 0, size, delivery)
        if not isinstance(reply, Exception):
            return  # delivered whole: the common case needs no plan
        policy = self._retry
        plan = isolation_plan(size, policy)
        next(plan)  # its first attempt, the whole batch, was the call above
        whole_error: Exception | None = reply
        while True:
            try:
                attempt = plan.send(reply)
            except StopIteration as done:
                outcomes: list[Outcome] = done.value
                break
            bisecting = (attempt.start, attempt.stop) != (0, size)
            if attempt.delay > 0:  # a retry's back-off; close(timeout) may give up meanwhile
                self._clock.sleep(attempt.delay)
            if self._abandoned or (
                bisecting
                and whole_error is not None
                and (policy.retry_on(whole_error) or not job.takes_entries)
            ):
                plan.close()
                delivery.fail_unsettled(entries, whole_error, keep=self._abandoned)
                return
            if not bisecting:
                delivery.retries += 1
            reply = self._attempt(job, attempt.start, attempt.stop, delivery)
            if not bisecting:
                whole_error = reply if isinstance(reply, Exception) else None
        for index, outcome in enumerate(outcomes):
            if not outcome.ok:
                delivery.failures.append((index, outcome.value))

    def _attempt(
        self, job: _Flush, start: int, stop: int, delivery: _Delivery
    ) -> list[None] | Exception:
        """One callback call on ``entries[start:stop]``; delivered entries leave the journal."""
        callback = job.callback
        assert callback is not None
        part = job.entries[start:stop]
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
            _log.warning("%s: flush of %d entries failed (%s): %r", self.name, len(part), kind, exc)
            return exc
        delivery.attempt_time = self._clock.now() - begun
        delivery.delivered += len(part)
        delivery.settled[start:stop] = [True] * len(part)
        self._remove_from_journal(part)
        return [None] * len(part)

    def _dead_letter_failures(self, entries: list[BufferedEntry], delivery: _Delivery) -> None:
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

    def _stop(self, fatal: BaseException, unsettled: list[BufferedEntry], settled: int = 0) -> None:
        """User code raised ``fatal`` (not an `Exception`): keep everything and stop.

        ``unsettled`` are the in-flight entries of the flush it interrupted (and
        ``settled`` how many of its entries had left already); they go back to
        the buffer, and `close` re-raises ``fatal`` after closing.
        """
        with self._lock:
            self._buffer.settle(settled)
            self._buffer.put_back(unsettled)
            if self._fatal is None:
                self._fatal = fatal
            self._closed = True
            self._pending = self._drain_reason = None
            self._drain_failed = True
            held = self._buffer.buffered
            self._not_full.notify_all()
            self._idle.notify_all()
        self._wake.set()
        _log.error(
            "%s stopped: user code raised %r on the flusher thread; %d undelivered entries "
            "kept (close() re-raises it)",
            self.name, fatal, held,
        )  # fmt: skip

    def _cooldown(self) -> float:
        return max(_MIN_COOLDOWN, self._retry.delay(self._retry.max_retries + 1))

    def _hand_to_dead_letter(self, entries: list[BufferedEntry], error: BaseException) -> bool:
        handler = self._on_dead_letter
        if handler is None:
            return False
        try:
            handler(list(entries), error)
        except Exception:
            _log.exception("%s: on_dead_letter failed for %d entries", self.name, len(entries))
            return False
        return True

    def _give_up_dropped(self, entries: list[BufferedEntry]) -> None:
        error = QueueFullError(f"{self.name}: dropped by overflow='drop_oldest'")
        if not self._hand_to_dead_letter(entries, error):
            _log.warning("%s: dropped %d entries (buffer full)", self.name, len(entries))
        self._remove_from_journal(entries)

    def _remove_from_journal(self, entries: Sequence[BufferedEntry]) -> None:
        if self._journal is None:
            return
        try:
            self._journal.remove(item.journal_id for item in entries)
        except Exception:
            _log.exception("%s: journal cleanup failed; entries may be flushed again", self.name)


def _flusher_main(
    reference: weakref.ReferenceType[BatchStateManager], wake: threading.Event
) -> None:
    """The flusher loop. Holds the manager only while working, so it can be collected."""
    while True:
        manager = reference()
        if manager is None:
            return
        wake.clear()
        try:
            wait = manager._flusher_step()
        except Exception:
            _log.exception("%s: flusher step failed", manager.name)
            wait = _MAX_IDLE_WAIT
        except BaseException as fatal:  # recorded by _stop (or now): close() re-raises it
            if manager._fatal is None:
                manager._stop(fatal, [])
            return
        del manager
        if wait is None:
            return
        if wait > 0:
            wake.wait(wait)


def _flush_rules(config: BatchProcessingConfig, max_age: float) -> FlushRules:
    """The triggers of ``config``; no entry waits longer than a less urgent one would."""
    normal = min(config.time_threshold_seconds, max_age)
    high = min(config.priority_time_threshold_seconds, normal)
    urgent = min(config.emergency_time_threshold_seconds, high)
    return FlushRules(
        max_age=(normal, high, urgent),
        early_memory_percent=config.memory_early_flush_percent,
        emergency_memory_percent=config.memory_emergency_flush_percent,
        min_size=config.min_size_threshold,
    )


def _takes_entries(func: object) -> bool:
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


def _check_priority(value: object) -> int:
    priority = check_int("priority", value)
    if priority not in PRIORITIES:
        raise ConfigError(f"priority must be 0, 1 or 2, got {value!r}")
    return priority


def _uuid_key(value: object) -> str:
    if isinstance(value, (str, uuid_module.UUID)):
        return str(value)
    raise ConfigError(f"uuid must be a str or uuid.UUID, got {type(value).__name__}: {value!r}")


def _size_event(
    old: int, new: int, took: float, error: BaseException | None, config: BatchProcessingConfig
) -> dict[str, Any]:
    why = (
        f"flush failed ({type(error).__name__})"
        if error is not None
        else f"flush took {1000 * took:.1f} ms, target {config.performance_target_ms:.0f} ms"
    )
    return {
        "event": "size_threshold_changed",
        "at": time.time(),
        "old": old,
        "new": new,
        "reason": why,
    }


def _health_status(
    memory: float | None, config: BatchProcessingConfig, utilization: float
) -> Literal["healthy", "degraded", "critical"]:
    if (
        memory is not None and memory > config.memory_emergency_flush_percent
    ) or utilization >= 100:
        return "critical"
    if (memory is not None and memory > config.memory_early_flush_percent) or utilization >= 75:
        return "degraded"
    return "healthy"
