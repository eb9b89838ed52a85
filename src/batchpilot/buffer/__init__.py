"""The flush buffer of seed 003: entries accumulate and leave in batches.

`BatchStateManager` buffers entries (RSS items, alerts, rows) and hands them in
batches to a flush callback (an LLM API, a DB writer). A flush starts when
enough entries are buffered (25, or an adaptive size between 5 and 50), when the
oldest entry is too old (300 s normal, 120 s priority 1, 60 s priority 2), or
under memory pressure (early flush above 85 %, emergency flush above 95 %).

Guarantees beyond the seed:

* Flushes run on the manager's flusher thread, never in the caller's; one at a
  time unless ``max_concurrent_flushes`` asks for more.
* A failing callback loses nothing: a transient error is retried with
  back-off; a permanent one (``retry_on``, default `retry_unless_permanent`)
  bisects the batch so only the bad entries fail. Failed entries go to
  ``on_dead_letter`` if given, else back to the buffer for a later flush
  (after a cool-down, see `BatchStateManager`).
* The flusher survives any `Exception` from user code; a ``SystemExit`` or
  ``KeyboardInterrupt`` stops the manager, keeps its entries, and `close`
  re-raises it.
* With ``journal_path`` every entry is in a SQLite WAL journal before
  ``queue_entry`` returns; a new manager on the same file flushes whatever a
  killed process had not flushed. Entries are stored as JSON (plain data) by
  default; ``serializer="pickle"`` is an opt-in for trusted files. A row that
  does not decode is quarantined in the file, logged, and the rest recovered.
* Each callback call gets a `FlushBatch` (a list) whose ``entry_ids`` and
  ``batch_id`` are stable across replays: a sink that inserts idempotently on
  them (`batchpilot.db.Database.sink`) gets each entry exactly once, even
  after ``kill -9``.
* A full buffer blocks (with a timeout), raises `QueueFullError`, or, only when
  asked, drops its oldest entry to ``on_dead_letter``.
* A uuid seen within the last ``dedup_window`` entries is ignored and counted.

Choices where the seed is silent or inconsistent (kept in tests):

* ``max_buffer_size`` and ``enable_performance_monitoring`` exist both as
  constructor arguments and config fields: an argument given explicitly wins,
  otherwise the config's value applies.
* ``max_buffer_age_seconds`` caps every age threshold.
* An early memory flush needs ``min_size_threshold`` entries; an emergency
  flush takes whatever is buffered.
* The callback receives ``list[BufferedEntry]``; a callable taking no
  arguments (the seed's ``process_batch()``) is called without them.

The one module-level state is the registry of live managers behind
`get_batch_performance_report` and `log_batch_performance_summary` (the seed's
global report). It holds weak references, managers leave it on `close`, and
`live_managers` shows its content.
"""

from .._core.exports import publish
from .codec import Serializer
from .config import ENV_VARS, BatchProcessingConfig, OverflowPolicy
from .delivery import DeadLetterHandler, FlushBatch, FlushCallback
from .journal import Durability, JournalError, JournalInUseError
from .manager import BatchStateManager
from .presets import (
    create_high_performance_batch_manager,
    create_memory_efficient_batch_manager,
    create_optimized_batch_manager,
)
from .report import get_batch_performance_report, live_managers, log_batch_performance_summary
from .state import BufferedEntry
from .statistics import BufferStatistics

__all__ = [
    "ENV_VARS",
    "BatchProcessingConfig",
    "BatchStateManager",
    "BufferStatistics",
    "BufferedEntry",
    "DeadLetterHandler",
    "Durability",
    "FlushBatch",
    "FlushCallback",
    "JournalError",
    "JournalInUseError",
    "OverflowPolicy",
    "Serializer",
    "create_high_performance_batch_manager",
    "create_memory_efficient_batch_manager",
    "create_optimized_batch_manager",
    "get_batch_performance_report",
    "live_managers",
    "log_batch_performance_summary",
]

publish(__name__, globals(), __all__)
