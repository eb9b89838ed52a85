"""`ChunkProcessor` (seed 002): cuts targets into chunks by strategy, estimates costs.

Chunks are produced lazily (`iter_chunks`), so a generator of targets is never
read further than the chunks in flight; only custom strategies, which take the
whole list, read everything first. Sizing decisions come from the core: FIXED
asks the live config, TIME_BASED and ADAPTIVE ask a `TargetLatency` controller
that `record_chunk` feeds with measured chunk durations, MEMORY_BASED and
WEIGHTED pack targets greedily against a budget.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from .._core.memory import MemoryMonitor
from .._core.sizing import LinearCostModel, TargetLatency
from .config import ChunkConfig, ChunkStrategy

__all__ = ["ChunkProcessor", "CustomStrategy", "default_weight", "estimate_size_bytes"]

CustomStrategy = Callable[[list[Any]], Iterable[Iterable[Any]]]
"""A custom chunking strategy: takes the whole target list, returns its chunks."""

_MIB = 1024 * 1024


def default_weight(target: Any) -> float:
    """WEIGHTED's default: ``target["weight"]`` for mappings that have one, else 1."""
    if isinstance(target, Mapping) and "weight" in target:
        return float(target["weight"])
    return 1.0


def estimate_size_bytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Approximate memory held by ``obj``: `sys.getsizeof` over containers, recursively.

    Counts each object once (shared references are not double counted); numpy
    arrays report their buffer through `sys.getsizeof`.
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, (str, bytes, bytearray, memoryview, int, float, complex, bool)):
        return size
    if isinstance(obj, Mapping):
        return size + sum(
            estimate_size_bytes(key, seen) + estimate_size_bytes(value, seen)
            for key, value in obj.items()
        )
    if isinstance(obj, (list, tuple, set, frozenset)):
        return size + sum(estimate_size_bytes(item, seen) for item in obj)
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        size += estimate_size_bytes(attributes, seen)
    return size


def _check_coverage(name: str, targets: list[Any], placed: list[Any]) -> None:
    """Raise `ValueError` unless ``placed`` holds each of ``targets`` exactly once.

    Targets are matched by identity; a strategy that copies them is matched by
    equality instead (hashing when the targets allow it).
    """
    if len(placed) != len(targets):
        raise ValueError(
            f"custom strategy {name!r} put {len(placed)} targets into chunks "
            f"for {len(targets)} targets; every target must be in exactly one chunk"
        )
    if Counter(map(id, targets)) == Counter(map(id, placed)):
        return
    try:
        wanted, got = Counter(targets), Counter(placed)
    except TypeError:  # unhashable copies: match them one by one
        dropped, repeated = list(targets), []
        for target in placed:
            try:
                dropped.remove(target)
            except ValueError:
                repeated.append(target)
    else:
        repeated, dropped = list((got - wanted).elements()), list((wanted - got).elements())
    if not repeated and not dropped:
        return
    raise ValueError(
        f"custom strategy {name!r} repeats or invents {_some(repeated)} and drops "
        f"{_some(dropped)}; every target must be in exactly one chunk"
    )


def _some(targets: list[Any]) -> str:
    shown = ", ".join(repr(target) for target in targets[:3])
    return f"{len(targets)} target(s) ({shown}{', ...' if len(targets) > 3 else ''})"


