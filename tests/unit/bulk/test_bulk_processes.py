"""The process executor: forkserver by default, fork on request, bad items fail alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from batchpilot.bulk import ItemFailure, ProcessExecutor, map_batches
from batchpilot.bulk.executors import DEFAULT_START_METHOD

pytestmark = pytest.mark.timeout(60)


def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


def parent_pids(xs: list[int]) -> list[int]:
    return [os.getppid() for _ in xs]


def test_an_unpicklable_item_fails_alone_and_the_rest_of_the_run_goes_on() -> None:
    items: list[object] = list(range(9))
    items[4] = threading.Lock()
    out = list(map_batches(double, items, batch_size=3, executor="processes", workers=2))
    assert out[:4] + out[5:] == [0, 2, 4, 6, 10, 12, 14, 16]
    failure = out[4]
    assert isinstance(failure, ItemFailure) and failure.index == 4
    assert isinstance(failure.error, TypeError)
    assert "item 4 cannot be pickled" in str(failure.error)


def test_a_chunk_of_only_unpicklable_items_fails_item_by_item() -> None:
    items = [threading.Lock(), threading.Lock(), 7]
    run = map_batches(double, items, batch_size=2, executor="processes", workers=1)
    out = list(run)
    assert [f.index for f in run.failures] == [0, 1] and out[2] == 14
    assert run.stats()["items_failed"] == 2


def test_with_fail_fast_an_unpicklable_item_raises_the_type_error() -> None:
    items = [1, threading.Lock()]
    with pytest.raises(TypeError, match="cannot send"):
        list(map_batches(double, items, executor="processes", workers=1, fail_fast=True))


def test_workers_start_by_forkserver_by_default_and_by_fork_on_request() -> None:
    assert DEFAULT_START_METHOD == "forkserver" and ProcessExecutor().start_method == "forkserver"
    served = list(map_batches(parent_pids, range(4), executor="processes", workers=2))
    assert os.getpid() not in served  # the fork server is their parent
    forked = ProcessExecutor(2, start_method="fork")
    assert set(map_batches(parent_pids, range(4), executor=forked)) == {os.getpid()}
    assert list(map_batches(double, range(3), executor=forked)) == [0, 2, 4]  # reusable


def test_an_unknown_start_method_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="start_method"):
        ProcessExecutor(start_method="teleport")


MAIN_ONLY = textwrap.dedent(
    """
    import sys
    from batchpilot.bulk import ProcessExecutor, map_batches

    def triple(xs):
        return [x * 3 for x in xs]

    pulled = []
    def items():
        for x in range(5):
            pulled.append(x)
            yield x

    try:
        print("ran", list(map_batches(triple, items(), executor="processes", workers=2)))
    except TypeError as error:
        print("refused", len(pulled), error)
    forked = ProcessExecutor(1, start_method="fork")
    print("fork", list(map_batches(triple, range(3), executor=forked)))
    """
)
# Hides cloudpickle, as in an environment without it.
WITHOUT_CLOUDPICKLE = "import sys; sys.modules['cloudpickle'] = None\n"


def _python_c(script: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_function_of_python_c_runs_in_forkserver_workers_by_cloudpickle() -> None:
    ran, forked = _python_c(MAIN_ONLY)
    assert ran == "ran [0, 3, 6, 9, 12]"
    assert forked == "fork [0, 3, 6]"


MAIN_CLASSES = textwrap.dedent(
    """
    from batchpilot.bulk import ItemFailure, map_batches

    class Odd(Exception):
        pass

    class Box:
        def __init__(self, value):
            self.value = value

    def boxed(xs):
        if any(x % 2 for x in xs):
            raise Odd(xs)
        return [Box(x) for x in xs]

    out = list(map_batches(boxed, range(4), batch_size=2, executor="processes", workers=1))
    print([o.value if type(o) is Box else type(o.error) is Odd for o in out])
    try:
        list(map_batches(boxed, [1], executor="processes", workers=1, fail_fast=True))
    except Odd as error:
        print("raised", error)
    print(list(map_batches(lambda xs: [x + 1 for x in xs], range(3), executor="processes")))
    """
)


def test_results_and_errors_of_python_c_classes_come_back_from_workers() -> None:
    assert _python_c(MAIN_CLASSES) == ["[0, True, 2, True]", "raised [1]", "[1, 2, 3]"]


def test_without_cloudpickle_a_function_of_python_c_is_refused_before_work_unless_fork() -> None:
    refused, forked = _python_c(WITHOUT_CLOUDPICKLE + MAIN_ONLY)
    assert refused.startswith("refused 0 ") and "start_method='fork'" in refused
    assert "cloudpickle" in refused
    assert forked == "fork [0, 3, 6]"
