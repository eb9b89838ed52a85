"""map_batches on a real Dask distributed LocalCluster."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from batchpilot.bulk import ItemFailure, map_batches

distributed = pytest.importorskip("dask.distributed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

BatchFunction = Callable[[list[int]], list[int]]  # the fixtures of conftest.py


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    )
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def test_results_come_back_in_order_from_the_cluster(client: Any, double: BatchFunction) -> None:
    run = map_batches(double, range(5000), executor=client)
    assert list(run) == [x * 2 for x in range(5000)]
    assert run.stats()["chunks_processed"] == len(run.batch_size_history)


def test_unordered_results_from_the_cluster(client: Any, double: BatchFunction) -> None:
    out = list(map_batches(double, range(1000), batch_size=50, executor=client, ordered=False))
    assert sorted(out) == [x * 2 for x in range(1000)]


def test_bad_items_are_isolated_on_the_workers(client: Any, reject_sevens: BatchFunction) -> None:
    out = list(map_batches(reject_sevens, range(1, 50), batch_size=16, executor=client))
    failed = [v.item for v in out if isinstance(v, ItemFailure)]
    assert failed == [7, 14, 21, 28, 35, 42, 49]
    assert [v for v in out if not isinstance(v, ItemFailure)] == [x for x in range(1, 50) if x % 7]


def kinds_of_f(items: list[dict[str, Any]]) -> list[str]:
    return [type(item["f"]).__name__ for item in items]


def test_a_chunk_is_one_opaque_payload_dask_does_not_walk(client: Any) -> None:
    # Client.submit walks every dict of its arguments for futures (issue 23 item 6: a
    # third of the driver's CPU); the chunk goes as bytes, so an item reaches fn as it
    # is, a future inside it included (it used to be swapped for its result, 41).
    future = client.submit(lambda: 41)
    assert list(map_batches(kinds_of_f, [{"f": future}] * 3, executor=client)) == ["Future"] * 3


def test_the_client_given_is_left_open(client: Any, double: BatchFunction) -> None:
    list(map_batches(double, range(10), executor=client))
    assert client.status == "running"


def test_an_unpicklable_function_is_a_type_error_before_work(client: Any) -> None:
    lock = threading.Lock()

    def locked(xs: list[int]) -> list[int]:
        with lock:
            return xs

    with pytest.raises(TypeError, match="picklable"):
        map_batches(locked, range(10), executor=client)


def test_executor_dask_starts_and_closes_its_own_local_client(double: BatchFunction) -> None:
    run = map_batches(double, range(100), batch_size=30, executor="dask", workers=1)
    assert list(run) == [x * 2 for x in range(100)]
    assert run.finished


RELEASE = threading.Event()


def wait_for_release(xs: list[int]) -> list[int]:
    if xs[0] > 0:
        RELEASE.wait(10)
    return xs


def test_closing_early_cancels_queued_chunks_and_leaves_the_client_usable(
    client: Any, double: BatchFunction
) -> None:
    run = map_batches(wait_for_release, range(100), batch_size=1, executor=client)
    assert next(run) == 0
    RELEASE.set()  # let the running chunks end; the queued ones are cancelled by close()
    run.close()
    assert list(map_batches(double, range(5), executor=client)) == [0, 2, 4, 6, 8]
