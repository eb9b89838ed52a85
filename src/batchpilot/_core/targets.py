"""``MODULE:NAME`` strings, as the CLI and the server take a user's function or model.

The current directory is importable, as with ``python -m``; ``NAME`` may be
dotted (``pkg.mod:Model.score``). Anything the import raises, ``SystemExit``
included, becomes one `TargetImportError` naming the module.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["TargetImportError", "import_target"]


class TargetImportError(Exception):
    """A ``MODULE:NAME`` string that does not name an importable object."""


def import_target(spec: str, placeholder: str = "ATTR", noun: str = "attribute") -> Any:
    """Import the object ``spec`` (``"MODULE:NAME"``) names.

    Args:
        spec: the string to import.
        placeholder, noun: how messages call ``NAME`` (the CLI says ``FUNC`` and
            "function", the server ``ATTR`` and "attribute").

    Raises:
        TargetImportError: a malformed spec, a module that does not import, or no
            such name in it.
    """
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise TargetImportError(f"expected MODULE:{placeholder}, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetImportError(f"cannot import module {module_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise TargetImportError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TargetImportError(f"module {module_name!r} has no {noun} {qualname!r}") from None
    return target
