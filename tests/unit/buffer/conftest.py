"""Fixtures shared by the unit tests of the flush buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from batchpilot.buffer import BatchProcessingConfig, BatchStateManager
from batchpilot.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The managers' clock; it starts at 1000 s, so no time reads as "unset" zero."""
    return FakeClock(1000.0)


@pytest.fixture
def managers() -> Iterator[list[BatchStateManager]]:
    """Managers a test makes; each is closed when the test ends."""
    created: list[BatchStateManager] = []
    yield created
    for manager in created:
        manager.close()


def _steady_memory() -> float:
    return 10.0


@pytest.fixture
def make(clock: FakeClock, managers: list[BatchStateManager]) -> Any:
    """Build a manager on ``clock``: config fields and constructor options as keywords.

    ``memory`` is the memory reader (percent); default a steady 10 %, far below
    every memory trigger.
    """

    def build(
        callback: Any = None, memory: Callable[[], float] | None = None, **options: Any
    ) -> BatchStateManager:
        config_fields = {
            k: options.pop(k) for k in list(options) if hasattr(BatchProcessingConfig, k)
        }
        manager = BatchStateManager(
            flush_config=BatchProcessingConfig(**config_fields),
            flush_callback=callback,
            memory_reader=memory or _steady_memory,
            clock=clock,
            **options,
        )
        managers.append(manager)
        return manager

    return build
