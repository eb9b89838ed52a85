"""A safe JSON codec for plain data, and the one place that loads pickles.

`TreeCodec` stores None, bool, int, float (NaN and infinities included), str,
list, dict (any plain keys), tuple, bytes and numpy arrays and scalars (raw bytes
plus dtype and shape; never objects); with ``sets=True`` also set, frozenset
and bytearray. What JSON cannot say itself becomes an object tagged
``{"__bp__": kind, ...}``. Reading never runs code from the data. An engine
adds kinds of its own (``encoders``, and ``decoders`` when loading) and keeps
the spelling of its file format (which keys hold a tagged value's members and
bytes, whether text is ASCII-escaped), so files already written load as before.

`unpickle` loads a pickle either trusted (it may run code the data names) or
restricted to plain data (every class and function reference is refused).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = [
    "SERIALIZERS",
    "TAG",
    "Serializer",
    "TreeCodec",
    "Unstorable",
    "UntrustedPickle",
    "unpickle",
]

Serializer = Literal["json", "pickle"]
SERIALIZERS: tuple[Serializer, ...] = ("json", "pickle")
"""The ``serializer=`` choices; the first is the default."""

TAG = "__bp__"
"""The key that marks a JSON object as a tagged value."""

_TAG_TEXT = f'"{TAG}"'
_SCALARS = frozenset({type(None), bool, int, float, str})
_STR = frozenset({str})

_Node = dict[str, Any]


class Unstorable(TypeError):
    """A value that is not plain data; the message describes it."""


class UntrustedPickle(ValueError):
    """A pickle that names a class or function, refused without the opt-in."""


class TreeCodec:
    """Plain data to and from JSON bytes, in one file format's spelling."""

    def __init__(
        self,
        *,
        items_key: str,
        bytes_key: str,
        ascii_only: bool,
        sets: bool = False,
        encoders: Mapping[type, Callable[[Any], _Node]] | None = None,
    ) -> None:
        """A codec for one format.

        Args:
            items_key: the key of a tagged dict's, tuple's or set's members.
            bytes_key: the key of the base64 text of bytes and numpy data.
            ascii_only: escape non-ASCII text (else it is stored as UTF-8).
            sets: store set, frozenset and bytearray too.
            encoders: tagged nodes for values of other classes (by isinstance).
        """
        self._items = items_key
        self._bytes = bytes_key
        self._json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=ascii_only)
        self._sets = sets
        self._encoders = dict(encoders or {})
        self._decoders: dict[str, Callable[[_Node], Any]] = {
            "dict": lambda node: {k: v for k, v in node[items_key]},
            "tuple": lambda node: tuple(node[items_key]),
            "bytes": lambda node: base64.b64decode(node[bytes_key], validate=True),
            "ndarray": self._ndarray,
            "npscalar": lambda node: self._ndarray(node)[()],
        }
        if sets:
            self._decoders |= {
                "set": lambda node: set(node[items_key]),
                "frozenset": lambda node: frozenset(node[items_key]),
                "bytearray": lambda node: bytearray(self._decoders["bytes"](node)),
            }

    def dumps(self, value: Any) -> bytes:
        """``value`` as JSON bytes.

        Raises:
            Unstorable: ``value`` holds something that is not plain data.
        """
        try:
            tree = self._tree(value)
        except RecursionError:
            raise Unstorable("a value nested too deeply (or containing itself)") from None
        text = self._json.encode(tree)  # built once: json.dumps builds one per call
        return text.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes, decoders: Mapping[str, Callable[[_Node], Any]] = {}) -> Any:
        """The value stored in ``data``; ``decoders`` read the caller's own tags.

        Raises:
            ValueError: damaged data or an unknown tag (and what `json` raises).
        """
        text = data.decode("utf-8", "surrogatepass")
        if _TAG_TEXT not in text:  # nothing tagged: no Python call per object
            return json.loads(text)
        table = {**self._decoders, **decoders} if decoders else self._decoders

        def untag(node: _Node) -> Any:
            tag = node.get(TAG)
            if tag is None:
                return node
            decoder = table.get(tag)
            if decoder is None:
                raise ValueError(f"unknown tag {tag!r} (written by a newer batchpilot?)")
            return decoder(node)

        return json.loads(text, object_hook=untag)

    def _tree(self, value: Any) -> Any:
        """``value`` as JSON-ready data, tagging what JSON cannot say itself.

        Raises:
            Unstorable: ``value`` holds something that is not plain data.
        """
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is list:
            if _SCALARS.issuperset(map(type, value)):
                return value
            return [v if type(v) in _SCALARS else self._tree(v) for v in value]
        if kind is dict:
            if TAG not in value and _STR.issuperset(map(type, value)):
                if _SCALARS.issuperset(map(type, value.values())):
                    return value  # JSON says it as it is
                return {k: v if type(v) in _SCALARS else self._tree(v) for k, v in value.items()}
            pairs = [[self._tree(k), self._tree(v)] for k, v in value.items()]
            return {TAG: "dict", self._items: pairs}
        if kind is tuple or (self._sets and kind in (set, frozenset)):
            return {TAG: kind.__name__, self._items: [self._tree(v) for v in value]}
        if kind is bytes or (self._sets and kind is bytearray):
            return {TAG: kind.__name__, self._bytes: base64.b64encode(value).decode("ascii")}
        for cls, encode in self._encoders.items():
            if isinstance(value, cls):
                return encode(value)
        if kind.__module__ == "numpy":
            return self._numpy_tree(value)
        raise Unstorable(f"a {kind.__module__}.{kind.__qualname__} ({value!r:.80})")

    def _numpy_tree(self, value: Any) -> _Node:
        import numpy as np

        if not isinstance(value, np.ndarray | np.generic):
            raise Unstorable(f"a numpy.{type(value).__qualname__} ({value!r:.80})")
        array = np.asarray(value)
        if array.dtype.hasobject or array.dtype.fields is not None:
            raise Unstorable(f"a numpy value of dtype {array.dtype} (objects or fields)")
        return {
            TAG: "ndarray" if isinstance(value, np.ndarray) else "npscalar",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            self._bytes: base64.b64encode(array.tobytes()).decode("ascii"),  # C order
        }

    def _ndarray(self, node: _Node) -> Any:
        import numpy as np

        dtype = np.dtype(node["dtype"])
        if dtype.hasobject:
            raise ValueError(f"stored arrays never hold objects, got dtype {dtype}")
        data = base64.b64decode(node[self._bytes], validate=True)
        return np.frombuffer(data, dtype=dtype).reshape(node["shape"]).copy()


