"""The one JSON encoder of every output row: CLI outputs and partitioned sinks alike.

numpy values become plain numbers and lists; anything else JSON cannot hold
(a datetime, a Decimal, bytes) becomes its ``str()``, so the same value is
always written the same way, whichever output writes it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSON"]


def _json_default(value: Any) -> Any:
    """numpy values as plain numbers and lists; anything else JSON cannot hold as str()."""
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return str(value)


#: One encoder for every JSON value written.
JSON = json.JSONEncoder(default=_json_default)
