"""How the journal stores an entry: a safe, versioned JSON codec, or pickle by opt-in.

Every stored payload starts with a tag naming its codec and version:

* ``J1:`` (``serializer="json"``, the default): plain data, stored with
  `batchpilot._core.codec`: None, bool, int, float (NaN and infinities
  included), str, bytes, bytearray, list, tuple, set, frozenset, dict (any
  plain keys), and numpy arrays and scalars (raw bytes plus dtype and shape).
  Reading it never runs code from the file.
* ``P1:`` (``serializer="pickle"``): any picklable entry. Loading a pickle runs
  whatever code the file names, so it is done only when the reader opted in with
  ``serializer="pickle"``: use it only for journals you trust.
* no tag: a journal written by batchpilot 0.1, pickled. Without the opt-in such a
  payload is read by an unpickler that refuses every class and function, so the
  plain data of old journals still loads and a crafted payload runs nothing.

A payload that does not decode raises `UndecodableEntry`; the journal moves
its row to quarantine.
"""

from __future__ import annotations

import pickle
from typing import Any

from .._core.codec import SERIALIZERS, Serializer, TreeCodec, Unstorable, unpickle

__all__ = ["SERIALIZERS", "Serializer", "UndecodableEntry", "decode", "encode"]

_JSON_TAG = b"J1:"
_PICKLE_TAG = b"P1:"

# J1's spelling: members under "items", bytes as base64 under "b64", text as UTF-8.
_CODEC = TreeCodec(items_key="items", bytes_key="b64", ascii_only=False, sets=True)


class UndecodableEntry(ValueError):
    """A stored payload that this reader cannot (or may not) decode."""


def encode(serializer: Serializer, entry: Any) -> bytes:
    """``entry`` as a tagged payload.

    Raises:
        TypeError: the serializer cannot store ``entry`` (the message says why).
    """
    if serializer == "pickle":
        try:
            return _PICKLE_TAG + pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(f"pickle failed: {exc}") from exc
    try:
        return _JSON_TAG + _CODEC.dumps(entry)
    except Unstorable as exc:
        raise TypeError(
            f"the journal stores plain data (None, bool, int, float, str, bytes, list, "
            f"tuple, set, dict, numpy arrays), not {exc}; pass serializer='pickle' for "
            "other objects (only for journals you trust: loading a pickle can run code)"
        ) from None


def decode(serializer: Serializer, payload: bytes) -> Any:
    """The entry stored in ``payload``.

    Raises:
        UndecodableEntry: the payload is damaged, of an unknown version, or a
            pickle that needs ``serializer="pickle"`` to load.
    """
    data = bytes(payload)
    trusted = serializer == "pickle"
    try:
        if data.startswith(_JSON_TAG):
            return _CODEC.loads(data[len(_JSON_TAG) :])
        if data.startswith(_PICKLE_TAG):
            return unpickle(data[len(_PICKLE_TAG) :], trusted=trusted)
        return unpickle(data, trusted=trusted)  # batchpilot 0.1 journals: untagged pickles
    except Exception as exc:
        raise UndecodableEntry(f"{type(exc).__name__}: {exc}") from exc
