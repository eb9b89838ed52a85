"""Resumable bulk jobs: per-chunk commits, skipping stored chunks, refusing foreign files."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from batchpilot.bulk import ItemFailure, JobMismatchError, map_batches
from batchpilot.bulk.checkpoint import FORMAT_VERSION, JobStore, digest

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A batch function that doubles and remembers which items it ran."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, xs: list[int]) -> list[int]:
        self.seen.extend(xs)
        return [x * 2 for x in xs]


def stored_rows(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT start, stop FROM chunks ORDER BY start").fetchall()


def run_job(fn: Recorder, path: Path, items: range, size: int = 10) -> list[int]:
    return list(map_batches(fn, items, batch_size=size, job=str(path), executor="serial"))


def test_each_chunk_is_committed_and_a_finished_job_is_not_run_again(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    first = Recorder()
    assert run_job(first, path, range(35)) == [x * 2 for x in range(35)]
    assert stored_rows(path) == [(0, 10), (10, 20), (20, 30), (30, 35)]
    again = Recorder()
    run = map_batches(again, range(35), batch_size=10, job=str(path))
    assert list(run) == [x * 2 for x in range(35)]
    assert again.seen == []
    assert run.stats()["items_resumed"] == 35


def test_an_interrupted_job_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    first = Recorder()
    run = map_batches(first, range(50), batch_size=10, job=str(path), executor="serial")
    assert [next(run) for _ in range(15)] == [x * 2 for x in range(15)]
    run.close()  # two chunks were committed
    assert stored_rows(path) == [(0, 10), (10, 20)]
    second = Recorder()
    assert run_job(second, path, range(50)) == [x * 2 for x in range(50)]
    assert second.seen == list(range(20, 50))  # nothing done twice, nothing lost


def test_resume_fills_gaps_between_chunks_stored_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    store = JobStore(path)
    store.check_head(list(range(16)))
    store.commit(10, 20, digest(range(10, 20)), [x * 2 for x in range(10, 20)])
    store.close()
    rest = Recorder()
    assert run_job(rest, path, range(30), size=7) == [x * 2 for x in range(30)]
    assert rest.seen == [*range(10), *range(20, 30)]
    assert stored_rows(path) == [(0, 7), (7, 10), (10, 20), (20, 27), (27, 30)]


def test_failed_items_are_stored_and_come_back_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"

    def picky(xs: list[int]) -> list[int]:
        if 4 in xs:
            raise ValueError("four")
        return xs

    first = list(map_batches(picky, range(8), batch_size=8, job=str(path)))
    again = map_batches(picky, range(8), batch_size=8, job=str(path))
    second = list(again)
    for out in (first, second):
        assert isinstance(out[4], ItemFailure) and str(out[4].error) == "four"
    assert [f.index for f in again.failures] == [4]


def test_a_job_file_of_another_input_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    run_job(Recorder(), path, range(30))
    before = stored_rows(path)
    stranger = Recorder()
    with pytest.raises(JobMismatchError, match="different input"):
        run_job(stranger, path, range(100, 130))
    assert stranger.seen == [] and stored_rows(path) == before


def test_a_change_after_the_head_is_caught_at_the_stored_chunk(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    run_job(Recorder(), path, range(40))
    changed = [*range(25), -1, *range(26, 40)]
    with pytest.raises(JobMismatchError, match="differ"):
        list(map_batches(Recorder(), changed, batch_size=10, job=str(path)))


def test_a_longer_input_for_a_finished_job_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    run_job(Recorder(), path, range(20))
    with pytest.raises(JobMismatchError, match="more than the 20 items"):
        run_job(Recorder(), path, range(25))


def test_a_newer_format_is_refused_at_call_time(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    run_job(Recorder(), path, range(10))
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION + 1),)
        )
    with pytest.raises(JobMismatchError, match="Upgrade batchpilot"):
        map_batches(Recorder(), range(10), job=str(path))
    assert stored_rows(path) == [(0, 10)]


@pytest.mark.parametrize("content", [b"not a database at all" * 100, None])
def test_a_file_that_is_not_a_job_is_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "other.sqlite"
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE users (id INTEGER)")
    else:
        path.write_bytes(content)
    with pytest.raises(JobMismatchError, match="not a batchpilot job"):
        map_batches(Recorder(), range(10), job=str(path))


def test_unpicklable_items_in_a_job_are_a_type_error(tmp_path: Path) -> None:
    items = [lambda: 1, lambda: 2]
    with pytest.raises(TypeError, match="picklable items"):
        list(map_batches(lambda xs: xs, items, job=str(tmp_path / "j.sqlite")))


def test_an_unordered_job_resumes_with_every_item_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    first = Recorder()
    run = map_batches(first, range(60), batch_size=10, job=str(path), ordered=False, workers=2)
    assert len([next(run) for _ in range(25)]) == 25
    run.close()
    stored = {x for start, stop in stored_rows(path) for x in range(start, stop)}
    second = Recorder()
    out = list(map_batches(second, range(60), batch_size=10, job=str(path), ordered=False))
    assert sorted(out) == [x * 2 for x in range(60)]
    assert stored.isdisjoint(second.seen)
    assert sorted(stored | set(second.seen)) == list(range(60))


def test_a_job_in_a_missing_folder_is_a_clear_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        map_batches(Recorder(), range(3), job=str(tmp_path / "nowhere" / "job.sqlite"))


def _score_all_but_three(rows: list[int]) -> list[int]:
    if 3 in rows:
        raise ValueError("3 is bad")
    return [r * 10 for r in rows]


def test_a_job_file_written_by_version_0_1_still_resumes(tmp_path: Path) -> None:
    """0.1 pickled ItemFailure as batchpilot._runner.ItemFailure (the flat layout).

    0.1 files are pickle files, so they resume with the explicit serializer="pickle".
    """
    job = tmp_path / "job.sqlite"
    shutil.copy(Path(__file__).parent / "data" / "job-v0.1.0.sqlite", job)
    assert b"batchpilot._runner" in job.read_bytes()
    calls: list[list[int]] = []

    def counting(rows: list[int]) -> list[int]:
        calls.append(rows)
        return _score_all_but_three(rows)

    results = list(map_batches(counting, range(8), job=str(job), batch_size=4, serializer="pickle"))

    assert calls == []  # every chunk came from the file
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50, 60, 70]
    failure = results[3]
    assert isinstance(failure, ItemFailure)
    assert (failure.index, failure.item, str(failure.error)) == (3, 3, "3 is bad")


def test_a_job_file_of_version_0_1_is_not_unpickled_without_the_opt_in(tmp_path: Path) -> None:
    job = tmp_path / "job.sqlite"
    shutil.copy(Path(__file__).parent / "data" / "job-v0.1.0.sqlite", job)
    before = job.read_bytes()
    with pytest.raises(JobMismatchError, match="serializer='pickle'") as error:
        map_batches(_score_all_but_three, range(8), job=str(job), batch_size=4)
    assert str(job) in str(error.value) and "can run code" in str(error.value)
    assert job.read_bytes() == before
