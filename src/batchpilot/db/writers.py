"""Adapters that store batches exactly once: a buffer's flush sink and a bulk job's writer.

Both write through `Database.insert_idempotent`, passed in as ``insert``.
"""

from __future__ import annotations

import reprlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .._core.callables import is_async_callable
from .._core.rows import split_rows
from ..errors import BatchFailedError
from .tables import unknown_columns

__all__ = ["Insert", "bulk_writer", "check_batch_function", "sink"]

#: `Database.insert_idempotent`: ``(table, records, key)`` to the keys inserted now.
Insert = Callable[[str, Sequence[Mapping[str, Any]], str], list[Any]]


def sink(
    insert: Insert,
    table: str,
    key: str,
    to_record: Callable[[Any], Mapping[str, Any]] | None,
    id_of: Callable[[Any], Any] | None,
) -> Callable[[Sequence[Any]], list[Any]]:
    """The flush callback `Database.sink` describes."""
    record_of = to_record if to_record is not None else _entry_record
    identity = id_of if id_of is not None else _entry_id

    def write_batch(batch: Sequence[Any]) -> list[Any]:
        records = [{**record_of(item), key: identity(item)} for item in batch]
        return insert(table, records, key)

    write_batch.__qualname__ = write_batch.__name__ = f"Database.sink({table!r}, key={key!r})"
    return write_batch


def check_batch_function(fn: object) -> None:
    """Raise `TypeError` unless ``fn`` is None or a plain (not ``async def``) callable."""
    if fn is not None and not callable(fn):
        raise TypeError(f"fn must be a batch function or None, got {type(fn).__name__}")
    if is_async_callable(fn):
        raise TypeError(f"bulk_writer needs a plain function, not async def: {fn!r}")


class _FirstRows:
    """A bulk writer's state until the table took a chunk's rows: one chunk at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held by the one chunk writing while no rows are stored
        self.stored = False  # a chunk's rows went in; chunks now run concurrently
        # Why the table refused the first chunk's rows as a whole; every later chunk
        # fails with it, without running the model.
        self.refusal: str | None = None


def bulk_writer(
    insert: Insert,
    target: sa.Table,
    table: str,
    fn: Callable[[list[Any]], Any] | None,
    *,
    key: str,
    key_of: Callable[[Any], Any] | None,
    to_record: Callable[[Any, Any], Mapping[str, Any]] | None,
) -> Callable[[list[Any]], list[Any]]:
    """The batch function `Database.bulk_writer` describes, for the checked ``target``."""
    compute = fn if fn is not None else list
    record_of = to_record if to_record is not None else _result_record
    first = _FirstRows()

    def records_of(batch: list[Any]) -> tuple[list[Any], list[Mapping[str, Any]]]:
        if key_of is None:
            ids, items = _split_indexed(batch)
        else:
            ids, items = [key_of(item) for item in batch], batch
        results = split_rows(compute(items), len(items))
        return ids, [
            {**record_of(item, result), key: item_id}
            for item_id, item, result in zip(ids, items, results, strict=True)
        ]

    def write_first(batch: list[Any]) -> list[Any]:
        if first.refusal is not None:
            raise BatchFailedError(f"not run: {first.refusal}")
        ids, records = records_of(batch)
        # A column the table lacks, in the first rows: the table's fault, not an
        # item's. BatchFailedError is not bisected, and later chunks do not run.
        first.refusal = unknown_columns(target, table, records)
        if first.refusal is not None:
            raise BatchFailedError(first.refusal)
        insert(table, records, key)
        first.stored = True
        return ids

    def write_batch(batch: list[Any]) -> list[Any]:
        if not first.stored:
            with first.lock:
                if not first.stored:
                    return write_first(batch)
        ids, records = records_of(batch)
        insert(table, records, key)
        return ids

    write_batch.__qualname__ = write_batch.__name__ = (
        f"Database.bulk_writer({table!r}, key={key!r})"
    )
    return write_batch


def _entry_record(item: Any) -> Mapping[str, Any]:
    entry = item.entry
    return entry if isinstance(entry, Mapping) else {"entry": entry}


def _entry_id(item: Any) -> Any:
    return item.uuid


def _result_record(_item: Any, result: Any) -> Mapping[str, Any]:
    return result if isinstance(result, Mapping) else {"result": result}


def _split_indexed(batch: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """The indices and the items of a chunk of ``(index, item)`` pairs from `enumerate`."""
    for pair in batch:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], int)
            and not isinstance(pair[0], bool)
        ):
            raise TypeError(
                f"bulk_writer without key_of needs (index, item) pairs, got "
                f"{reprlib.repr(pair)}: pass enumerate(items) to map_batches, or give key_of"
            )
    return [pair[0] for pair in batch], [pair[1] for pair in batch]
