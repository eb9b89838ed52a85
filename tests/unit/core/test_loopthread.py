"""`LoopThread`: a task's `SystemExit` or `KeyboardInterrupt` reaches its future, not the loop."""

from __future__ import annotations

import asyncio

import pytest

from batchpilot._core.loopthread import LoopThread

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
def test_the_loop_survives_a_task_that_raises_a_base_exception(
    fatal: type[BaseException],
) -> None:
    async def raising() -> None:
        raise fatal("boom")

    async def answer() -> int:
        return 42

    thread = LoopThread("test-loop")
    try:
        with pytest.raises(fatal, match="boom"):
            asyncio.run_coroutine_threadsafe(raising(), thread.loop).result(timeout=5)
        assert asyncio.run_coroutine_threadsafe(answer(), thread.loop).result(timeout=5) == 42
    finally:
        thread.stop(5)
    assert thread.loop.is_closed()
