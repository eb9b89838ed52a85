"""Where bulk chunks run: one small protocol, six implementations.

Every executor turns ``submit(task, *args)`` into a `concurrent.futures.Future`,
so the bulk engine has one code path for the calling thread, threads,
processes, an asyncio loop, a Dask distributed cluster and Ray. Executors that
run the task in another process (``remote``) need a picklable batch function;
`check_picklable` says so with a clear `TypeError` before any work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EXECUTOR_NAMES",
    "AsyncioExecutor",
    "ChunkExecutor",
    "DaskExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "ThreadExecutor",
    "check_picklable",
    "executor_kind",
    "is_remote",
    "make_executor",
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


def check_picklable(fn: Callable[..., Any], spec: Any) -> None:
    """Raise `TypeError` if ``fn`` cannot be shipped to the workers of executor ``spec``."""
    if not is_remote(spec):
        return
    if executor_kind(spec) == "processes":
        dumps: Callable[[Any], bytes] = pickle.dumps
    else:
        import cloudpickle

        dumps = cloudpickle.dumps
    try:
        dumps(fn)
    except Exception as error:
        raise TypeError(
            f"executor {spec!r} runs the batch function in other processes, so it must "
            f"be picklable; {fn!r} is not ({error}). Define it at module level, or use "
            "executor='threads'."
        ) from error


def executor_kind(spec: Any) -> str:
    """Validate an ``executor=`` argument without starting anything; name its kind."""
    if isinstance(spec, str) and spec in EXECUTOR_NAMES:
        return spec
    if type(spec).__name__ == "Client" and type(spec).__module__.startswith("distributed"):
        return "dask"
    if not isinstance(spec, str) and isinstance(spec, ChunkExecutor):
        return "custom"
    raise ValueError(
        f"executor must be one of {', '.join(EXECUTOR_NAMES)}, a dask.distributed.Client "
        f"or a ChunkExecutor, got {spec!r}"
    )


def is_remote(spec: Any) -> bool:
    """Whether ``spec`` runs tasks in other processes (so functions must pickle)."""
    kind = executor_kind(spec)
    return bool(spec.remote) if kind == "custom" else kind in ("processes", "dask", "ray")


def make_executor(spec: Any, workers: int | None) -> ChunkExecutor:
    """Build the executor ``spec`` names (see `executor_kind`); pass instances through."""
    kind = executor_kind(spec)
    if kind == "custom":
        executor: ChunkExecutor = spec
        return executor
    if kind == "dask":
        return DaskExecutor(None if isinstance(spec, str) else spec, workers)
    factories: dict[str, Callable[[int | None], ChunkExecutor]] = {
        "threads": ThreadExecutor,
        "processes": ProcessExecutor,
        "asyncio": AsyncioExecutor,
        "ray": RayExecutor,
        "serial": lambda workers: SerialExecutor(),
    }
    return factories[kind](workers)
