"""BatchProcessingConfig: the seed's defaults, BATCH_* variables, and clear errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from batchpilot.buffer import ENV_VARS, BatchProcessingConfig, BatchStateManager


def test_seed_defaults() -> None:
    config = BatchProcessingConfig()
    assert config.max_buffer_size == 1000
    assert config.size_threshold == 25
    assert config.time_threshold_seconds == 300.0
    assert config.enable_adaptive_sizing is True
    assert config.enable_priority_flushing is True
    assert config.enable_performance_monitoring is True
    assert config.performance_target_ms == 2000.0
    assert config.throughput_target_eps == 10.0
    assert (config.priority_time_threshold_seconds, config.emergency_time_threshold_seconds) == (
        120.0,
        60.0,
    )
    assert (config.min_size_threshold, config.max_size_threshold) == (5, 50)
    assert (config.memory_early_flush_percent, config.memory_emergency_flush_percent) == (85, 95)
    assert (config.max_retries, config.retry_delay) == (3, 1.0)
    assert config.overflow == "block"
    assert config.dedup_window == 10_000
    assert config.max_concurrent_flushes == 1


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BatchProcessingConfig().size_threshold = 3  # type: ignore[misc]


def test_env_vars_are_the_seed_six() -> None:
    assert set(ENV_VARS) == {
        "BATCH_MAX_BUFFER_SIZE",
        "BATCH_SIZE_THRESHOLD",
        "BATCH_TIME_THRESHOLD_SEC",
        "BATCH_ENABLE_ADAPTIVE_SIZING",
        "BATCH_ENABLE_PRIORITY_FLUSHING",
        "BATCH_PERFORMANCE_TARGET_MS",
    }


def test_from_env_reads_every_variable() -> None:
    config = BatchProcessingConfig.from_env(
        {
            "BATCH_MAX_BUFFER_SIZE": "500",
            "BATCH_SIZE_THRESHOLD": " 40 ",
            "BATCH_TIME_THRESHOLD_SEC": "12.5",
            "BATCH_ENABLE_ADAPTIVE_SIZING": "FALSE",
            "BATCH_ENABLE_PRIORITY_FLUSHING": "no",
            "BATCH_PERFORMANCE_TARGET_MS": "750",
        }
    )
    assert config.max_buffer_size == 500
    assert config.size_threshold == 40
    assert config.time_threshold_seconds == 12.5
    assert config.enable_adaptive_sizing is False
    assert config.enable_priority_flushing is False
    assert config.performance_target_ms == 750.0


def test_from_env_defaults_when_unset_or_empty_and_overrides_win() -> None:
    assert BatchProcessingConfig.from_env({}) == BatchProcessingConfig()
    assert BatchProcessingConfig.from_env({"BATCH_SIZE_THRESHOLD": ""}).size_threshold == 25
    config = BatchProcessingConfig.from_env({"BATCH_SIZE_THRESHOLD": "30"}, size_threshold=10)
    assert config.size_threshold == 10


def test_from_env_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_MAX_BUFFER_SIZE", "321")
    assert BatchProcessingConfig.from_env().max_buffer_size == 321


@pytest.mark.parametrize("text", ["1", "true", "Yes", "ON"])
def test_truthy_booleans(text: str) -> None:
    env = {"BATCH_ENABLE_PRIORITY_FLUSHING": text}
    assert BatchProcessingConfig.from_env(env).enable_priority_flushing is True


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("BATCH_MAX_BUFFER_SIZE", "lots", "BATCH_MAX_BUFFER_SIZE must be an integer"),
        ("BATCH_MAX_BUFFER_SIZE", "0", "BATCH_MAX_BUFFER_SIZE must be > 0"),
        ("BATCH_SIZE_THRESHOLD", "2.5", "BATCH_SIZE_THRESHOLD must be an integer"),
        ("BATCH_SIZE_THRESHOLD", "-3", "BATCH_SIZE_THRESHOLD must be > 0"),
        ("BATCH_TIME_THRESHOLD_SEC", "soon", "BATCH_TIME_THRESHOLD_SEC must be a number"),
        ("BATCH_TIME_THRESHOLD_SEC", "nan", "BATCH_TIME_THRESHOLD_SEC must be a finite"),
        ("BATCH_TIME_THRESHOLD_SEC", "0", "BATCH_TIME_THRESHOLD_SEC must be > 0"),
        ("BATCH_ENABLE_ADAPTIVE_SIZING", "maybe", "BATCH_ENABLE_ADAPTIVE_SIZING must be a bool"),
        ("BATCH_ENABLE_PRIORITY_FLUSHING", "2", "BATCH_ENABLE_PRIORITY_FLUSHING must be a bool"),
        ("BATCH_PERFORMANCE_TARGET_MS", "fast", "BATCH_PERFORMANCE_TARGET_MS must be a number"),
        ("BATCH_PERFORMANCE_TARGET_MS", "-1", "BATCH_PERFORMANCE_TARGET_MS must be > 0"),
    ],
)
def test_bad_env_values_name_the_variable(var: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchProcessingConfig.from_env({var: value})


def test_inconsistent_env_names_the_variables() -> None:
    with pytest.raises(ValueError, match=r"size_threshold \(80\).*BATCH_SIZE_THRESHOLD='80'"):
        BatchProcessingConfig.from_env({"BATCH_SIZE_THRESHOLD": "80"})
    # Without adaptive sizing the [5, 50] range does not apply.
    env = {"BATCH_SIZE_THRESHOLD": "80", "BATCH_ENABLE_ADAPTIVE_SIZING": "false"}
    assert BatchProcessingConfig.from_env(env).size_threshold == 80


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"max_buffer_size": 0}, ValueError, "max_buffer_size must be > 0"),
        ({"size_threshold": "25"}, TypeError, "size_threshold must be int"),
        ({"size_threshold": True}, TypeError, "size_threshold must be int"),
        ({"enable_adaptive_sizing": 1}, TypeError, "enable_adaptive_sizing must be a bool"),
        ({"time_threshold_seconds": float("inf")}, ValueError, "finite"),
        ({"overflow": "spill"}, ValueError, "overflow must be one of"),
        ({"memory_early_flush_percent": 120.0}, ValueError, r"in \(0, 100\]"),
        ({"memory_early_flush_percent": 96.0}, ValueError, "must be <= memory_emergency"),
        ({"min_size_threshold": 60}, ValueError, "min_size_threshold .* must be <="),
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0"),
        ({"max_concurrent_flushes": 0}, ValueError, "max_concurrent_flushes must be > 0"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        BatchProcessingConfig(**changes)  # type: ignore[arg-type]


def test_optional_timeout_and_int_for_float() -> None:
    config = BatchProcessingConfig(overflow_timeout_seconds=None, time_threshold_seconds=10)
    assert config.overflow_timeout_seconds is None
    assert config.time_threshold_seconds == 10


@pytest.mark.parametrize(
    "changes",
    [
        {"size_threshold": 10_000, "max_buffer_size": 1000, "enable_adaptive_sizing": False},
        {"size_threshold": 51, "max_buffer_size": 50, "enable_adaptive_sizing": False},
    ],
)
def test_a_fixed_size_threshold_above_the_buffer_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"size_threshold \(\d+\) must be <= max_buffer_size"):
        BatchProcessingConfig(**changes)


def test_a_contradiction_made_by_the_managers_buffer_size_is_refused() -> None:
    config = BatchProcessingConfig(size_threshold=500, enable_adaptive_sizing=False)
    message = r"size_threshold \(500\) must be <= max_buffer_size \(100\)"
    with pytest.raises(ValueError, match=message):
        BatchStateManager(max_buffer_size=100, flush_config=config)


def test_a_contradiction_from_the_environment_names_the_variables() -> None:
    env = {
        "BATCH_SIZE_THRESHOLD": "10000",
        "BATCH_MAX_BUFFER_SIZE": "1000",
        "BATCH_ENABLE_ADAPTIVE_SIZING": "false",
    }
    with pytest.raises(ValueError, match=r"max_buffer_size.*BATCH_MAX_BUFFER_SIZE='1000'"):
        BatchProcessingConfig.from_env(env)


def test_the_time_only_recipe_and_the_seed_defaults_are_accepted() -> None:
    time_only = BatchProcessingConfig(
        time_threshold_seconds=1.0, enable_adaptive_sizing=False, size_threshold=1000
    )
    assert time_only.size_threshold == time_only.max_buffer_size == 1000
    seed = BatchProcessingConfig()
    assert (seed.max_buffer_size, seed.size_threshold, seed.time_threshold_seconds) == (
        1000,
        25,
        300.0,
    )
    assert (seed.min_size_threshold, seed.max_size_threshold) == (5, 50)
    with BatchStateManager(max_buffer_size=10) as small:  # adaptive: the buffer caps it
        assert small.config.size_threshold == 25
