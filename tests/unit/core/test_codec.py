"""The core JSON tree codec and pickle loader shared by job files and the journal."""

from __future__ import annotations

import math
import pathlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchpilot._core.codec import TAG, TreeCodec, Unstorable, UntrustedPickle, unpickle

JOB_SPELLING = TreeCodec(items_key="v", bytes_key="v", ascii_only=True)
JOURNAL_SPELLING = TreeCodec(items_key="items", bytes_key="b64", ascii_only=False, sets=True)
BOTH = pytest.mark.parametrize("codec", [JOB_SPELLING, JOURNAL_SPELLING], ids=["v", "items"])

PLAIN: list[Any] = [
    None,
    True,
    2**80,
    -0.5,
    math.inf,
    "naïve \u2603",
    "\ud800 lone surrogate",
    b"\x00\xff",
    (1, (2, "3")),
    [1, [2.5, None], {"k": (1,)}],
    {"a": {"b": [1, 2]}, TAG: "not a tag"},
    {1: "one", (2, 3): b"pair"},
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray | np.generic):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@BOTH
def test_plain_data_round_trips_with_its_types(codec: TreeCodec) -> None:
    values = [
        *PLAIN,
        np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2],  # not contiguous, big-endian
        np.array(["ab", "c"]),
        np.float32(1.25),
        np.datetime64("2026-12-02"),
        np.zeros(2, dtype="V3"),  # raw bytes, no fields
    ]
    back = codec.loads(codec.dumps(values))
    assert same(back, values)
    assert math.isnan(codec.loads(codec.dumps(math.nan)))


def test_each_format_keeps_its_spelling() -> None:
    value = [(1,), b"\x00", "é"]
    assert JOB_SPELLING.dumps(value) == (
        b'[{"__bp__":"tuple","v":[1]},{"__bp__":"bytes","v":"AA=="},"\\u00e9"]'
    )
    assert JOURNAL_SPELLING.dumps(value) == (
        b'[{"__bp__":"tuple","items":[1]},{"__bp__":"bytes","b64":"AA=="},"\xc3\xa9"]'
    )
    with pytest.raises(KeyError):  # one format's spelling is not the other's
        JOURNAL_SPELLING.loads(JOB_SPELLING.dumps((1,)))


def test_sets_and_bytearrays_only_where_the_format_has_them() -> None:
    value = [{1, 2}, frozenset({"a"}), bytearray(b"ab")]
    back = JOURNAL_SPELLING.loads(JOURNAL_SPELLING.dumps(value))
    assert back == value and [type(v) for v in back] == [set, frozenset, bytearray]
    with pytest.raises(Unstorable, match=r"builtins\.set"):
        JOB_SPELLING.dumps([{1, 2}])
    with pytest.raises(ValueError, match="unknown tag 'set'"):
        JOB_SPELLING.loads(b'{"__bp__":"set","v":[1]}')


@BOTH
def test_what_is_not_plain_data_is_unstorable(codec: TreeCodec) -> None:
    with pytest.raises(Unstorable, match="pathlib"):
        codec.dumps({"path": Path("x")})
    with pytest.raises(Unstorable, match="objects or fields"):
        codec.dumps(np.array([1, None]))
    with pytest.raises(Unstorable, match="objects or fields"):
        codec.dumps(np.zeros(1, dtype=[("a", "<f8")]))
    with pytest.raises(Unstorable, match=r"numpy\.ufunc"):
        codec.dumps(np.add)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(Unstorable, match="nested too deeply"):
        codec.dumps(loop)


@BOTH
def test_loading_refuses_unknown_tags_and_object_arrays(codec: TreeCodec) -> None:
    with pytest.raises(ValueError, match="unknown tag 'time machine'"):
        codec.loads(b'[{"__bp__": "time machine"}]')
    key = "v" if codec is JOB_SPELLING else "b64"
    crafted = f'{{"__bp__":"ndarray","dtype":"|O","shape":[1],"{key}":"AAAAAAAAAAA="}}'
    with pytest.raises(ValueError, match="never hold objects"):
        codec.loads(crafted.encode())


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_an_engine_adds_its_own_kinds() -> None:
    codec = TreeCodec(
        items_key="v",
        bytes_key="v",
        ascii_only=True,
        encoders={Point: lambda p: {TAG: "point", "x": p.x}},
    )
    data = codec.dumps([Point(3), (Point(4),)])
    assert data == b'[{"__bp__":"point","x":3},{"__bp__":"tuple","v":[{"__bp__":"point","x":4}]}]'
    back = codec.loads(data, {"point": lambda node: Point(node["x"] * 10)})
    assert [back[0].x, back[1][0].x] == [30, 40]
    with pytest.raises(ValueError, match="unknown tag 'point'"):
        codec.loads(data)  # without the engine's decoder


class _Marker:
    """Unpickling this creates the marker file: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_an_untrusted_pickle_loads_plain_data_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plain = {"a": [1, 2.5, None, (1, b"x")], 3: {4}}
    assert unpickle(pickle.dumps(plain), trusted=False) == plain
    with pytest.raises(UntrustedPickle, match=r"pathlib.*would run code"):
        unpickle(pickle.dumps(_Marker(marker)), trusted=False)
    assert not marker.exists()
    unpickle(pickle.dumps(_Marker(marker)), trusted=True)  # the opt-in: code runs
    assert marker.exists()


def test_a_trusted_pickle_finds_renamed_classes() -> None:
    data = pickle.dumps(Point(5)).replace(b"test_codec", b"test_cod3c")
    with pytest.raises(ModuleNotFoundError):
        unpickle(data, trusted=True)
    renamed = {(__name__.replace("test_codec", "test_cod3c"), "Point"): (__name__, "Point")}
    assert unpickle(data, trusted=True, renamed=renamed).x == 5
