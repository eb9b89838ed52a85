"""Damaged, foreign and unusable job files: one clear `JobFileError` naming the file."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import pytest

from batchpilot.bulk import JobFileError, JobMismatchError, map_batches
from batchpilot.errors import BatchpilotError

pytestmark = pytest.mark.timeout(30)

ITEMS = 5000


def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def finished_job(tmp_path: Path, serializer: str = "json") -> Path:
    path = tmp_path / "job.sqlite"
    run = map_batches(double, range(ITEMS), batch_size=100, job=str(path), serializer=serializer)
    assert list(run) == [x * 2 for x in range(ITEMS)]
    return path


def rerun(path: Path, serializer: str = "json") -> list[int]:
    run = map_batches(double, range(ITEMS), batch_size=100, job=str(path), serializer=serializer)
    return list(run)


ENCODE = {"json": lambda value: json.dumps(value).encode(), "pickle": pickle.dumps}


def set_payload(path: Path, start: int, payload: bytes) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE chunks SET payload = ? WHERE start = ?", (payload, start))
    db.close()


def assert_clear(error: pytest.ExceptionInfo[JobFileError], path: Path) -> None:
    assert isinstance(error.value, BatchpilotError)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_a_payload_shorter_than_its_range_is_corruption_not_fewer_results(
    tmp_path: Path, serializer: str
) -> None:
    path = finished_job(tmp_path, serializer)
    set_payload(path, 1200, ENCODE[serializer]([x * 2 for x in range(1200, 1203)]))
    with pytest.raises(JobFileError, match="damaged") as error:
        rerun(path, serializer)
    assert_clear(error, path)
    assert "1200..1300 holds 3 results" in str(error.value)


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_a_payload_that_does_not_decode_is_a_job_file_error(
    tmp_path: Path, serializer: str
) -> None:
    path = finished_job(tmp_path, serializer)
    set_payload(path, 300, b"\x80\x05not a pickle at all")
    with pytest.raises(JobFileError, match="Delete it") as error:
        rerun(path, serializer)
    assert_clear(error, path)


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_a_payload_that_is_not_a_list_is_a_job_file_error(tmp_path: Path, serializer: str) -> None:
    path = finished_job(tmp_path, serializer)
    set_payload(path, 0, ENCODE[serializer]({"a": 1}))
    with pytest.raises(JobFileError, match="holds dict results"):
        rerun(path, serializer)


def test_a_stored_failure_outside_its_chunk_is_a_job_file_error(tmp_path: Path) -> None:
    path = finished_job(tmp_path)
    failure = {"__bp__": "failure", "index": 7, "type": "builtins.ValueError", "message": "x"}
    set_payload(path, 100, json.dumps([failure] + [0] * 99).encode())
    with pytest.raises(JobFileError, match="outside its chunk"):
        rerun(path)


def test_a_job_file_truncated_at_90_percent_is_a_job_file_error(tmp_path: Path) -> None:
    path = finished_job(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 9 // 10])
    with pytest.raises(JobFileError) as error:
        rerun(path)
    assert_clear(error, path)


def test_a_job_file_smashed_mid_file_is_a_job_file_error(tmp_path: Path) -> None:
    path = finished_job(tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(JobFileError) as error:
        rerun(path)
    assert_clear(error, path)


def test_a_job_path_that_is_a_directory_is_a_job_file_error(tmp_path: Path) -> None:
    folder = tmp_path / "job.sqlite"
    folder.mkdir()
    with pytest.raises(JobFileError, match="is a directory") as error:
        map_batches(double, range(10), job=str(folder))
    assert_clear(error, folder)


def test_a_garbage_file_is_a_job_file_error(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(JobMismatchError, match="not a batchpilot job") as error:
        map_batches(double, range(10), job=str(path))
    assert isinstance(error.value, JobFileError)
    assert_clear(error, path)


def local_results(xs: list[int]) -> list[object]:
    def result() -> int:
        return 1

    return [result for _ in xs]


@pytest.mark.parametrize(
    ("serializer", "message"), [("pickle", "needs picklable results"), ("json", "plain data")]
)
def test_an_unstorable_result_in_a_job_is_the_documented_type_error(
    tmp_path: Path, serializer: str, message: str
) -> None:
    job = str(tmp_path / "job.sqlite")
    with pytest.raises(TypeError, match=message) as error:
        list(map_batches(local_results, range(5), job=job, serializer=serializer))
    assert not isinstance(error.value, AttributeError)
    assert "item 0" in str(error.value)


# ------------------------------------------------ quarantine of damaged chunks (opt-in)


class Counting:
    """Doubles; remembers every item it ran."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, xs: list[int]) -> list[int]:
        self.seen.extend(xs)
        return double(xs)