def unpickle(
    data: bytes, *, trusted: bool, renamed: Mapping[tuple[str, str], tuple[str, str]] = {}
) -> Any:
    """The object pickled in ``data``.

    Args:
        data: the pickle.
        trusted: the user opted into pickle: classes and functions load, which
            can run any code the data names. Otherwise only plain data loads.
        renamed: ``(module, name)`` of classes that moved, to where they live now.

    Raises:
        UntrustedPickle: not ``trusted``, and the pickle names a class or function.
    """
    unpickler = _TrustedUnpickler if trusted else _PlainUnpickler
    return unpickler(io.BytesIO(data), renamed).load()


class _TrustedUnpickler(pickle.Unpickler):
    """Loads any pickle, finding moved classes where they live now."""

    def __init__(self, file: io.BytesIO, renamed: Mapping[tuple[str, str], tuple[str, str]]):
        super().__init__(file)
        self._renamed = renamed

    def find_class(self, module: str, name: str) -> Any:
        module, name = self._renamed.get((module, name), (module, name))
        return super().find_class(module, name)


class _PlainUnpickler(_TrustedUnpickler):
    """Loads pickled plain data only: every class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise UntrustedPickle(
            f"the payload is a pickle naming {module}.{name}; loading it would run code. "
            "Open the file with serializer='pickle' only if you trust it"
        )
