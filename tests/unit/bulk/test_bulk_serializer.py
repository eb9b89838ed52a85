"""Job files store results as JSON by default: rich plain data round-trips, nothing runs."""

from __future__ import annotations

import math
import pathlib
import pickle
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchpilot.bulk import ItemFailure, JobFileError, JobMismatchError, StoredError, map_batches
from batchpilot.errors import BatchFailedError

pytestmark = pytest.mark.timeout(30)


class Odd(Exception):
    """An exception class of the user's: stored by name and message."""


RICH: list[Any] = [
    None,
    True,
    2**80,
    -0.5,
    math.inf,
    "text",
    b"\x00\xff",
    (1, (2, "3")),
    [1, [2.5, None]],
    {"a": {"b": [1, 2]}, "__bp__": "not a tag"},
    {1: "one", (2, 3): b"pair"},
    np.arange(6, dtype=np.int16).reshape(2, 3),
    np.array(["ab", "c"]),
    np.array(3.5),
    np.float32(1.25),
    np.datetime64("2026-12-02"),
]


def rich(xs: list[int]) -> list[Any]:
    """Item i gives RICH[i]; items 16.. raise by kind, so failures are stored too."""
    if any(x >= len(RICH) for x in xs):
        kinds = {16: ValueError("bad value"), 17: Odd("odd one"), 18: BatchFailedError("whole")}
        bad = next(x for x in xs if x >= len(RICH))
        raise kinds[bad]
    return [RICH[x] for x in xs]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (np.ndarray, np.generic)):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_plain_data_numpy_and_failures_round_trip_through_a_json_job(tmp_path: Path) -> None:
    job = str(tmp_path / "job.sqlite")
    items = range(len(RICH) + 3)
    first = list(map_batches(rich, items, batch_size=4, job=job))
    calls: list[list[int]] = []

    def never(xs: list[int]) -> list[Any]:
        calls.append(xs)
        return xs

    resumed = list(map_batches(never, items, batch_size=4, job=job))
    assert calls == []
    assert all(same(a, b) for a, b in zip(first[:16], resumed[:16], strict=True))
    assert all(same(a, b) for a, b in zip(RICH, resumed[:16], strict=True))
    value_error, odd, whole = resumed[16:]
    for failure, index in ((value_error, 16), (odd, 17), (whole, 18)):
        assert isinstance(failure, ItemFailure) and (failure.index, failure.item) == (index, index)
    assert type(value_error.error) is ValueError and str(value_error.error) == "bad value"
    assert type(whole.error) is BatchFailedError and str(whole.error) == "whole"
    assert isinstance(odd.error, StoredError) and str(odd.error) == "odd one"
    assert odd.error.type_name.endswith(".Odd")


def test_the_default_serializer_stores_json_not_pickle(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    list(map_batches(lambda xs: [{"x": x} for x in xs], range(3), batch_size=3, job=str(job)))
    with sqlite3.connect(job) as db:
        (payload,) = db.execute("SELECT payload FROM chunks").fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    db.close()
    assert bytes(payload).startswith(b'[{"x":0}') and meta["serializer"] == "json"


def test_an_unstorable_value_is_a_type_error_that_points_to_pickle(tmp_path: Path) -> None:
    job = str(tmp_path / "job.sqlite")
    with pytest.raises(TypeError, match="serializer='pickle'"):
        list(map_batches(lambda xs: [np.array([x, None]) for x in xs], range(2), job=job))
    with pytest.raises(TypeError, match="plain data"):
        list(map_batches(lambda xs: [{x} for x in xs], range(2), job=str(tmp_path / "b")))


class _Marker:
    """Unpickling this creates the marker file: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def plant(job: Path, marker: Path) -> None:
    with sqlite3.connect(job) as db:
        db.execute("UPDATE chunks SET payload = ?", (pickle.dumps([_Marker(marker)] * 3),))
    db.close()


def test_a_crafted_pickle_payload_in_a_job_file_never_runs(tmp_path: Path) -> None:
    job, marker = tmp_path / "job.sqlite", tmp_path / "pwned"
    list(map_batches(lambda xs: xs, range(3), batch_size=3, job=str(job)))
    plant(job, marker)
    with pytest.raises(JobFileError, match="damaged"):
        list(map_batches(lambda xs: xs, range(3), batch_size=3, job=str(job)))
    assert not marker.exists()


def test_a_pickle_job_file_is_not_loaded_without_the_opt_in(tmp_path: Path) -> None:
    job, marker = tmp_path / "job.sqlite", tmp_path / "pwned"
    list(map_batches(lambda xs: xs, range(3), batch_size=3, job=str(job), serializer="pickle"))
    plant(job, marker)
    with pytest.raises(JobMismatchError, match="can run code"):
        map_batches(lambda xs: xs, range(3), batch_size=3, job=str(job))
    assert not marker.exists()
    list(map_batches(lambda xs: xs, range(3), batch_size=3, job=str(job), serializer="pickle"))
    assert marker.exists()  # the planted payload is live: the opt-in is what runs it


def test_a_json_job_is_not_resumed_with_another_serializer(tmp_path: Path) -> None:
    job = str(tmp_path / "job.sqlite")
    list(map_batches(lambda xs: xs, range(3), job=job))
    with pytest.raises(JobMismatchError, match="serializer='json'"):
        map_batches(lambda xs: xs, range(3), job=job, serializer="pickle")


def test_an_unknown_serializer_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="serializer"):
        map_batches(lambda xs: xs, range(3), job=str(tmp_path / "j"), serializer="yaml")


# ------------------------------------------------------------- files already written

# data/job-format2-{json,pickle}.sqlite: written before the codec moved to
# batchpilot._core.codec, by map_batches(fn, range(21), batch_size=4, job=...,
# serializer=...) where fn returned STORED[i] for item i and raised for items
# 18..20 (ValueError, a class of the script's own, BatchFailedError; the pickle
# file's second one is a KeyError, as a pickle names its classes).
STORED: list[Any] = [
    *RICH[:5],
    math.nan,
    "text",
    "naïve \u2603",
    *RICH[6:],
]


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_a_format_2_job_file_written_before_the_core_codec_still_resumes(
    tmp_path: Path, serializer: str
) -> None:
    job = tmp_path / "job.sqlite"
    shutil.copy(Path(__file__).parent / "data" / f"job-format2-{serializer}.sqlite", job)

    def never(xs: list[int]) -> list[Any]:
        raise AssertionError(f"chunk {xs} was computed again, not read from the file")

    resumed = list(map_batches(never, range(21), batch_size=4, job=str(job), serializer=serializer))
    assert math.isnan(resumed[5])  # NaN equals nothing: checked apart
    pairs = list(zip(STORED, resumed[:18], strict=True))
    assert all(same(a, b) for index, (a, b) in enumerate(pairs) if index != 5)
    for failure, index in zip(resumed[18:], (18, 19, 20), strict=True):
        assert isinstance(failure, ItemFailure) and (failure.index, failure.item) == (index, index)
    errors = [failure.error for failure in resumed[18:]]
    assert [str(error) for error in errors[::2]] == ["bad value", "whole"]
    assert [type(error) for error in errors[::2]] == [ValueError, BatchFailedError]
    if serializer == "json":
        assert isinstance(errors[1], StoredError) and errors[1].type_name == "__main__.Odd"
    else:
        assert type(errors[1]) is KeyError
