"""batchpilot as contenders of the peers harness (``../shared/bench/peers/bench.py``).

Loaded with ``bench.py --plugin benchmarks/peers_plugin.py``; it runs in the peers'
virtualenv (numpy, batched, ray[serve]) and imports batchpilot from this checkout's
``src/`` (batchpilot itself needs only numpy and psutil).

Contenders, same settings as every peer (``max_batch_size``, ``max_wait`` from the
harness, default 64 and 5 ms):

* ``batchpilot_async``: ``await f(x)`` from asyncio tasks;
* ``batchpilot_thread``: blocking ``f(x)`` from threads.

The batch function receives the stacked (B, 64) array (``collate="stack"``) and
returns the (B, 64) array; batchpilot splits it back into rows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import Contender, register

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import batchpilot
from batchpilot.batching import Batcher


def _debug(batcher: Batcher) -> None:
    """With BATCHPILOT_BENCH_DEBUG=1, print the engine's statistics after each run."""
    if os.environ.get("BATCHPILOT_BENCH_DEBUG"):
        print(f"    {batcher.statistics()}", file=sys.stderr, flush=True)


class _BatchpilotBase(Contender):
    @classmethod
    def version(cls) -> str:
        return f"{batchpilot.__version__} (src)"

    def _make(self) -> Batcher:
        return Batcher(
            self.batch_fn,
            max_batch_size=self.max_batch_size,
            max_wait=self.max_wait_s,
            name="bench",
        )


@register
class BatchpilotAsync(_BatchpilotBase):
    name = "batchpilot_async"
    description = (
        "batchpilot.batch: `await f(x)` from asyncio tasks (one engine, measured placement)"
    )
    supports_async = True

    async def astart(self) -> None:
        self._f = self._make()

    async def submit(self, x):
        return await self._f(x)

    async def astop(self) -> None:
        await self._f.aclose(1.0)
        _debug(self._f)


@register
class BatchpilotThread(_BatchpilotBase):
    name = "batchpilot_thread"
    description = "batchpilot.batch: blocking `f(x)` from threads (worker thread, cost-model waits)"
    supports_thread = True

    def start(self) -> None:
        self._f = self._make()

    def call(self, x):
        return self._f(x)

    def stop(self) -> None:
        self._f.close(1.0)
        _debug(self._f)
