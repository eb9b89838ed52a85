"""Fixtures shared by the unit tests of the online engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchpilot._engine.engine import Engine


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """Engines a test makes; each is closed (1 s grace) when the test ends."""
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close(timeout=1.0)
