"""`BatchProcessingManager` (seed 004): adaptive batches, each inserted atomically into a db."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .._core.events import BatchListener, BatchRecord
from .._core.sizing import Fixed, SizeController
from ..bulk import ItemFailure
from ..errors import BatchFailedError
from .processor import AdaptiveBatchProcessor, default_workers
from .strategy import ChemicalDataBatchStrategy
from .totals import Totals

__all__ = ["BatchProcessingManager"]


class _InsertingBatch:
    """Process a batch, then insert its results in one transaction (all or nothing)."""

    def __init__(self, db: Any, table: str, process_func: Callable[[list[Any]], Any] | None):
        self._db = db
        self._table = table
        self._process = process_func

    def __call__(self, batch: list[Any]) -> list[Any]:
        records = batch if self._process is None else self._process(batch)
        if not isinstance(records, list) or len(records) != len(batch):
            count = len(records) if isinstance(records, list) else type(records).__name__
            raise BatchFailedError(
                f"process_func must return a list of {len(batch)} records, got {count}"
            )
        with self._db.transaction() as tx_id:
            self._db.batch_insert(table=self._table, records=records, transaction_id=tx_id)
        return records


class BatchProcessingManager:
    """Processes items in adaptive batches and inserts every batch into a database.

    Args:
        db: any object with ``transaction()`` (a context manager yielding a
            transaction id) and ``batch_insert(table=, records=, transaction_id=)``,
            e.g. `batchpilot.db.Database`.
        max_workers: worker threads when ``parallel_processing``; None: CPU count.
        adaptive_batch_sizing: size batches with `ChemicalDataBatchStrategy`;
            False keeps ``initial_batch_size`` fixed.
        parallel_processing: run batches on ``max_workers`` threads; False: one.
        logger: where failures are logged.
        listeners: get one `BatchRecord` per batch (see `AdaptiveBatchProcessor`).

    Each batch is inserted inside its own transaction, so a batch whose
    processing or insert fails leaves no rows; the engine then bisects it, so the
    healthy items of that batch are still inserted and only the bad ones fail.

    Raises:
        TypeError: ``db`` lacks ``transaction``/``batch_insert``.
    """

    def __init__(
        self,
        db: Any,
        max_workers: int | None = None,
        adaptive_batch_sizing: bool = True,
        parallel_processing: bool = True,
        logger: logging.Logger | None = None,
        *,
        listeners: Iterable[BatchListener | Callable[[BatchRecord], object]] = (),
    ) -> None:
        for method in ("transaction", "batch_insert"):
            if not callable(getattr(db, method, None)):
                raise TypeError(f"db must provide {method}(), got {type(db).__name__}")
        self.db = db
        self.max_workers = default_workers(max_workers)
        self.adaptive_batch_sizing = adaptive_batch_sizing
        self.parallel_processing = parallel_processing
        self.logger = logger or logging.getLogger("batchpilot.adaptive")
        self.failures: list[ItemFailure[Any]] = []
        self._listeners = list(listeners)
        self._totals = Totals()
        self._operations: dict[str, Totals] = {}
        self._lock = threading.Lock()

    def process_items(
        self,
        items: Iterable[Any],
        operation: str,
        data_source: str = "generic",
        process_func: Callable[[list[Any]], Any] | None = None,
        initial_batch_size: int | None = None,
    ) -> list[Any]:
        """Process ``items`` and insert the results into the table ``operation``.

        Args:
            items: the items (any iterable).
            operation: the table to insert into; also the name stats are kept under.
            data_source: ``"generic"``, ``"chembl"`` or ``"pubchem"`` (sizing defaults).
            process_func: turns a batch of items into as many records (dicts);
                None inserts the items themselves.
            initial_batch_size: first batch size; None: the source's default. A
                size below 10 also lowers the smallest batch to it.

        Returns:
            The inserted records of every successful item, in input order.
        """
        if not isinstance(operation, str) or not operation:
            raise ValueError(f"operation must be a non-empty table name, got {operation!r}")
        if process_func is not None and not callable(process_func):
            raise TypeError(f"process_func must be callable, got {type(process_func).__name__}")
        strategy: SizeController = ChemicalDataBatchStrategy(
            data_source,
            initial_batch_size=initial_batch_size,
            min_batch_size=min(10, initial_batch_size or 10),
            logger=self.logger,
        )
        if not self.adaptive_batch_sizing:
            strategy = Fixed(strategy.next_size())
        processor = AdaptiveBatchProcessor(
            _InsertingBatch(self.db, operation, process_func),
            max_workers=self.max_workers,
            strategy=strategy,
            logger=self.logger,
            listeners=self._listeners,
        )
        if self.parallel_processing:
            results = processor.process_items_parallel(items)
        else:
            results = processor.process_items(items)
        self.failures = processor.failures
        with self._lock:
            per_operation = self._operations.setdefault(operation, Totals())
        for totals in (self._totals, per_operation):
            totals.add(processor.last_run_stats)
        return results

    def get_stats(self) -> dict[str, Any]:
        """Totals over every call (``total_items_processed``, ``total_duration``, ...).

        Also ``max_workers``, ``adaptive_batch_sizing``, ``parallel_processing``
        and ``operations``: the same totals per operation (table).
        """
        stats = self._totals.snapshot()
        with self._lock:
            operations = {name: totals.snapshot() for name, totals in self._operations.items()}
        stats.update(
            max_workers=self.max_workers,
            adaptive_batch_sizing=self.adaptive_batch_sizing,
            parallel_processing=self.parallel_processing,
            operations=operations,
        )
        return stats

    def __repr__(self) -> str:
        return (
            f"BatchProcessingManager(max_workers={self.max_workers}, "
            f"processed={self._totals.items}, failed={self._totals.failed}, "
            f"operations={sorted(self._operations)})"
        )
