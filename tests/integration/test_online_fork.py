"""A started online engine keeps working in a child made by a real ``os.fork``.

The child has only the forking thread: the parent's workers, private loop thread
and deadline thread are gone, and a lock one of them held would stay held. The
engine resets itself in the child (`os.register_at_fork`) and starts new threads.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from typing import Any

import pytest

from batchpilot import Batcher

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

CHILD_LIMIT = 15.0  # seconds the child may take before the test calls it hung


def double(items: list[int]) -> list[int]:
    return [item * 2 for item in items]


async def adouble(items: list[int]) -> list[int]:
    return [item * 2 for item in items]


def _in_child(batchers: list[Batcher[Any, Any]]) -> dict[str, Any]:
    """What the child reports: each batcher's result for 21."""
    return {"results": [batcher(21) for batcher in batchers]}


def test_a_started_batcher_serves_calls_in_a_forked_child() -> None:
    plain = Batcher(double, collate="list", max_wait=0)
    coroutine = Batcher(adouble, collate="list", max_wait=0)
    expiring = Batcher(double, collate="list", max_wait=0, item_timeout=30.0)
    batchers: list[Batcher[Any, Any]] = [plain, coroutine, expiring]
    assert [batcher(1) for batcher in batchers] == [2, 2, 2]  # threads started in the parent

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        status = 0
        try:
            report = _in_child(batchers)
            for batcher in batchers:
                batcher.close()
            os.write(write_end, json.dumps(report).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            status = 1
        finally:
            sys.stdout.flush()
            os._exit(status)

    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], CHILD_LIMIT)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the forked child hung for {CHILD_LIMIT} s calling the batchers")
        report = json.loads(os.read(read_end, 65536).decode())
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
        for batcher in batchers:
            batcher.close()

    assert report == {"results": [42, 42, 42]}
    assert [batcher.statistics().closed for batcher in batchers] == [True, True, True]
