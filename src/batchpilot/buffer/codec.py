"""How the journal stores an entry: a safe, versioned JSON codec, or pickle by opt-in.

Every stored payload starts with a tag naming its codec and version:

* ``J1:`` (``serializer="json"``, the default): plain data: None, bool, int,
  float (NaN and infinities included), str, bytes, list, tuple, set, frozenset,
  dict (any plain keys), and numpy arrays and scalars (raw bytes plus dtype and
  shape). Reading it never runs code from the file.
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

import base64
import io
import json
import pickle
from typing import Any, Literal

__all__ = ["SERIALIZERS", "Serializer", "UndecodableEntry", "decode", "encode"]

Serializer = Literal["json", "pickle"]
SERIALIZERS: tuple[Serializer, ...] = ("json", "pickle")
"""The ``serializer=`` choices; the first is the default."""

_JSON_TAG = b"J1:"
_PICKLE_TAG = b"P1:"
_TAG = "__bp__"
_SCALARS = (type(None), bool, int, float, str)


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
        text = json.dumps(_tree(entry), separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"the journal stores plain data (None, bool, int, float, str, bytes, list, "
            f"tuple, set, dict, numpy arrays): {exc}; pass serializer='pickle' for "
            "other objects (only for journals you trust: loading a pickle can run code)"
        ) from None
    return _JSON_TAG + text.encode("utf-8", "surrogatepass")


def decode(serializer: Serializer, payload: bytes) -> Any:
    """The entry stored in ``payload``.

    Raises:
        UndecodableEntry: the payload is damaged, of an unknown version, or a
            pickle that needs ``serializer="pickle"`` to load.
    """
    data = bytes(payload)
    try:
        if data.startswith(_JSON_TAG):
            text = data[len(_JSON_TAG) :].decode("utf-8", "surrogatepass")
            return json.loads(text, object_hook=_untag)
        if data.startswith(_PICKLE_TAG):
            return _unpickle(serializer, data[len(_PICKLE_TAG) :])
        return _unpickle(serializer, data)  # batchpilot 0.1 journals: untagged pickles
    except UndecodableEntry:
        raise
    except Exception as exc:
        raise UndecodableEntry(f"{type(exc).__name__}: {exc}") from exc


def _unpickle(serializer: Serializer, data: bytes) -> Any:
    if serializer == "pickle":
        return pickle.loads(data)
    return _PlainUnpickler(io.BytesIO(data)).load()


class _PlainUnpickler(pickle.Unpickler):
    """Loads pickled plain data only: every class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise UndecodableEntry(
            f"the payload is a pickle naming {module}.{name}; loading it would run code. "
            "Open the journal with serializer='pickle' only if you trust the file"
        )


def _tree(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [_tree(item) for item in value]
    if kind is dict:
        if all(type(key) is str for key in value) and _TAG not in value:
            return {key: _tree(item) for key, item in value.items()}
        return {_TAG: "dict", "items": [[_tree(k), _tree(v)] for k, v in value.items()]}
    if kind is tuple:
        return {_TAG: "tuple", "items": [_tree(item) for item in value]}
    if kind in (set, frozenset):
        return {_TAG: kind.__name__, "items": [_tree(item) for item in value]}
    if kind in (bytes, bytearray):
        return {_TAG: kind.__name__, "b64": base64.b64encode(value).decode("ascii")}
    if kind.__module__ == "numpy":
        return _numpy_tree(value)
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} is not plain data")


def _numpy_tree(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind not in "OV":
        array = np.asarray(value)  # tobytes() is C order, whatever the layout
        return {
            _TAG: "ndarray" if isinstance(value, np.ndarray) else "npscalar",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "b64": base64.b64encode(array.tobytes()).decode("ascii"),
        }
    raise TypeError(f"numpy.{type(value).__qualname__} of dtype {value.dtype} is not plain data")


def _untag(node: dict[str, Any]) -> Any:
    tag = node.get(_TAG)
    if tag is None:
        return node
    if tag == "tuple":
        return tuple(node["items"])
    if tag == "dict":
        return {key: value for key, value in node["items"]}
    if tag in ("set", "frozenset"):
        return set(node["items"]) if tag == "set" else frozenset(node["items"])
    if tag in ("bytes", "bytearray"):
        raw = base64.b64decode(node["b64"], validate=True)
        return raw if tag == "bytes" else bytearray(raw)
    if tag in ("ndarray", "npscalar"):
        import numpy as np

        dtype = np.dtype(node["dtype"])
        if dtype.kind in "OV":
            raise UndecodableEntry(f"refusing numpy dtype {dtype}")
        raw = base64.b64decode(node["b64"], validate=True)
        array = np.frombuffer(raw, dtype=dtype).reshape(node["shape"]).copy()
        return array if tag == "ndarray" else array[()]
    raise UndecodableEntry(f"unknown tag {tag!r} (written by a newer batchpilot?)")
