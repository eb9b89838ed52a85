"""An input that raises: every item read before the error is yielded, then the error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpilot.bulk import map_batches

pytestmark = pytest.mark.timeout(30)


class SourceBroke(Exception):
    pass


def source(count: int) -> Iterator[int]:
    yield from range(count)
    raise SourceBroke(f"after {count}")


def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def consume(run: Iterator[int]) -> tuple[list[int], BaseException | None]:
    out: list[int] = []
    try:
        for value in run:
            out.append(value)
    except SourceBroke as error:
        return out, error
    return out, None


async def adouble(xs: list[int]) -> list[int]:
    return double(xs)


@pytest.mark.parametrize("executor", ["serial", "threads", "asyncio"])
@pytest.mark.parametrize("batch_size", ["auto", 64])
def test_every_item_read_before_the_error_is_yielded_then_the_error(
    executor: str, batch_size: int | str
) -> None:
    fn = adouble if executor == "asyncio" else double
    run = map_batches(fn, source(1000), executor=executor, batch_size=batch_size)
    out, error = consume(run)
    assert out == [x * 2 for x in range(1000)]
    assert str(error) == "after 1000"


@pytest.mark.parametrize("count", [1000, 5])  # 5: the error comes inside the job's head
def test_with_a_job_the_items_before_the_error_are_committed_and_resume(
    tmp_path: Path, count: int
) -> None:
    job = str(tmp_path / "job.sqlite")
    out, error = consume(map_batches(double, source(count), batch_size=64, job=job))
    assert out == [x * 2 for x in range(count)] and str(error) == f"after {count}"
    seen: list[int] = []

    def recording(xs: list[int]) -> list[int]:
        seen.extend(xs)
        return double(xs)

    assert list(map_batches(recording, range(count + 10), batch_size=64, job=job)) == [
        x * 2 for x in range(count + 10)
    ]
    assert seen == list(range(count, count + 10))
