"""BatchProcessorConfig: seed defaults, validation with clear errors; PrioritizedItem order."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from batchpilot.online.config import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessorConfig,
    PrioritizedItem,
)

SEED_DEFAULTS: dict[str, Any] = {
    "initial_batch_size": 32,
    "min_batch_size": 1,
    "max_batch_size": 128,
    "batch_timeout": 0.1,
    "item_timeout": 30.0,
    "max_queue_size": 1000,
    "enable_priority_queue": False,
    "max_workers": 4,
    "min_batch_interval": 0.0,
    "max_batch_memory_mb": None,
    "enable_memory_optimization": True,
    "gc_batch_threshold": 100,
    "memory_warning_threshold": 80.0,
    "memory_critical_threshold": 90.0,
    "enable_adaptive_batching": True,
    "processing_strategy": BatchProcessingStrategy.ADAPTIVE,
    "reduce_batch_on_failure": True,
    "enable_monitoring": True,
    "monitoring_window": 1000,
    "enable_health_monitoring": True,
    "health_check_interval": 30.0,
    "queue_warning_threshold": 500,
    "queue_critical_threshold": 800,
    "max_retries": 3,
    "retry_delay": 1.0,
    "debug_mode": False,
    "collate": "stack",
}


def test_every_seed_field_has_its_seed_default() -> None:
    config = BatchProcessorConfig()
    for name, default in SEED_DEFAULTS.items():
        assert getattr(config, name) == default, name
    assert config.latency_target is None


def test_seed_example_configurations_are_valid() -> None:
    high = BatchProcessorConfig(
        initial_batch_size=128,
        max_batch_size=512,
        batch_timeout=0.05,
        enable_priority_queue=False,
        max_workers=8,
        enable_adaptive_batching=True,
        max_batch_memory_mb=1024,
        enable_memory_optimization=True,
    )
    low = BatchProcessorConfig(
        initial_batch_size=8,
        max_batch_size=32,
        batch_timeout=0.01,
        enable_priority_queue=True,
        min_batch_interval=0.001,
    )
    memory = BatchProcessorConfig(
        initial_batch_size=16,
        max_batch_size=64,
        max_batch_memory_mb=256,
        gc_batch_threshold=32,
        memory_warning_threshold=70.0,
        memory_critical_threshold=85.0,
    )
    assert high.max_batch_bytes == 1024 * 1024 * 1024
    assert low.enable_priority_queue
    assert memory.max_batch_bytes == 256 * 1024 * 1024


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"min_batch_size": 10, "max_batch_size": 5},
            "min_batch_size (10) must be <= max_batch_size",
        ),
        ({"min_batch_size": 0}, "min_batch_size must be >= 1"),
        ({"max_batch_size": 0, "min_batch_size": 0}, "min_batch_size must be >= 1"),
        ({"initial_batch_size": 0}, "initial_batch_size must be >= 1"),
        ({"initial_batch_size": 200}, "initial_batch_size (200) must be within"),
        ({"initial_batch_size": 2, "min_batch_size": 4}, "initial_batch_size (2) must be within"),
        ({"max_queue_size": 0}, "max_queue_size must be >= 1"),
        ({"max_workers": 0}, "max_workers must be >= 1"),
        ({"gc_batch_threshold": 0}, "gc_batch_threshold must be >= 1"),
        ({"monitoring_window": 0}, "monitoring_window must be >= 1"),
        ({"batch_timeout": -0.1}, "batch_timeout must be >= 0"),
        ({"min_batch_interval": -1.0}, "min_batch_interval must be >= 0"),
        ({"retry_delay": -1.0}, "retry_delay must be >= 0"),
        ({"item_timeout": 0.0}, "item_timeout must be > 0"),
        ({"item_timeout": -5.0}, "item_timeout must be > 0"),
        ({"health_check_interval": 0}, "health_check_interval must be > 0"),
        ({"latency_target": -1.0}, "latency_target must be > 0"),
        ({"max_batch_memory_mb": 0}, "max_batch_memory_mb must be > 0"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"memory_warning_threshold": -1.0}, "memory_warning_threshold must be a percentage"),
        ({"memory_critical_threshold": 120.0}, "memory_critical_threshold must be a percentage"),
        (
            {"memory_warning_threshold": 95.0, "memory_critical_threshold": 90.0},
            "memory_warning_threshold (95.0) must be <=",
        ),
        ({"queue_warning_threshold": -1}, "queue_warning_threshold must be >= 0"),
        (
            {"queue_warning_threshold": 900, "queue_critical_threshold": 800},
            "queue_warning_threshold (900) must be <=",
        ),
        ({"processing_strategy": "greedy"}, "processing_strategy must be one of"),
        ({"collate": "zip"}, "unknown collate mode 'zip'"),
        ({"batch_timeout": float("nan")}, "batch_timeout must not be NaN"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BatchProcessorConfig(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_workers": 2.5}, "max_workers must be an int"),
        ({"initial_batch_size": True}, "initial_batch_size must be an int"),
        ({"batch_timeout": "fast"}, "batch_timeout must be a number"),
        ({"health_check_interval": None}, "health_check_interval must be a number"),
        ({"debug_mode": 1}, "debug_mode must be a bool"),
        ({"collate": 3}, "collate must be a mode name or a Collator"),
    ],
)
def test_wrong_types_raise_type_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        BatchProcessorConfig(**changes)


def test_optional_fields_accept_none() -> None:
    config = BatchProcessorConfig(item_timeout=None, max_batch_memory_mb=None, latency_target=None)
    assert config.item_timeout is None
    assert config.max_batch_bytes is None


def test_strategy_names_are_accepted_case_insensitively() -> None:
    config = BatchProcessorConfig(processing_strategy="FIXED")  # type: ignore[arg-type]
    assert config.processing_strategy is BatchProcessingStrategy.FIXED


def test_validate_catches_fields_changed_after_construction() -> None:
    config = BatchProcessorConfig()
    config.max_batch_size = 16  # below initial_batch_size=32
    with pytest.raises(ValueError, match="initial_batch_size"):
        config.validate()


@pytest.mark.parametrize(
    ("changes", "adaptive"),
    [
        ({}, True),
        ({"enable_adaptive_batching": False}, False),
        ({"processing_strategy": BatchProcessingStrategy.FIXED}, False),
    ],
)
def test_adaptive_needs_strategy_and_switch(changes: dict[str, Any], adaptive: bool) -> None:
    assert BatchProcessorConfig(**changes).adaptive is adaptive


def test_priorities_compare_by_urgency() -> None:
    assert BatchPriority.LOW < BatchPriority.NORMAL < BatchPriority.HIGH < BatchPriority.CRITICAL
    assert [p.name for p in BatchPriority] == ["LOW", "NORMAL", "HIGH", "CRITICAL"]


def test_prioritized_items_sort_by_priority_then_fifo() -> None:
    items = [
        PrioritizedItem(BatchPriority.LOW, 0, "low"),
        PrioritizedItem(BatchPriority.HIGH, 1, "high-1"),
        PrioritizedItem(BatchPriority.NORMAL, 2, "normal"),
        PrioritizedItem(BatchPriority.CRITICAL, 3, "critical"),
        PrioritizedItem(BatchPriority.HIGH, 4, "high-2"),
    ]
    assert [i.item for i in sorted(items)] == ["critical", "high-1", "high-2", "normal", "low"]
    assert dataclasses.is_dataclass(items[0])
