"""`BatchStateManager`: the buffer's front (queue, flush, close, statistics) and its flushers.

The package docstring (`batchpilot.buffer`) states the guarantees and the choices
made where seed 003 is silent. The manager owns the lock, the buffer and the
flusher thread(s); what it decides and does is in named modules: when a flush
starts and how large it is (`triggers`), how one flush is delivered (`delivery`),
the lifecycle states (`lifecycle`) and the statistics snapshot (`statistics`). It
joins the `registry` that the global report (`report`) reads.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid as uuid_module
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from enum import Enum
from typing import Any

from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.events import BatchListener, BatchRecord
from .._core.health import process_rss_mb
from .._core.retry import RetryPolicy, RetryPredicate, retry_unless_permanent
from .._core.validate import check_int
from ..errors import ClosedError, ConfigError, QueueFullError
from .account import FlushAccount
from .codec import Serializer
from .config import BatchProcessingConfig
from .delivery import (
    DeadLetterHandler,
    Deliverer,
    Delivery,
    FlushCallback,
    FlushJob,
    takes_entries,
)
from .journal import Durability, EntryJournal
from .lifecycle import BufferState, Lifecycle
from .registry import register, unregister
from .state import PRIORITIES, BufferedEntry, EntryBuffer, RecentKeys
from .statistics import BufferStatistics, buffer_fields, detailed_view, health_status
from .triggers import FlushTriggers

__all__ = ["BatchStateManager"]

_log = logging.getLogger("batchpilot.buffer")

_MAX_IDLE_WAIT = 1.0
_NAMES = itertools.count(1)
_OPEN = BufferState.OPEN


class _Unset(Enum):
    TOKEN = 0


_UNSET = _Unset.TOKEN


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

    Failures (retries, bisection, dead letters, the cool-down) and user code that
    raises a `BaseException` are handled as the package docstring
    (`batchpilot.buffer`) and docs/buffer.md describe: nothing is swallowed and
    nothing is lost.

    `statistics` returns a frozen `BufferStatistics`; `get_detailed_stats` is the
    seed's dictionary view of it.

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
        cfg = _resolve_config(flush_config, max_buffer_size, enable_performance_monitoring)
        _check_options(max_buffer_age_seconds, on_dead_letter, journal_path, durability, serializer)
        self.config = cfg  # the thresholds and policies in force
        self.max_buffer_age_seconds = float(max_buffer_age_seconds)  # caps every age trigger
        self.name = name if name is not None else f"buffer-{next(_NAMES)}"  # reports, logs
        self._clock = clock  # every age trigger, retry wait and flush time
        self._callback = flush_callback  # where flushed entries go; None: they accumulate
        self._callback_takes_entries = flush_callback is None or takes_entries(flush_callback)
        retry = RetryPolicy(cfg.max_retries, cfg.retry_delay, retry_on=retry_on)
        self._triggers = FlushTriggers(  # when a flush starts, and how many entries it takes
            cfg, self.max_buffer_age_seconds, retry, memory_reader, clock, self.name
        )
        self._account = FlushAccount(  # counters, moving window, size events, listeners
            self.name, cfg.enable_performance_monitoring, listeners, clock.now()
        )
        self._lock = threading.Lock()  # guards everything below, triggers and account
        self._not_full = threading.Condition(self._lock)  # room was freed in the buffer
        self._idle = threading.Condition(self._lock)  # a flush ended, or a flusher went idle
        self._wake = threading.Event()  # wakes the flusher(s)
        self._buffer = EntryBuffer(cfg.max_buffer_size, cfg.enable_priority_flushing)
        self._seen = RecentKeys(cfg.dedup_window)  # uuids within the de-duplication window
        self._dropped: list[BufferedEntry] = []  # removed by drop_oldest, for on_dead_letter
        self._pending: str | None = None  # a trigger fired; the flusher was woken for it
        self._drain_reason: str | None = None  # flush(), close() or recovery: until empty
        self._drain_failed = False  # a flush of the current drain failed
        self._running = 0  # flushes running now
        self._life = Lifecycle()  # OPEN -> CLOSING -> CLOSED | FAILED; cause; held back
        self._journal = EntryJournal(journal_path, durability, serializer) if journal_path else None
        life = self._life  # the deliverer must not hold the manager (it may be collected)
        self._delivery = Deliverer(  # calls the callback: retries, bisection, dead letters
            self.name, retry, clock, self._journal, on_dead_letter, lambda: life.given_up
        )
        if self._journal is not None:
            self._recover(self._journal)
        self._threads = _start_flushers(self, cfg.max_concurrent_flushes)  # call the callback
        register(self)

    # ------------------------------------------------------------------ public API

    def set_flush_callback(self, flush_callback: FlushCallback) -> None:
        """Set (or replace) where flushed entries go."""
        takes = takes_entries(flush_callback)
        with self._lock:
            self._callback = flush_callback
            self._callback_takes_entries = takes
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
        key = uuid if type(uuid) is str and type(source) is str else ""
        if not key or type(priority) is not int or priority not in PRIORITIES:
            key, priority = _checked(uuid, source, priority)  # the common case skips the call
        now = self._clock.now()
        wall = time.time()
        with self._lock:
            if self._life.state is not _OPEN:  # the hot path skips the property
                raise self._life.refusal(self.name)
            if key not in self._seen and self._buffer.full:
                self._make_room(timeout)  # a repeat may arrive while it waits
            if key in self._seen:
                self._account.counts["duplicates_ignored"] += 1
                return False
            journal = self._journal
            journal_id = (
                None if journal is None else journal.append(key, source, priority, wall, entry)
            )
            self._buffer.add(BufferedEntry(entry, source, key, priority, now, wall, journal_id))
            self._seen.add(key)
            self._account.counts["entries_queued"] += 1
            if self._pending is None or self._running < len(self._threads):  # a flusher idles
                reason = self._triggers.due(self._buffer, now, None)
                if reason is not None:
                    self._pending = reason
                    self._wake.set()
            self._account.queue_seconds += time.perf_counter() - started
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
        memory = self._triggers.read_memory()
        now = self._clock.now()
        with self._lock:
            if not self._life.open:
                return None
            reason = self._triggers.due(self._buffer, now, memory)
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
            if not self._life.open:
                raise self._life.refusal(self.name)
            self._start_drain("manual")
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
        running = self._stop_flushers(timeout)
        with self._lock:
            if self._life.released:
                return self._life.take_held_back()
            leftovers = self._buffer.drain()
            self._account.counts["unflushed_at_close"] += len(leftovers)
            in_flight = self._buffer.in_flight
            if running:
                self._account.counts["in_flight_at_close"] += in_flight
                self._life.give_up()
            else:
                self._life.release(leftovers)
        if running:
            _log_gave_up(self.name, timeout, len(leftovers), in_flight)
        else:
            self._release(leftovers)
        return leftovers

    def __enter__(self) -> BatchStateManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self._life.open

    @property
    def current_size_threshold(self) -> int:
        """The size trigger in force (moves when adaptive sizing is on)."""
        return self._triggers.size

    @property
    def flusher_threads(self) -> tuple[threading.Thread, ...]:
        """The thread(s) that call the flush callback."""
        return self._threads

    def statistics(self) -> BufferStatistics:
        """A frozen snapshot: the fields every engine shares, then the buffer's own."""
        memory = self._triggers.read_memory()
        now = self._clock.now()
        rss = process_rss_mb()
        with self._lock:
            buffer = self._buffer
            return BufferStatistics(
                current_batch_size=self._triggers.size,
                flushing=self._running > 0,
                closed=not self._life.open,
                journal_path=None if self._journal is None else self._journal.path,
                memory_percent=memory,
                process_rss_mb=rss,
                health=health_status(memory, self.config, 100.0 * buffer.held / buffer.capacity),
                flush_triggers=dict(self._triggers.fired),
                **buffer_fields(buffer, now),
                **self._account.figures(now),
            )

    def get_detailed_stats(self) -> dict[str, Any]:
        """A snapshot: buffer state, performance, system health, optimization events.

        ``performance["throughput_eps"]`` is entries per second of flush time over
        the last 100 flushes; ``avg_processing_time_ms`` the mean callback time.
        The dictionary is a view of `statistics`.
        """
        return detailed_view(self.statistics(), self.config)

    def __repr__(self) -> str:
        buffer = self._buffer
        return (
            f"BatchStateManager(name={self.name!r}, buffered={buffer.buffered}, "
            f"in_flight={buffer.in_flight}, max_buffer_size={buffer.capacity}, "
            f"size_threshold={self._triggers.size}, flushes={self._account.counts['flushes']}, "
            f"closed={self.closed})"
        )

    # ----------------------------------------------------------------- internals

    def _start_drain(self, reason: str) -> None:
        """Flush until the buffer is empty (or a flush keeps its entries); lock held."""
        self._drain_reason = self._pending = reason
        self._drain_failed = False

    def _stop_flushers(self, timeout: float | None) -> bool:
        """OPEN -> CLOSING, drain, and join the flushers; True if one still runs."""
        self._refuse_flusher_thread("close()")
        with self._lock:
            if self._life.begin_close():
                self._start_drain("close")
                self._not_full.notify_all()
        self._wake.set()
        return _join(self._threads, timeout)

    def _release(self, leftovers: list[BufferedEntry]) -> None:
        """Leave the report, close the journal, and re-raise what stopped the manager."""
        unregister(self)
        _close_journal(self.name, self._journal, leftovers)
        cause = self._life.cause
        if cause is not None:
            _log.error(
                "%s: re-raising %r from the flusher thread; close() again returns the %d "
                "undelivered entries",
                self.name, cause, len(leftovers),
            )  # fmt: skip
            raise cause

    def _is_idle(self) -> bool:
        return not (self._pending or self._drain_reason or self._running or self._dropped)

    def _refuse_flusher_thread(self, what: str) -> None:
        if threading.current_thread() in self._threads:
            raise RuntimeError(f"{what} cannot be called from the flush callback")

    def _recover(self, journal: EntryJournal) -> None:
        entries = _recovered(journal, self._clock.now())
        self._account.counts["quarantined_entries"] += journal.quarantined
        for item in entries:
            self._buffer.add(item)
            self._seen.add(item.uuid)
        if entries:
            self._account.counts["recovered_entries"] += len(entries)
            self._drain_reason = self._pending = "recovered"
            _log.info("%s: recovered %d unflushed entries from %s", self.name, len(entries),
                      journal.path)  # fmt: skip

    def _make_room(self, wait: float | _Unset | None) -> None:
        """Called with the lock held and the buffer full; ``wait``: queue_entry's timeout."""
        timeout = self.config.overflow_timeout_seconds if wait is _UNSET else wait
        self._account.counts["overflow_events"] += 1
        policy = self.config.overflow
        if policy == "drop_oldest":
            victim = self._buffer.drop_oldest()
            if victim is not None:
                self._account.counts["dropped_entries"] += 1
                self._dropped.append(victim)
                self._wake.set()
                return
        elif policy == "raise":
            self._account.counts["rejected_entries"] += 1
            raise QueueFullError(f"{self.name}: buffer full ({self._buffer.capacity} entries)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._buffer.full:
            if not self._life.open:
                raise ClosedError(f"{self.name} is closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._account.counts["rejected_entries"] += 1
                raise QueueFullError(
                    f"{self.name}: buffer full ({self._buffer.capacity} entries) for {timeout} s"
                )
            self._not_full.wait(remaining)
        if not self._life.open:
            raise ClosedError(f"{self.name} is closed")

    def _flusher_step(self) -> float | None:
        """Run at most one flush. Returns 0 after work, the idle wait, or None to exit."""
        memory = self._triggers.read_memory()
        now = self._clock.now()
        with self._lock:
            job = self._next_job(now, memory)
            if job is None:
                self._pending = None
                self._idle.notify_all()
                if not self._life.open:
                    return None
                return self._triggers.idle_wait(self._buffer, now, self._callback is not None)
            self._running += 1
        try:
            if job.reason == "dropped":
                self._delivery.give_up_dropped(job.entries)
            else:
                self._run_flush(job)
        finally:
            with self._lock:
                self._running -= 1
                self._idle.notify_all()
        return 0.0

    def _next_job(self, now: float, memory: float | None) -> FlushJob | None:
        if self._dropped:
            dropped, self._dropped = self._dropped, []
            return FlushJob(dropped, "dropped", now)
        buffer = self._buffer
        if self._callback is None or not buffer.buffered or not self._life.flushing_allowed:
            self._drain_reason = None
            return None
        reason = self._drain_reason or self._triggers.due(buffer, now, memory)
        if reason is None:
            return None
        self._triggers.fired[reason] += 1
        entries = buffer.take(self._triggers.size)
        return FlushJob(entries, reason, now, self._callback, self._callback_takes_entries)

    def _run_flush(self, job: FlushJob) -> None:
        """Deliver ``job``, then book and report it; user code's `BaseException` stops all."""
        entries = job.entries
        delivery = Delivery(len(entries))
        try:
            self._delivery.deliver(job, delivery)
        except BaseException as fatal:  # not an Exception: SystemExit, KeyboardInterrupt, ...
            unsettled = delivery.unsettled(entries)
            self._stop(fatal, unsettled, len(entries) - len(unsettled))
            raise
        finished = self._clock.now()
        kept = delivery.unsettled(entries)
        size, failed = len(entries), len(entries) - delivery.delivered
        with self._lock:
            event = self._triggers.observe(
                size, delivery.attempt_time, delivery.last_error, ok=failed == 0
            )
            self._account.book(size, delivery, len(kept), event)
            self._buffer.settle(size - len(kept))
            self._not_full.notify(size - len(kept))
            if kept:
                self._buffer.put_back(kept)
                self._triggers.hold(finished)
            if failed:
                self._drain_failed = True
                if kept:
                    self._drain_reason = None  # a drain stops at entries it cannot move
            depth = self._buffer.buffered
        self._account.report(job, delivery, len(kept), finished, depth)

    def _stop(self, fatal: BaseException, unsettled: list[BufferedEntry], settled: int = 0) -> None:
        """User code raised ``fatal`` (not an `Exception`): keep everything and stop.

        ``unsettled`` are the in-flight entries of the flush it interrupted (and
        ``settled`` how many of its entries had left already); they go back to
        the buffer, and `close` re-raises ``fatal`` after closing.
        """
        with self._lock:
            self._buffer.settle(settled)
            self._buffer.put_back(unsettled)
            self._life.fail(fatal)
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


def _start_flushers(manager: BatchStateManager, count: int) -> tuple[threading.Thread, ...]:
    wake = manager._wake
    reference = weakref.ref(manager, lambda _: wake.set())  # a collected manager stops them
    threads = tuple(
        threading.Thread(
            target=_flusher_main,
            args=(reference, wake),
            name=f"batchpilot-{manager.name}-flusher-{index}",
            daemon=True,
        )
        for index in range(count)
    )
    for thread in threads:
        thread.start()
    return threads


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
            if manager._life.cause is None:
                manager._stop(fatal, [])
            return
        del manager
        if wait is None:
            return
        if wait > 0:
            wake.wait(wait)


def _join(threads: tuple[threading.Thread, ...], timeout: float | None) -> bool:
    """Join ``threads`` within one deadline; True if one still runs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return any(thread.is_alive() for thread in threads)


def _log_gave_up(name: str, timeout: float | None, returned: int, in_flight: int) -> None:
    _log.warning(
        "%s: close(timeout=%s) gave up waiting: %d undelivered entries returned, "
        "%d still in a flush that makes no further attempt (a later close() "
        "returns them if it fails)",
        name, timeout, returned, in_flight,
    )  # fmt: skip


def _close_journal(name: str, journal: EntryJournal | None, leftovers: list[BufferedEntry]) -> None:
    if leftovers:
        where = "kept in the journal" if journal is not None else "not journaled"
        _log.warning("%s closed with %d undelivered entries (%s)", name, len(leftovers), where)
    if journal is not None:
        journal.close()


def _recovered(journal: EntryJournal, now: float) -> list[BufferedEntry]:
    """The journal's unflushed entries, their age carried over onto this clock."""
    wall = time.time()
    return [
        BufferedEntry(
            row.entry, row.source, row.uuid, row.priority,
            now - max(0.0, wall - row.queued_at_wall), row.queued_at_wall, row.id,
        )
        for row in journal.pending()
    ]  # fmt: skip


def _resolve_config(
    config: BatchProcessingConfig | None,
    max_buffer_size: int | None,
    enable_performance_monitoring: bool | None,
) -> BatchProcessingConfig:
    """``config`` (default `BatchProcessingConfig()`) with the arguments given explicitly."""
    config = config if config is not None else BatchProcessingConfig()
    if not isinstance(config, BatchProcessingConfig):
        raise TypeError(f"flush_config must be a BatchProcessingConfig, got {config!r}")
    overrides: dict[str, Any] = {}
    if max_buffer_size is not None:
        overrides["max_buffer_size"] = max_buffer_size
    if enable_performance_monitoring is not None:
        overrides["enable_performance_monitoring"] = enable_performance_monitoring
    return replace(config, **overrides) if overrides else config


def _check_options(
    max_age: float,
    on_dead_letter: object,
    journal_path: object,
    durability: str,
    serializer: str,
) -> None:
    if max_age <= 0:
        raise ValueError(f"max_buffer_age_seconds must be > 0, got {max_age}")
    if on_dead_letter is not None and not callable(on_dead_letter):
        raise TypeError(f"on_dead_letter must be callable, got {on_dead_letter!r}")
    if durability != "normal" and journal_path is None:
        raise ValueError("durability applies to the journal: give journal_path too")
    if serializer != "json" and journal_path is None:
        raise ValueError("serializer applies to the journal: give journal_path too")


def _checked(uuid: object, source: object, priority: object) -> tuple[str, int]:
    """``queue_entry``'s key and priority, checked.

    Raises:
        ConfigError: a bad priority, source or uuid.
    """
    checked = check_int("priority", priority)
    if checked not in PRIORITIES:
        raise ConfigError(f"priority must be 0, 1 or 2, got {priority!r}")
    if not isinstance(uuid, (str, uuid_module.UUID)):
        raise ConfigError(f"uuid must be a str or uuid.UUID, got {type(uuid).__name__}: {uuid!r}")
    key = str(uuid)
    if not key:
        raise ConfigError("uuid must be a non-empty string")
    if not isinstance(source, str):
        raise ConfigError(f"source must be a str, got {source!r}")
    return key, checked
