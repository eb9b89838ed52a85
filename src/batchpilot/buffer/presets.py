"""The seed's three manager factories: one table of presets and one builder.

Each preset names the configuration a factory starts from; `_build` turns a
preset into a `BatchStateManager`. The three public factories only choose a row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from .config import BatchProcessingConfig
from .manager import BatchStateManager, FlushCallback

__all__ = [
    "create_high_performance_batch_manager",
    "create_memory_efficient_batch_manager",
    "create_optimized_batch_manager",
]

_PRESETS: Mapping[str, Callable[[], BatchProcessingConfig]] = MappingProxyType(
    {
        "optimized": BatchProcessingConfig.from_env,
        "high_performance": partial(
            BatchProcessingConfig,
            max_buffer_size=5000,
            size_threshold=50,
            min_size_threshold=10,
            max_size_threshold=100,
            time_threshold_seconds=60.0,
            priority_time_threshold_seconds=30.0,
            emergency_time_threshold_seconds=15.0,
            performance_target_ms=1000.0,
            throughput_target_eps=50.0,
        ),
        "memory_efficient": partial(
            BatchProcessingConfig,
            max_buffer_size=200,
            size_threshold=10,
            min_size_threshold=5,
            max_size_threshold=25,
            time_threshold_seconds=120.0,
            priority_time_threshold_seconds=60.0,
            emergency_time_threshold_seconds=30.0,
            memory_early_flush_percent=75.0,
            memory_emergency_flush_percent=90.0,
        ),
    }
)
"""Preset name -> a call that builds its configuration (at factory call time)."""


def _build(
    preset: str,
    flush_callback: FlushCallback | None,
    manager_options: dict[str, Any],
    config: BatchProcessingConfig | None = None,
) -> BatchStateManager:
    """A manager configured by ``config``, else by the preset's configuration."""
    chosen = config if config is not None else _PRESETS[preset]()
    return BatchStateManager(flush_config=chosen, flush_callback=flush_callback, **manager_options)


def create_optimized_batch_manager(
    flush_callback: FlushCallback | None = None,
    *,
    config: BatchProcessingConfig | None = None,
    **manager_options: Any,
) -> BatchStateManager:
    """The standard manager: seed defaults, overridden by ``BATCH_*`` variables.

    Args:
        flush_callback: where flushed entries go.
        config: use this instead of `BatchProcessingConfig.from_env`.
        **manager_options: further `BatchStateManager` keyword arguments.
    """
    return _build("optimized", flush_callback, manager_options, config)


def create_high_performance_batch_manager(
    flush_callback: FlushCallback | None = None, **manager_options: Any
) -> BatchStateManager:
    """Larger batches and buffer, faster age triggers, 1 s flush target.

    Buffer 5000; size 50 adaptive in [10, 100]; ages 60/30/15 s; target 1000 ms
    and 50 entries/s.
    """
    return _build("high_performance", flush_callback, manager_options)


def create_memory_efficient_batch_manager(
    flush_callback: FlushCallback | None = None, **manager_options: Any
) -> BatchStateManager:
    """Small buffer and batches, earlier memory flushes.

    Buffer 200; size 10 adaptive in [5, 25]; ages 120/60/30 s; memory early
    flush above 75 %, emergency above 90 %.
    """
    return _build("memory_efficient", flush_callback, manager_options)
