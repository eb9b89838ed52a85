"""The public surface: every public name has one documented home, and says so."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

import batchpilot
from batchpilot._core.exports import PUBLIC_MODULES

DOCS = Path(__file__).resolve().parents[1] / "docs"
FACADE = "batchpilot"  # the top level re-exports the most used names of its subpackages


def _public(module_name: str) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    return {name: getattr(module, name) for name in module.__all__}


def _homes() -> dict[int, list[str]]:
    """Every public object (by id) -> the non-facade modules whose __all__ list it."""
    homes: dict[int, list[str]] = {}
    for module_name in sorted(PUBLIC_MODULES - {FACADE}):
        for name, obj in _public(module_name).items():
            if isinstance(obj, (int, float, str, tuple, frozenset, dict)):
                continue  # constants are compared by value, not identity
            homes.setdefault(id(obj), []).append(f"{module_name}.{name}")
    return homes


def test_every_public_module_imports_and_lists_names_that_exist() -> None:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert module.__all__, module_name
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], module_name


def test_no_object_is_public_in_two_modules() -> None:
    doubles = [places for places in _homes().values() if len(places) > 1]
    assert doubles == []


def test_the_facade_only_adds_its_own_names_or_re_exports_a_home() -> None:
    homes = _homes()
    for name, obj in _public(FACADE).items():
        if name == "__version__":
            continue
        home = getattr(obj, "__module__", None)
        if home == FACADE:
            assert id(obj) not in homes, f"{name} is defined for the facade but listed elsewhere"
        else:
            assert home in PUBLIC_MODULES, f"batchpilot.{name} reports private {home}"
            assert f"{home}.{name}" in homes.get(id(obj), []), name


def _classes_and_functions() -> list[tuple[str, str, Any]]:
    found = []
    for module_name in sorted(PUBLIC_MODULES):
        for name, obj in _public(module_name).items():
            if isinstance(obj, type) or inspect.isfunction(obj):
                found.append((module_name, name, obj))
    return found


@pytest.mark.parametrize(
    ("module_name", "name", "obj"),
    _classes_and_functions(),
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_public_classes_and_functions_report_a_public_home(
    module_name: str, name: str, obj: Any
) -> None:
    assert obj.__module__ in PUBLIC_MODULES, f"{module_name}.{name}: {obj.__module__}"
    assert getattr(importlib.import_module(obj.__module__), name) is obj


def test_every_importable_module_outside_the_public_list_is_private() -> None:
    """A module is documented public, or private: under a ``_`` name or inside a public folder."""
    public_folders = PUBLIC_MODULES - {FACADE}
    for info in pkgutil.walk_packages(batchpilot.__path__, "batchpilot."):
        if info.name in PUBLIC_MODULES or info.name == "batchpilot.__main__":
            continue
        parts = info.name.split(".")
        underscored = any(part.startswith("_") for part in parts[1:])
        inside_public_folder = ".".join(parts[:2]) in public_folders
        assert underscored or inside_public_folder, info.name


def test_every_public_module_is_documented() -> None:
    text = "\n".join(page.read_text("utf-8") for page in DOCS.glob("*.md"))
    undocumented = [m for m in PUBLIC_MODULES if not re.search(rf"`{re.escape(m)}\b", text)]
    assert undocumented == []


def test_collator_is_public_and_is_the_protocol_the_engines_accept() -> None:
    from batchpilot import Batcher, Collator
    from batchpilot.types import Collator as TypesCollator

    assert Collator is TypesCollator
    assert Collator.__module__ == "batchpilot.types"

    class Halves(Collator):
        def collate(self, items: Any) -> tuple[Any, Any]:
            return [x / 2 for x in items], None

        def split(self, result: Any, layout: Any, count: int) -> Any:
            return list(result)

    with Batcher(lambda xs: xs, collate=Halves()) as halve:
        assert halve(4) == 2
