"""Resume semantics: ``retry_failed=True`` re-runs stored failures; one run per job file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchpilot.bulk import ItemFailure, JobFileError, JobInUseError, map_batches

pytestmark = pytest.mark.timeout(30)


class Scorer:
    """Doubles; items in ``bad`` raise. Remembers every item it ran."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.seen: list[int] = []

    def __call__(self, xs: list[int]) -> list[int]:
        self.seen.extend(xs)
        if self.bad.intersection(xs):
            raise ValueError("bad item")
        return [x * 2 for x in xs]


def test_retry_failed_runs_only_the_stored_failures_and_stores_their_new_outcome(
    tmp_path: Path,
) -> None:
    job = str(tmp_path / "job.sqlite")
    first = list(map_batches(Scorer({4, 13}), range(20), batch_size=5, job=job))
    assert [v.index for v in first if isinstance(v, ItemFailure)] == [4, 13]

    plain = Scorer(set())
    again = list(map_batches(plain, range(20), batch_size=5, job=job))
    assert plain.seen == [] and isinstance(again[4], ItemFailure)  # default: not retried

    fixed = Scorer({13})
    run = map_batches(fixed, range(20), batch_size=5, job=job, retry_failed=True)
    retried = list(run)
    assert fixed.seen == [4, 13]
    assert retried[:13] + retried[14:] == [x * 2 for x in range(20) if x != 13]
    failure = retried[13]
    assert isinstance(failure, ItemFailure) and (failure.index, failure.item) == (13, 13)
    assert run.stats()["items_resumed"] == 18 and run.stats()["items_failed"] == 1

    final = Scorer(set())
    run = map_batches(final, range(20), batch_size=5, job=job, retry_failed=True)
    assert list(run) == [x * 2 for x in range(20)]
    assert final.seen == [13]
    untouched = Scorer(set())
    assert list(map_batches(untouched, range(20), batch_size=5, job=job)) == [
        x * 2 for x in range(20)
    ]
    assert untouched.seen == []  # the new outcomes were committed


def test_retry_failed_needs_a_job_file() -> None:
    with pytest.raises(ValueError, match="needs a job file"):
        map_batches(Scorer(set()), range(3), retry_failed=True)


def test_a_second_open_run_of_one_job_file_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    job = str(tmp_path / "job.sqlite")
    first = map_batches(Scorer(set()), range(30), batch_size=10, job=job)
    assert next(first) == 0
    with pytest.raises(JobInUseError, match=f"in use by pid {os.getpid()}") as error:
        map_batches(Scorer(set()), range(30), batch_size=10, job=job)
    assert isinstance(error.value, JobFileError) and error.value.pid == os.getpid()
    assert job in str(error.value)
    first.close()
    assert list(map_batches(Scorer(set()), range(30), batch_size=10, job=job)) == [
        x * 2 for x in range(30)
    ]
