"""map_batches on a real local Ray runtime (ray.init, 2 CPUs, no dashboard)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from batchpilot.bulk import ItemFailure, map_batches

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BatchFunction = Callable[[list[int]], list[int]]  # the fixtures of conftest.py


@pytest.fixture(scope="module", autouse=True)
def ray_runtime() -> Iterator[None]:
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started_here:
        ray.shutdown()


def test_results_come_back_in_order_from_ray_tasks(double: BatchFunction) -> None:
    run = map_batches(double, range(3000), batch_size=500, executor="ray")
    assert list(run) == [x * 2 for x in range(3000)]
    assert run.batch_size_history == [500] * 6


def test_bad_items_are_isolated_in_ray_tasks(reject_sevens: BatchFunction) -> None:
    out = list(map_batches(reject_sevens, range(1, 30), batch_size=10, executor="ray"))
    failures = [v for v in out if isinstance(v, ItemFailure)]
    assert [(f.index, f.item) for f in failures] == [(6, 7), (13, 14), (20, 21), (27, 28)]
    assert all(isinstance(f.error, ValueError) for f in failures)


def test_an_unpicklable_function_is_a_type_error_before_work() -> None:
    lock = threading.Lock()

    def locked(xs: list[int]) -> list[int]:
        with lock:
            return xs

    with pytest.raises(TypeError, match="picklable"):
        map_batches(locked, range(10), executor="ray")


def test_closing_early_stops_the_run_and_ray_stays_usable(double: BatchFunction) -> None:
    run = map_batches(double, range(1000), batch_size=10, executor="ray")
    assert next(run) == 0
    run.close()
    assert list(run) == []
    assert list(map_batches(double, range(5), executor="ray")) == [0, 2, 4, 6, 8]
