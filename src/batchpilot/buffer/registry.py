"""The registry of live managers behind the seed's global report.

The package's one module-level state. It holds weak references; a manager joins it
when created and leaves it when ``close`` has released it or when it is
garbage-collected. `report` reads it; the manager only joins and leaves, so the
two never import each other.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["members", "register", "unregister"]

_MEMBERS: weakref.WeakSet[Any] = weakref.WeakSet()
_LOCK = threading.Lock()


def register(manager: object) -> None:
    """Add ``manager`` to the global report (weakly referenced)."""
    with _LOCK:
        _MEMBERS.add(manager)


def unregister(manager: object) -> None:
    """Remove ``manager`` from the global report; nothing happens if it is absent."""
    with _LOCK:
        _MEMBERS.discard(manager)


def members() -> list[Any]:
    """The registered managers that are still alive, in no particular order."""
    with _LOCK:
        return list(_MEMBERS)
