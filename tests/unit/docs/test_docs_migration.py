"""Every batchpilot name that docs/migration.md maps a seed name to must exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

MIGRATION = Path(__file__).resolve().parents[3] / "docs" / "migration.md"
NAMES = sorted(set(re.findall(r"`(batchpilot(?:\.\w+)+)`", MIGRATION.read_text("utf-8"))))


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted``, then follow attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


def test_the_migration_guide_names_batchpilot_objects() -> None:
    assert len(NAMES) > 40


@pytest.mark.parametrize("dotted", NAMES)
def test_each_batchpilot_name_in_the_migration_guide_exists(dotted: str) -> None:
    assert resolve(dotted) is not None
