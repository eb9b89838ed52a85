"""Where bulk chunks run: one small protocol, six implementations.

Every executor turns ``submit(task, *args)`` into a `concurrent.futures.Future`,
so the bulk engine has one code path for the calling thread, threads,
processes, an asyncio loop, a Dask distributed cluster and Ray. Executors that
run the task in another process (``remote``) need a picklable batch function;
`ExecutorSpec.check_picklable` says so with a clear `TypeError` before any work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EXECUTOR_NAMES",
    "AsyncioExecutor",
    "ChunkExecutor",
    "DaskExecutor",
    "ExecutorSpec",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "ThreadExecutor",
    "resolve_executor",
]

EXECUTOR_NAMES = ("threads", "processes", "asyncio", "dask", "ray", "serial")


@runtime_checkable
class ChunkExecutor(Protocol):
    """What the bulk engine needs from an executor.

    Attributes:
        remote: tasks run in other processes, so functions and items are pickled.
        slots: how many chunks the engine keeps in flight at once.
    """

    remote: bool
    slots: int

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        """Start ``task(*args)``; the future resolves to its return value."""
        ...

    def shutdown(self) -> None:
        """Stop accepting work and release resources; pending tasks are cancelled."""
        ...


class SerialExecutor:
    """Runs each chunk in the calling thread when it is submitted: one chunk at a time.

    For sequential processing, debugging, and deterministic tests.
    """

    remote = False
    slots = 1

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(task(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    def shutdown(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "SerialExecutor()"


def _default_workers() -> int:
    return os.cpu_count() or 1


class _PoolExecutor:
    """Shared body of the `concurrent.futures` pools."""

    remote = False
    pool: cf.Executor

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.slots = 2 * workers

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        return self.pool.submit(task, *args)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class ThreadExecutor(_PoolExecutor):
    """A thread pool: the default; best for I/O and GIL-releasing work."""

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(workers or _default_workers())
        self.pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="batchpilot-bulk")


class ProcessExecutor(_PoolExecutor):
    """A process pool, for CPU-bound pure-Python batch functions."""

    remote = True

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(workers or _default_workers())
        self.pool = cf.ProcessPoolExecutor(self.workers)


async def _cancel_other_tasks() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class AsyncioExecutor:
    """Runs ``async def`` tasks on a private event loop in a background thread.

    ``workers`` is the concurrency limit: at most that many chunks are awaited at once.
    """

    remote = False

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or 8
        self.slots = self.workers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="batchpilot-bulk-asyncio", daemon=True
        )
        self._thread.start()

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        return asyncio.run_coroutine_threadsafe(task(*args), self._loop)

    def shutdown(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(_cancel_other_tasks(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __repr__(self) -> str:
        return f"AsyncioExecutor(workers={self.workers}, running={not self._loop.is_closed()})"


class DaskExecutor:
    """Submits chunks to a `dask.distributed.Client` (given, or a local one created)."""

    remote = True

    def __init__(self, client: Any = None, workers: int | None = None) -> None:
        from dask.distributed import Client

        self._owned = client is None
        self.client = (
            Client(processes=False, n_workers=workers or 1, dashboard_address=":0")
            if client is None
            else client
        )
        cores = sum(self.client.nthreads().values()) or 1
        self.slots = 2 * (workers or cores)
        self._pending: set[Any] = set()

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        result: cf.Future[Any] = cf.Future()
        remote = self.client.submit(task, *args, pure=False)
        self._pending.add(remote)

        def settle(done: Any) -> None:
            self._pending.discard(done)
            if not result.set_running_or_notify_cancel():
                return  # the engine gave up on this chunk
            try:
                value = done.result()
            except BaseException as error:
                result.set_exception(error)
            else:
                result.set_result(value)

        remote.add_done_callback(settle)
        return result

    def shutdown(self) -> None:
        """Cancel chunks still queued or running on the cluster; close an owned client."""
        pending = list(self._pending)
        self._pending.clear()
        if pending:
            self.client.cancel(pending)
        if self._owned:
            self.client.close()

    def __repr__(self) -> str:
        return f"DaskExecutor(client={self.client!r}, owned={self._owned})"


class RayExecutor:
    """Runs chunks as Ray tasks; starts a local Ray runtime if none is running."""

    remote = True

    def __init__(self, workers: int | None = None) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, num_cpus=workers, log_to_driver=False)
        self._ray = ray
        self._tasks: dict[Callable[..., Any], Any] = {}
        self._pending: dict[cf.Future[Any], Any] = {}
        cores = int(ray.available_resources().get("CPU", 1)) or 1
        self.slots = 2 * (workers or cores)

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        remote = self._tasks.get(task)
        if remote is None:
            remote = self._tasks[task] = self._ray.remote(task)
        ref = remote.remote(*args)
        future: cf.Future[Any] = ref.future()
        self._pending[future] = ref
        future.add_done_callback(lambda done: self._pending.pop(done, None))
        return future

    def shutdown(self) -> None:
        """Cancel chunks not finished; leave the Ray runtime running (it is process-wide)."""
        pending = list(self._pending.values())
        self._pending.clear()
        for ref in pending:
            self._ray.cancel(ref)

    def __repr__(self) -> str:
        return f"RayExecutor(slots={self.slots})"


@dataclass(frozen=True)
class ExecutorSpec:
    """An ``executor=`` argument, checked once (see `resolve_executor`).

    Attributes:
        kind: one of `EXECUTOR_NAMES`, or ``"custom"`` for a `ChunkExecutor` instance.
        remote: whether tasks run in other processes (functions and items are pickled).
        target: the dask ``Client`` or `ChunkExecutor` passed in, None for a name.
    """

    kind: str
    remote: bool
    target: Any = None

    def build(self, workers: int | None) -> ChunkExecutor:
        """The executor to run one job on; a passed-in instance is returned as it is."""
        if self.kind == "custom":
            executor: ChunkExecutor = self.target
            return executor
        if self.kind == "dask":
            return DaskExecutor(self.target, workers)
        return _FACTORIES[self.kind](workers)

    def check_picklable(self, fn: Callable[..., Any]) -> None:
        """Raise `TypeError` if ``fn`` cannot be shipped to this executor's workers."""
        if not self.remote:
            return
        if self.kind == "processes":
            dumps: Callable[[Any], bytes] = pickle.dumps
        else:
            import cloudpickle

            dumps = cloudpickle.dumps
        try:
            dumps(fn)
        except Exception as error:
            raise TypeError(
                f"executor {self.describe()} runs the batch function in other processes, so "
                f"it must be picklable; {fn!r} is not ({error}). Define it at module level, "
                "or use executor='threads'."
            ) from error

    def describe(self) -> str:
        """The spec as the user wrote it, for messages."""
        return repr(self.kind if self.target is None else self.target)


