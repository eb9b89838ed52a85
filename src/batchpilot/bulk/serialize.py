"""How a job file stores a chunk's results: a safe JSON codec, or pickle by opt-in.

``"json"`` (the default) stores plain data: None, bool, int, float (NaN and
infinities included), str, bytes, list, tuple, dict, and numpy arrays and
scalars (raw bytes plus dtype and shape). Reading it never runs code from the
file. A failed item is stored as its index and its exception's class name and
message; its item is taken back from the input on resume (the engine re-reads,
and checks, the stored chunk's items anyway). A builtin or batchpilot exception
comes back as its own class, any other as `StoredError`.

``"pickle"`` stores any picklable result, but loading a pickle runs whatever
code the file names: use it only for job files you trust. Job files of format
1 (batchpilot 0.1) are pickle files.
"""

from __future__ import annotations

import base64
import builtins
import io
import json
import pickle
from collections.abc import Callable
from typing import Any

from .. import errors as _errors
from ..errors import BatchpilotError
from .runner import ItemFailure

__all__ = ["SERIALIZERS", "StoredError", "decode", "encode"]

SERIALIZERS = ("json", "pickle")
"""The ``serializer=`` choices; the first is the default."""

_TAG = "__bp__"
_TAG_BYTES = b'"__bp__"'
_SCALARS = frozenset({type(None), bool, int, float, str})
_STR = frozenset({str})

# Classes stored in pickled job files, by where they lived when the file was written.
_MOVED_CLASSES = {("batchpilot._runner", "ItemFailure"): ("batchpilot.bulk", "ItemFailure")}


class StoredError(BatchpilotError, RuntimeError):
    """A stored failure whose exception class is neither builtin nor batchpilot's.

    Attributes:
        type_name: the original class, as ``module.QualifiedName``.
    """

    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"StoredError({self.type_name}: {self!s})"


def encode(serializer: str, values: list[Any], start: int) -> bytes:
    """One chunk's results as bytes.

    Raises:
        TypeError: a result the serializer cannot store (the message names it).
    """
    if serializer == "pickle":
        return _pickle_dumps(values, start)
    if set(map(type, values)) <= _SCALARS:  # the common case, at C speed
        return json.dumps(values, separators=(",", ":")).encode()
    try:
        tree = [v if type(v) in _SCALARS else _tree(v) for v in values]
    except _Unstorable as error:
        raise TypeError(
            f"a resumable job (job=...) stores plain data (None, bool, int, float, str, "
            f"bytes, list, tuple, dict, numpy arrays); the chunk starting at item {start} "
            f"returned {error}. Return plain data, or pass serializer='pickle' "
            "(for job files you trust: loading a pickle can run code)."
        ) from None
    return json.dumps(tree, separators=(",", ":")).encode()


def decode(serializer: str, data: bytes, start: int, items: list[Any]) -> Any:
    """The stored results of the chunk of ``items`` starting at input index ``start``.

    Raises what the codec raises on bad data (`ValueError` and friends); the
    caller reports it as a damaged file.
    """
    if serializer == "pickle":
        return _JobUnpickler(io.BytesIO(data)).load()
    if _TAG_BYTES not in data:  # nothing tagged: no Python call per object
        return json.loads(data)
    return json.loads(data, object_hook=lambda node: _untag(node, start, items))


class _Unstorable(Exception):
    """A value the JSON codec cannot store; the message describes it."""


def _tree(value: Any) -> Any:
    """``value`` as JSON-ready data, tagging what JSON cannot say itself."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        if _SCALARS.issuperset(map(type, value)):
            return value
        return [v if type(v) in _SCALARS else _tree(v) for v in value]
    if kind is dict:
        if _TAG not in value and _STR.issuperset(map(type, value)):
            if _SCALARS.issuperset(map(type, value.values())):
                return value  # JSON says it as it is
            return {k: v if type(v) in _SCALARS else _tree(v) for k, v in value.items()}
        return {_TAG: "dict", "v": [[_tree(k), _tree(v)] for k, v in value.items()]}
    if kind is tuple:
        return {_TAG: "tuple", "v": [_tree(v) for v in value]}
    if kind is bytes:
        return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, ItemFailure):
        error = value.error
        name = f"{type(error).__module__}.{type(error).__qualname__}"
        if isinstance(error, StoredError):
            name = error.type_name
        return {_TAG: "failure", "index": value.index, "type": name, "message": str(error)}
    if kind.__module__ == "numpy":
        return _numpy_tree(value)
    raise _Unstorable(f"a {kind.__module__}.{kind.__qualname__} ({value!r:.80})")


def _numpy_tree(value: Any) -> dict[str, Any]:
    import numpy as np

    array = np.asarray(value)
    if array.dtype.hasobject or array.dtype.fields is not None:
        raise _Unstorable(f"a numpy value of dtype {array.dtype} (objects or fields)")
    return {
        _TAG: "ndarray" if isinstance(value, np.ndarray) else "npscalar",
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "v": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode(),
    }


def _untag(node: dict[str, Any], start: int, items: list[Any]) -> Any:
    tag = node.get(_TAG)
    if tag is None:
        return node
    if tag == "failure":
        return _failure(node, start, items)
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ValueError(f"unknown stored value tag {tag!r}")
    return decoder(node)


def _ndarray(node: dict[str, Any]) -> Any:
    import numpy as np

    dtype = np.dtype(node["dtype"])
    if dtype.hasobject:
        raise ValueError(f"stored arrays never hold objects, got dtype {dtype}")
    data = base64.b64decode(node["v"], validate=True)
    return np.frombuffer(data, dtype=dtype).reshape(node["shape"]).copy()


def _npscalar(node: dict[str, Any]) -> Any:
    return _ndarray(node)[()]


def _failure(node: dict[str, Any], start: int, items: list[Any]) -> ItemFailure[Any]:
    index = node["index"]
    if type(index) is not int or not 0 <= index - start < len(items):
        raise ValueError(f"a stored failure's index {index!r} is outside its chunk")
    return ItemFailure(index, items[index - start], _error(node))


def _error(node: dict[str, Any]) -> BaseException:
    """The stored exception: its own class if builtin or batchpilot's, else `StoredError`."""
    name, message = str(node["type"]), str(node["message"])
    module, _, qualname = name.rpartition(".")
    namespace = {"builtins": builtins, _errors.__name__: _errors}.get(module)
    cls = getattr(namespace, qualname, None) if namespace is not None else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:  # a class whose constructor wants other arguments
            pass
    return StoredError(message, name)


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda node: {k: v for k, v in node["v"]},
    "tuple": lambda node: tuple(node["v"]),
    "bytes": lambda node: base64.b64decode(node["v"], validate=True),
    "ndarray": _ndarray,
    "npscalar": _npscalar,
}


def _pickle_dumps(values: list[Any], start: int) -> bytes:
    """Pickle a chunk's results; unpicklable exceptions are stored as their repr."""
    try:
        return pickle.dumps(values, protocol=5)
    except Exception:
        cleaned = [
            ItemFailure(v.index, v.item, RuntimeError(repr(v.error)))
            if isinstance(v, ItemFailure)
            else v
            for v in values
        ]
    try:
        return pickle.dumps(cleaned, protocol=5)
    except Exception as error:
        raise TypeError(
            f"a resumable job (job=...) needs picklable results; the chunk starting at "
            f"item {start} returned one that is not: {error}"
        ) from error


class _JobUnpickler(pickle.Unpickler):
    """Loads pickled payloads, finding classes stored under the flat layout of 0.1."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _MOVED_CLASSES.get((module, name), (module, name))
        return super().find_class(module, name)