class ChunkProcessor:
    """Chunking of target lists by `ChunkStrategy` or by a named custom strategy.

    Attributes:
        config: the `ChunkConfig` read for every chunk (changes apply at once).
        custom_strategies: name -> function taking the target list and returning
            its chunks; pass the name as ``strategy``. Every target must land in
            exactly one chunk (checked: a target repeated, dropped or replaced is
            a `ValueError`).
        chunk_size_history: sizes of the chunks produced, oldest first.
        cost_model: `LinearCostModel` of chunk durations (for
            `estimate_processing_time`).

    Example:
        >>> processor = ChunkProcessor(ChunkConfig(chunk_size=3))
        >>> processor.create_chunks(range(7))
        [[0, 1, 2], [3, 4, 5], [6]]
        >>> def halves(ts):
        ...     return [ts[: len(ts) // 2], ts[len(ts) // 2 :]]
        >>> processor.custom_strategies["halves"] = halves
        >>> processor.create_chunks(range(5), "halves")
        [[0, 1], [2, 3, 4]]
    """

    def __init__(
        self, config: ChunkConfig | None = None, *, memory_monitor: MemoryMonitor | None = None
    ) -> None:
        if config is not None and not isinstance(config, ChunkConfig):
            raise TypeError(f"config must be a ChunkConfig, got {type(config).__name__}")
        self.config = config if config is not None else ChunkConfig()
        self.memory_monitor = memory_monitor
        self.custom_strategies: dict[str, CustomStrategy] = {}
        self.chunk_size_history: list[int] = []
        self.cost_model = LinearCostModel()
        self._measured_targets = 0
        self._measured_seconds = 0.0
        self._controller: TargetLatency | None = None
        self._sizing: ChunkStrategy | None = None
        self._lock = threading.Lock()

    # -- strategies ---------------------------------------------------------

    def resolve_strategy(self, strategy: ChunkStrategy | str | None = None) -> ChunkStrategy | str:
        """The strategy to use: a `ChunkStrategy`, or the name of a custom one.

        None means ``config.strategy``. Raises `ValueError` for an unknown name.
        """
        chosen = self.config.strategy if strategy is None else strategy
        if isinstance(chosen, ChunkStrategy):
            return chosen
        if isinstance(chosen, str):
            if chosen in self.custom_strategies:
                return chosen
            for member in ChunkStrategy:
                if chosen.lower() == member.value:
                    return member
        known = [m.value for m in ChunkStrategy] + sorted(self.custom_strategies)
        raise ValueError(f"unknown chunk strategy {chosen!r}; known: {known}")

    def create_chunks(
        self, targets: Iterable[Any], strategy: ChunkStrategy | str | None = None
    ) -> list[list[Any]]:
        """All chunks of ``targets`` as a list (see `iter_chunks`)."""
        return list(self.iter_chunks(targets, strategy))

    def iter_chunks(
        self, targets: Iterable[Any], strategy: ChunkStrategy | str | None = None
    ) -> Iterator[list[Any]]:
        """Lazily cut ``targets`` into chunks with ``strategy`` (default: the config's).

        Raises `TypeError` for a non-iterable and `ValueError` for an unknown
        strategy at once, before any target is read.
        """
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Iterable):
            raise TypeError(f"targets must be an iterable of targets, got {type(targets).__name__}")
        resolved = self.resolve_strategy(strategy)
        weight = self.config.weight_function or default_weight
        with self._lock:
            self._sizing = resolved if resolved in _CONTROLLED else None
            self._controller = self._new_controller() if self._sizing else None
        if isinstance(resolved, str):
            chunks = self._custom(resolved, targets)
        elif resolved is ChunkStrategy.MEMORY_BASED:
            chunks = _pack(
                iter(targets), estimate_size_bytes, lambda: self.memory_budget_bytes, self._cap
            )
        elif resolved is ChunkStrategy.WEIGHTED:
            chunks = _pack(iter(targets), weight, lambda: self.config.chunk_size, lambda: None)
        else:
            chunks = _sized(iter(targets), self._next_size)
        return self._recorded(chunks)

    def _recorded(self, chunks: Iterator[list[Any]]) -> Iterator[list[Any]]:
        for chunk in chunks:
            self.chunk_size_history.append(len(chunk))
            yield chunk

    def _custom(self, name: str, targets: Iterable[Any]) -> Iterator[list[Any]]:
        items = list(targets)
        chunks = [list(chunk) for chunk in self.custom_strategies[name](items)]
        _check_coverage(name, items, [target for chunk in chunks for target in chunk])
        yield from (chunk for chunk in chunks if chunk)

    def _cap(self) -> int:
        return self.config.chunk_size

    @property
    def memory_budget_bytes(self) -> float:
        """MEMORY_BASED's budget per chunk: ``max_memory_mb / max_concurrent_chunks``."""
        return self.config.max_memory_mb * _MIB / self.config.max_concurrent_chunks

    def _new_controller(self) -> TargetLatency:
        config = self.config
        return TargetLatency(
            config.target_chunk_time,
            min_size=config.min_chunk_size,
            max_size=config.effective_max_chunk_size,
            initial=config.chunk_size,
        )

    def _next_size(self) -> int:
        with self._lock:
            if self._controller is not None:
                return self._controller.next_size()
        return self.config.chunk_size

    # -- feedback and estimates --------------------------------------------

    def record_chunk(self, size: int, duration: float, failed: int = 0) -> None:
        """Feed one finished chunk's size, duration and failures to the sizing.

        TIME_BASED learns from every chunk; ADAPTIVE also halves the next chunk
        when the memory monitor reports the limit exceeded or when more than half
        of the chunk's targets failed.
        """
        if size < 1:
            return
        with self._lock:
            self.cost_model.add(size, duration)
            self._measured_targets += size
            self._measured_seconds += duration
            controller, sizing = self._controller, self._sizing
        if controller is None:
            return
        ok = True
        if sizing is ChunkStrategy.ADAPTIVE:
            over_memory = self.memory_monitor is not None and (
                self.memory_monitor.is_memory_limit_exceeded()
            )
            ok = not over_memory and 2 * failed <= size
        with self._lock:
            controller.observe(size, duration, ok)

    def estimate_memory_usage(self, targets: Iterable[Any]) -> float:
        """Estimated MiB the given targets occupy (`estimate_size_bytes`)."""
        return sum(estimate_size_bytes(target) for target in targets) / _MIB

    def estimate_processing_time(self, count: int) -> float | None:
        """Predicted seconds for a chunk of ``count`` targets, from measured chunks.

        Uses the fitted cost model; with chunks of one size only, scales their
        mean duration per target; None before any chunk was recorded.
        """
        with self._lock:
            predicted = self.cost_model.predict(count)
            targets, seconds = self._measured_targets, self._measured_seconds
        if predicted is not None:
            return predicted
        return count * seconds / targets if targets else None

    def __repr__(self) -> str:
        return (
            f"ChunkProcessor(strategy={self.config.strategy!r}, "
            f"chunk_size={self.config.chunk_size}, "
            f"chunks={len(self.chunk_size_history)}, custom={sorted(self.custom_strategies)})"
        )


_CONTROLLED = (ChunkStrategy.TIME_BASED, ChunkStrategy.ADAPTIVE)


def _sized(iterator: Iterator[Any], next_size: Callable[[], int]) -> Iterator[list[Any]]:
    while chunk := list(islice(iterator, max(1, next_size()))):
        yield chunk


def _pack(
    iterator: Iterator[Any],
    cost: Callable[[Any], float],
    budget: Callable[[], float],
    cap: Callable[[], int | None],
) -> Iterator[list[Any]]:
    """Greedy packing: add targets while their summed cost stays within the budget."""
    chunk: list[Any] = []
    used = 0.0
    for target in iterator:
        weight = cost(target)
        if weight < 0:
            raise ValueError(f"a target's weight must be >= 0, got {weight} for {target!r}")
        limit = cap()
        if chunk and (used + weight > budget() or (limit is not None and len(chunk) >= limit)):
            yield chunk
            chunk, used = [], 0.0
        chunk.append(target)
        used += weight
    if chunk:
        yield chunk