def quarantined_rows(path: Path) -> list[tuple[int, int, str]] | None:
    """The quarantined chunks, or None if the file has no quarantine table."""
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        rows = None
        if "quarantined_chunks" in tables:
            rows = db.execute("SELECT start, stop, reason FROM quarantined_chunks").fetchall()
    db.close()
    return rows


DAMAGE = {
    "garbage": lambda serializer: b"\x80\x05not a pickle at all",
    "too few": lambda serializer: ENCODE[serializer]([2400, 2402, 2404]),
    "not a list": lambda serializer: ENCODE[serializer]({"a": 1}),
}


@pytest.mark.parametrize("serializer", ["json", "pickle"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_with_the_opt_in_a_damaged_chunk_is_quarantined_and_computed_again(
    tmp_path: Path, serializer: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = finished_job(tmp_path, serializer)
    set_payload(path, 1200, DAMAGE[damage](serializer))
    with pytest.raises(JobFileError, match="quarantine_damaged=True") as error:
        rerun(path, serializer)  # without the opt-in: the clear error, nothing changed
    assert (error.value.start, error.value.stop) == (1200, 1300)  # type: ignore[attr-defined]
    assert quarantined_rows(path) is None

    fn = Counting()
    run = map_batches(
        fn, range(ITEMS), batch_size=100, job=str(path), serializer=serializer,
        quarantine_damaged=True,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="batchpilot"):
        assert list(run) == [x * 2 for x in range(ITEMS)]
    assert fn.seen == list(range(1200, 1300))  # only the damaged chunk ran again
    assert run.stats()["chunks_quarantined"] == 1
    assert run.stats()["items_resumed"] == ITEMS - 100
    [(start, stop, reason)] = quarantined_rows(path) or []
    assert (start, stop) == (1200, 1300) and reason
    assert f"job file {path}: the results of items 1200..1300 were damaged" in caplog.text

    again = Counting()  # the recomputed chunk was committed: the file is whole again
    run = map_batches(again, range(ITEMS), batch_size=100, job=str(path), serializer=serializer)
    assert list(run) == [x * 2 for x in range(ITEMS)] and again.seen == []


def test_a_quarantined_crafted_pickle_never_runs(tmp_path: Path) -> None:
    path, marker = finished_job(tmp_path), tmp_path / "pwned"
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE chunks SET payload = ? WHERE start = 0",
            (pickle.dumps([_Marker(marker)] * 100),),
        )
    db.close()
    run = map_batches(double, range(ITEMS), batch_size=100, job=str(path), quarantine_damaged=True)
    assert list(run) == [x * 2 for x in range(ITEMS)]
    assert not marker.exists() and [row[:2] for row in quarantined_rows(path) or []] == [(0, 100)]


class _Marker:
    """Unpickling this creates the marker file: a stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (Path(self.path),))


def test_the_opt_in_does_not_hide_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    path = finished_job(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 9 // 10])
    with pytest.raises(JobFileError, match="Delete it") as error:
        list(map_batches(double, range(ITEMS), batch_size=100, job=str(path),
                         quarantine_damaged=True))  # fmt: skip
    assert_clear(error, path)


def test_quarantine_damaged_needs_a_job_file() -> None:
    with pytest.raises(ValueError, match="needs a job file"):
        map_batches(double, range(3), quarantine_damaged=True)
