"""How a job file stores a chunk's results: a safe JSON codec, or pickle by opt-in.

``"json"`` (the default) stores plain data with `batchpilot._core.codec`:
None, bool, int, float (NaN and infinities included), str, bytes, list, tuple,
dict, and numpy arrays and scalars (raw bytes plus dtype and shape). Reading it
never runs code from the file. A failed item is stored as its index and its
exception's class name and message; its item is taken back from the input on
resume (the engine re-reads, and checks, the stored chunk's items anyway). A
builtin or batchpilot exception comes back as its own class, any other as
`StoredError`.

``"pickle"`` stores any picklable result, but loading a pickle runs whatever
code the file names: use it only for job files you trust. Job files of format
1 (batchpilot 0.1) are pickle files.
"""

from __future__ import annotations

import builtins
import pickle
from typing import Any

from .. import errors as _errors
from .._core.codec import SERIALIZERS, TAG, TreeCodec, Unstorable, unpickle
from ..errors import BatchpilotError
from .runner import ItemFailure

__all__ = ["SERIALIZERS", "StoredError", "decode", "encode"]

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


def _failure_node(failure: ItemFailure[Any]) -> dict[str, Any]:
    error = failure.error
    name = f"{type(error).__module__}.{type(error).__qualname__}"
    if isinstance(error, StoredError):
        name = error.type_name
    return {TAG: "failure", "index": failure.index, "type": name, "message": str(error)}


# Format 2's spelling: every tagged value keeps its members or bytes under "v".
_CODEC = TreeCodec(
    items_key="v", bytes_key="v", ascii_only=True, encoders={ItemFailure: _failure_node}
)


def encode(serializer: str, values: list[Any], start: int) -> bytes:
    """One chunk's results as bytes.

    Raises:
        TypeError: a result the serializer cannot store (the message names it).
    """
    if serializer == "pickle":
        return _pickle_dumps(values, start)
    try:
        return _CODEC.dumps(values)
    except Unstorable as error:
        raise TypeError(
            f"a resumable job (job=...) stores plain data (None, bool, int, float, str, "
            f"bytes, list, tuple, dict, numpy arrays); the chunk starting at item {start} "
            f"returned {error}. Return plain data, or pass serializer='pickle' "
            "(for job files you trust: loading a pickle can run code)."
        ) from None


def decode(serializer: str, data: bytes, start: int, items: list[Any]) -> Any:
    """The stored results of the chunk of ``items`` starting at input index ``start``.

    Raises what the codec raises on bad data (`ValueError` and friends); the
    caller reports it as a damaged file.
    """
    if serializer == "pickle":
        return unpickle(data, trusted=True, renamed=_MOVED_CLASSES)
    return _CODEC.loads(data, {"failure": lambda node: _failure(node, start, items)})


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
