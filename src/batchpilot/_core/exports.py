"""Public names carry their public home in ``__module__`` (trio's ``fixup_module_metadata``).

A class defined in a private module (``batchpilot.bulk.runner``) but documented and
exported from a public one (``batchpilot.bulk``) reports the public one in reprs,
tracebacks, docs and pickles, so a file written today still loads after an internal
move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PUBLIC_MODULES", "publish"]

# Every documented import path. Anything else under batchpilot is private to its folder.
PUBLIC_MODULES = frozenset(
    {
        "batchpilot",
        "batchpilot.adaptive",
        "batchpilot.batching",
        "batchpilot.buffer",
        "batchpilot.bulk",
        "batchpilot.chunked",
        "batchpilot.cli",
        "batchpilot.db",
        "batchpilot.errors",
        "batchpilot.metrics",
        "batchpilot.online",
        "batchpilot.random_encoder",
        "batchpilot.serve",
        "batchpilot.sinks",
        "batchpilot.sources",
        "batchpilot.testing",
        "batchpilot.types",
    }
)


def publish(module: str, namespace: Mapping[str, Any], names: Iterable[str]) -> None:
    """Point ``__module__`` of each of ``names`` defined in a private module at ``module``.

    Objects whose home is already public (a re-export of another public module) keep it.
    """
    for name in names:
        obj = namespace[name]
        home = getattr(obj, "__module__", None)
        if isinstance(home, str) and home.startswith("batchpilot") and home not in PUBLIC_MODULES:
            try:
                obj.__module__ = module
            except (AttributeError, TypeError):  # a constant such as a tuple or a str
                continue