_FACTORIES: dict[str, Callable[[int | None], ChunkExecutor]] = {
    "threads": ThreadExecutor,
    "processes": ProcessExecutor,
    "asyncio": AsyncioExecutor,
    "ray": RayExecutor,
    "serial": lambda workers: SerialExecutor(),
}
_REMOTE_KINDS = frozenset({"processes", "dask", "ray"})


def resolve_executor(spec: Any) -> ExecutorSpec:
    """Validate an ``executor=`` argument without starting anything.

    Args:
        spec: a name from `EXECUTOR_NAMES`, a ``dask.distributed.Client``, a
            `ChunkExecutor` instance, or an `ExecutorSpec` (returned as it is).

    Raises:
        ValueError: ``spec`` is none of these.
    """
    if isinstance(spec, ExecutorSpec):
        return spec
    if isinstance(spec, str) and spec in EXECUTOR_NAMES:
        return ExecutorSpec(spec, spec in _REMOTE_KINDS)
    if type(spec).__name__ == "Client" and type(spec).__module__.startswith("distributed"):
        return ExecutorSpec("dask", True, spec)
    if not isinstance(spec, str) and isinstance(spec, ChunkExecutor):
        return ExecutorSpec("custom", bool(spec.remote), spec)
    raise ValueError(
        f"executor must be one of {', '.join(EXECUTOR_NAMES)}, a dask.distributed.Client "
        f"or a ChunkExecutor, got {spec!r}"
    )
