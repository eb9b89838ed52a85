"""Configuration of `batchpilot.chunked` (seed 002): `ChunkConfig` and its enums.

Every seed field keeps its name and default. A few fields the seed's examples need
but its table leaves out are added (``strategy``, which the seed's second example
passes) or make its strategies concrete (``target_chunk_time``, chunk bounds, the
weight function, the storage folder). Values are checked on construction *and on
every later assignment*, because the seed adjusts a live config
(``processor.config.chunk_size //= 2``): an invalid value raises `ConfigError` (a `ValueError`)
naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from .._core.validate import check_flag, check_int, check_number, positive_int
from ..errors import ConfigError

__all__ = ["CHUNK_EXECUTORS", "RESULT_FORMATS", "ChunkConfig", "ChunkStrategy", "ProcessingMode"]

RESULT_FORMATS = ("json", "pickle", "sqlite")
"""Storage formats `ResultStorage` writes."""

CHUNK_EXECUTORS = ("threads", "processes", "dask", "ray")
"""Where PARALLEL, STREAMING and HYBRID chunks run (`batchpilot.map_batches` executors)."""


class ChunkStrategy(Enum):
    """How a target list is cut into chunks.

    Attributes:
        FIXED: ``chunk_size`` targets per chunk (read live, so a changed config
            applies to the next chunk).
        MEMORY_BASED: as many targets as fit into this chunk's share of
            ``max_memory_mb`` (``max_memory_mb / max_concurrent_chunks``), judged by
            each target's estimated size, never more than ``chunk_size``.
        TIME_BASED: sized so a chunk takes about ``target_chunk_time`` seconds,
            from measured chunk durations (the core `TargetLatency` controller).
        ADAPTIVE: TIME_BASED that also halves the chunk when the memory limit is
            exceeded or most of a chunk's targets failed.
        WEIGHTED: targets are packed until their summed weight reaches
            ``chunk_size`` (``ChunkConfig.weight_function``; a target heavier than
            that gets a chunk of its own).
    """

    FIXED = "fixed"
    MEMORY_BASED = "memory_based"
    TIME_BASED = "time_based"
    ADAPTIVE = "adaptive"
    WEIGHTED = "weighted"


class ProcessingMode(Enum):
    """How chunks are run.

    Attributes:
        SEQUENTIAL: one chunk at a time.
        PARALLEL: up to ``max_concurrent_chunks`` chunks at once; chunks are
            finished (stored, reported) in input order.
        STREAMING: like PARALLEL, but each chunk is stored and reported the moment
            it completes, in completion order; the input is read lazily either way.
        HYBRID: as many chunks at once as the memory headroom allows for the
            estimated size of a chunk, between 1 and ``max_concurrent_chunks``.
    """

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"
    STREAMING = "streaming"
    HYBRID = "hybrid"


def _positive_seconds(name: str, value: Any, *, allow_inf: bool = False) -> Any:
    return check_number(name, value, minimum=0, strict=True, allow_inf=allow_inf)


def _strategy(value: Any) -> ChunkStrategy | str:
    if isinstance(value, ChunkStrategy):
        return value
    if isinstance(value, str) and value:
        known = {member.value: member for member in ChunkStrategy}
        return known.get(value.lower(), value)
    raise ConfigError(
        f"strategy must be a ChunkStrategy or the name of a custom strategy, got {value!r}"
    )


def _result_format(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in RESULT_FORMATS:
        raise ConfigError(f"result_format must be one of {RESULT_FORMATS}, got {value!r}")
    return value.lower()


def _executor(value: Any) -> str:
    if value not in CHUNK_EXECUTORS:
        raise ConfigError(f"executor must be one of {CHUNK_EXECUTORS}, got {value!r}")
    return str(value)


def _optional_callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be callable or None, got {value!r}")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "chunk_size": lambda v: positive_int("chunk_size", v),
    "max_memory_mb": lambda v: check_number("max_memory_mb", v, minimum=0, strict=True),
    "max_processing_time": lambda v: _positive_seconds("max_processing_time", v, allow_inf=True),
    "max_concurrent_chunks": lambda v: positive_int("max_concurrent_chunks", v),
    "enable_memory_monitoring": lambda v: check_flag("enable_memory_monitoring", v),
    "enable_progress_tracking": lambda v: check_flag("enable_progress_tracking", v),
    "enable_error_recovery": lambda v: check_flag("enable_error_recovery", v),
    "enable_result_persistence": lambda v: check_flag("enable_result_persistence", v),
    "result_format": _result_format,
    "compression_enabled": lambda v: check_flag("compression_enabled", v),
    "cleanup_interval": lambda v: check_int("cleanup_interval", v, minimum=0),
    "strategy": _strategy,
    "target_chunk_time": lambda v: _positive_seconds("target_chunk_time", v),
    "min_chunk_size": lambda v: positive_int("min_chunk_size", v),
    "max_chunk_size": lambda v: None if v is None else positive_int("max_chunk_size", v),
    "weight_function": lambda v: _optional_callable("weight_function", v),
    "executor": _executor,
    "progress_bar": lambda v: check_flag("progress_bar", v),
    "storage_dir": lambda v: v if v is None or isinstance(v, (str, os.PathLike)) else _bad_dir(v),
}


def _bad_dir(value: Any) -> None:
    raise ConfigError(f"storage_dir must be a path or None, got {value!r}")


@dataclass
class ChunkConfig:
    """Settings of a chunked job (seed 002's fields first, same names and defaults).

    Attributes:
        chunk_size: targets per chunk (FIXED), the cap of MEMORY_BASED chunks, the
            starting size of TIME_BASED/ADAPTIVE and the weight budget of WEIGHTED.
        max_memory_mb: memory limit of the process in MiB (the `MemoryMonitor`'s
            limit and MEMORY_BASED's budget).
        max_processing_time: time limit of one target in seconds. An ``async``
            target still running then is cancelled and fails with `TimeoutError`;
            a sync target cannot be interrupted, so overruns are counted
            (``slow_targets``) and logged.
        max_concurrent_chunks: chunks in flight at once (PARALLEL, STREAMING, the
            cap of HYBRID).
        enable_memory_monitoring: sample memory after every chunk; collect garbage
            when over the limit and every ``cleanup_interval`` chunks.
        enable_progress_tracking: update the `ProgressTracker` (and its callbacks)
            after every chunk.
        enable_error_recovery: a failing target fails alone and the job goes on;
            when False the first failure stops the job and is raised.
        enable_result_persistence: store every finished chunk with `ResultStorage`.
        result_format: ``"json"``, ``"pickle"`` or ``"sqlite"``.
        compression_enabled: gzip the stored chunks.
        cleanup_interval: chunks between garbage collections (0: only when over the
            memory limit).
        strategy: the default chunk strategy (a `ChunkStrategy` or the name of a
            custom strategy registered in ``ChunkProcessor.custom_strategies``).
        target_chunk_time: seconds a TIME_BASED/ADAPTIVE chunk aims to take
            (Beam's default target is 1 s).
        min_chunk_size: smallest TIME_BASED/ADAPTIVE chunk.
        max_chunk_size: largest TIME_BASED/ADAPTIVE chunk; None means
            ``10 * chunk_size``.
        weight_function: a target's weight for WEIGHTED; None uses
            ``target["weight"]`` for mappings that have one, else 1.
        executor: where PARALLEL, STREAMING and HYBRID chunks run: ``"threads"``
            (default; also the only choice for ``async def`` functions, which run
            on the caller's loop), ``"processes"``, ``"dask"`` or ``"ray"`` for
            CPU-bound or distributed work (the function must be picklable).
            SEQUENTIAL always runs in-process.
        progress_bar: show a tqdm progress bar of the targets (stderr).
        storage_dir: where `ResultStorage` writes; None means a new temporary
            folder, created on first use.
    """

    chunk_size: int = 1000
    max_memory_mb: float = 512
    max_processing_time: float = 300.0
    max_concurrent_chunks: int = 4
    enable_memory_monitoring: bool = True
    enable_progress_tracking: bool = True
    enable_error_recovery: bool = True
    enable_result_persistence: bool = True
    result_format: str = "json"
    compression_enabled: bool = False
    cleanup_interval: int = 10
    strategy: ChunkStrategy | str = ChunkStrategy.FIXED
    target_chunk_time: float = 1.0
    min_chunk_size: int = 1
    max_chunk_size: int | None = None
    weight_function: Callable[[Any], float] | None = field(default=None, repr=False)
    executor: str = "threads"
    progress_bar: bool = False
    storage_dir: str | os.PathLike[str] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        check = _CHECKS.get(name)
        super().__setattr__(name, value if check is None else check(value))
        if self.__dict__.get("_checked"):
            self._check_relations()

    def __post_init__(self) -> None:
        self._check_relations()
        object.__setattr__(self, "_checked", True)

    @property
    def effective_max_chunk_size(self) -> int:
        """``max_chunk_size``, or ``10 * chunk_size`` when it is None."""
        return self.max_chunk_size if self.max_chunk_size is not None else 10 * self.chunk_size

    def _check_relations(self) -> None:
        if self.min_chunk_size > self.chunk_size:
            raise ConfigError(
                f"min_chunk_size ({self.min_chunk_size}) must be <= chunk_size ({self.chunk_size})"
            )
        if self.chunk_size > self.effective_max_chunk_size:
            raise ConfigError(
                f"chunk_size ({self.chunk_size}) must be <= max_chunk_size ({self.max_chunk_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (enums by value, the weight function by name)."""
        plain: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, Enum):
                value = value.value
            elif callable(value):
                value = getattr(value, "__qualname__", repr(value))
            elif isinstance(value, os.PathLike):
                value = os.fspath(value)
            plain[spec.name] = value
        return plain
