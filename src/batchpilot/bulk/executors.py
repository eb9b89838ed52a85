"""Where bulk chunks run: one small protocol, six implementations.

Every executor turns ``submit(task, *args)`` into a `concurrent.futures.Future`,
so the bulk engine has one code path for the calling thread, threads,
processes, an asyncio loop, a Dask distributed cluster and Ray. Executors that
run the task in another process (``remote``) need a picklable batch function;
`ExecutorSpec.check_picklable` says so with a clear `TypeError` before any work.

The process pool starts its workers with ``forkserver`` by default (``fork``
copies a process that has threads, which can deadlock a child); pass
``ProcessExecutor(start_method="fork")`` to get ``fork``. Each pool worker
exits as soon as the process that started the pool dies, even by SIGKILL.
Where ``__main__`` has no file (``python -c``, a notebook, the REPL) a new
worker cannot import its functions by name, so tasks are shipped with
cloudpickle, which sends them by value (as joblib's loky does), when it is
installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import importlib.util
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._core.lifeline import exit_with_owner
from .._core.loopthread import LoopThread

__all__ = [
    "EXECUTOR_NAMES",
    "AsyncioExecutor",
    "ChunkExecutor",
    "DaskExecutor",
    "ExecutorSpec",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "ShippingError",
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


DEFAULT_START_METHOD = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)
"""How `ProcessExecutor` starts workers unless told otherwise."""


class ShippingError(TypeError):
    """A task or its arguments could not be pickled to send them to a worker process."""


def _main_has_no_file() -> bool:
    """Whether ``__main__`` is ``python -c``, a notebook or the REPL: not importable by name."""
    return getattr(sys.modules.get("__main__"), "__file__", None) is None


def _shipping_dumps() -> Callable[[Any], bytes] | None:
    """How `ProcessExecutor` pickles a task: cloudpickle in a file-less ``__main__``, else pickle.

    None where ``__main__`` has no file and cloudpickle is not installed: a
    ``__main__`` function then reaches a forkserver/spawn worker only by name,
    which that worker cannot import.
    """
    if not _main_has_no_file():
        return _pickle_dumps
    try:
        import cloudpickle
    except ImportError:
        return None
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class _ByValue(Exception):
    """A task's result or exception sent back with cloudpickle: it unpickles as the value itself.

    The value may be or hold instances of classes of a file-less ``__main__``,
    which pickle would look up by a name the worker's ``__main__`` does not have.
    An exception so that a task's exception can be raised in it.
    """

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __reduce__(self) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
        import cloudpickle

        return pickle.loads, (cloudpickle.dumps(self.value),)


def _run_shipped(payload: bytes, by_value: bool) -> Any:
    """Worker side of `ProcessExecutor.submit` and `DaskExecutor.submit`: unpickle the task
    and its arguments, run it."""
    task, args = pickle.loads(payload)
    if not by_value:
        return task(*args)
    try:
        return _ByValue(task(*args))
    except Exception as error:
        raise _ByValue(error) from error


def _ship_opaque(task: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
    """``(task, args)`` pickled to one `bytes` with cloudpickle, for a cluster's `_run_shipped`.

    Dask's ``Client.submit`` walks every list, tuple and dict of its arguments looking
    for futures (``dask/_task_spec.py:parse_input``), which for a chunk of dicts cost
    more driver CPU than pickling it; it does not look inside bytes.

    Raises:
        ShippingError: the task or its arguments cannot be pickled.
    """
    import cloudpickle

    try:
        payload: bytes = cloudpickle.dumps((task, args), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise ShippingError(f"cannot send a task to a worker process: {error}") from error
    return payload


class ProcessExecutor(_PoolExecutor):
    """A process pool, for CPU-bound pure-Python batch functions.

    Args:
        workers: pool size; default: CPU count.
        start_method: ``"forkserver"`` (default where available, else ``"spawn"``),
            ``"spawn"`` or ``"fork"``. With ``forkserver``/``spawn`` the batch
            function must be importable by name in a new process (defined in a
            module or a script file), or cloudpickle must be installed to send a
            function of ``python -c``, a notebook or the REPL by value.

    The pool is created on first use and again after `shutdown`, so one instance
    can serve several runs. Arguments are pickled in the submitting thread: one
    that cannot be pickled raises `ShippingError` from `submit` at once.
    """

    remote = True

    def __init__(self, workers: int | None = None, start_method: str | None = None) -> None:
        super().__init__(workers or _default_workers())
        method = start_method or DEFAULT_START_METHOD
        if method not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"start_method must be one of {multiprocessing.get_all_start_methods()}, "
                f"got {start_method!r}"
            )
        self.start_method = method
        self._pool: cf.ProcessPoolExecutor | None = None

    @property
    def pool(self) -> cf.ProcessPoolExecutor:  # type: ignore[override]
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context(self.start_method),
                initializer=exit_with_owner,
                initargs=(os.getpid(),),
            )
        return self._pool

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        dumps = _shipping_dumps() or _pickle_dumps
        try:
            payload = dumps((task, args))
        except Exception as error:
            raise ShippingError(f"cannot send a task to a worker process: {error}") from error
        return self.pool.submit(_run_shipped, payload, dumps is not _pickle_dumps)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers}, start_method={self.start_method!r})"


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
        self._thread = LoopThread("batchpilot-bulk-asyncio")  # survives a task's SystemExit

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        return asyncio.run_coroutine_threadsafe(task(*args), self._thread.loop)

    def shutdown(self) -> None:
        if self._thread.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(_cancel_other_tasks(), self._thread.loop).result()
        self._thread.stop(None)

    def __repr__(self) -> str:
        running = not self._thread.loop.is_closed()
        return f"AsyncioExecutor(workers={self.workers}, running={running})"


class DaskExecutor:
    """Submits chunks to a `dask.distributed.Client`: given, connected to, or a local one.

    Args:
        client: A client to use (left open at `shutdown`).
        workers: Without ``client`` and ``address``, the local cluster's workers.
        address: Without ``client``, the scheduler to connect to
            (``tcp://HOST:PORT``); the client is closed at `shutdown`.

    The local cluster runs its workers as threads of this process: it starts in
    0.03 s instead of 0.8 s, ran both a pure-Python and a GIL-releasing function
    faster on 2 cores (docs/cli.md, "Clusters"), and needs no ``__main__`` guard
    in the caller's script, as spawned worker processes would. For CPU-bound
    pure Python use ``executor="processes"`` or a real cluster.

    Each chunk travels as one opaque payload (`_ship_opaque`), so items reach the
    batch function as they are, and the driver spends no time walking them.

    Raises:
        OSError: ``address`` cannot be reached (within 10 s).
    """

    remote = True

    def __init__(
        self, client: Any = None, workers: int | None = None, address: str | None = None
    ) -> None:
        from dask.distributed import Client

        self._owned = client is None
        if client is not None:
            self.client = client
        elif address is not None:
            self.client = Client(address, timeout="10s")
        else:
            self.client = Client(processes=False, n_workers=workers or 1, dashboard_address=":0")
        cores = sum(self.client.nthreads().values()) or 1
        self.slots = 2 * (workers or cores)
        self._pending: set[Any] = set()

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        """Send ``task(*args)`` as one opaque payload (see `_ship_opaque`)."""
        result: cf.Future[Any] = cf.Future()
        remote = self.client.submit(_run_shipped, _ship_opaque(task, args), False, pure=False)
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


class _ChunkActor:
    """A Ray actor that runs chunk tasks; its process keeps the models they load."""

    def run(self, task: Callable[..., Any], *args: Any) -> Any:
        return task(*args)


class RayExecutor:
    """Runs chunks as Ray tasks, or on a pool of Ray actors: on the Ray runtime already
    initialized, else on a new one.

    Args:
        workers: The CPUs of a local runtime started here; with ``actors``, the size
            of the pool (default: as many actors as the cluster's CPUs, and GPUs
            with ``num_gpus``, hold).
        address: Connect to this cluster instead (``auto``, ``HOST:PORT`` or
            ``ray://HOST:PORT``); disconnected at `shutdown`.
        actors: Run chunks on a pool of actors, each a process of its own that
            keeps what the chunks load (a model class is set up once per actor);
            ``map_batches(Model, ..., executor="ray")`` does so. Else Ray tasks.
        num_cpus, num_gpus: What each task or actor reserves (Ray's own names; a
            fraction shares a device).

    The actors start with the first chunk and are killed at `shutdown`, so one
    instance can serve several runs.

    Raises:
        ConnectionError: ``address`` cannot be reached.
    """

    remote = True

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        *,
        actors: bool = False,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> None:
        import ray

        self._connected = address is not None and not ray.is_initialized()
        if self._connected:
            ray.init(address=address, log_to_driver=False)
        elif not ray.is_initialized():
            ray.init(include_dashboard=False, num_cpus=workers, log_to_driver=False)
        self._ray = ray
        self.actors = actors
        self._resources = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self._tasks: dict[Callable[..., Any], Any] = {}
        self._pending: dict[cf.Future[Any], Any] = {}
        self._pool: list[Any] = []  # the actors, started by the first submit
        self._load: dict[int, int] = {}  # chunks in flight per actor (by position)
        self._lock = threading.Lock()
        available = ray.available_resources()
        self.size = workers or self._fitting(available, num_cpus, num_gpus)
        self.slots = 2 * self.size

    @staticmethod
    def _fitting(available: dict[str, float], num_cpus: float, num_gpus: float) -> int:
        """How many tasks or actors of this size the cluster holds at once (at least 1)."""
        fits = [available.get("CPU", 1) / num_cpus] if num_cpus > 0 else []
        if num_gpus > 0:
            fits.append(available.get("GPU", 0) / num_gpus)
        return max(1, int(min(fits, default=available.get("CPU", 1))))

    def submit(self, task: Callable[..., Any], /, *args: Any) -> cf.Future[Any]:
        if self.actors:
            ref, release = self._on_actor(task, args)
        else:
            remote = self._tasks.get(task)
            if remote is None:
                remote = self._tasks[task] = self._ray.remote(task).options(**self._resources)
            ref, release = remote.remote(*args), None
        future: cf.Future[Any] = ref.future()
        self._pending[future] = ref

        def settle(done: cf.Future[Any]) -> None:
            self._pending.pop(done, None)
            if release is not None:
                release()

        future.add_done_callback(settle)
        return future

    def _on_actor(self, task: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Any]:
        """Send the chunk to the actor with the fewest chunks in flight."""
        with self._lock:
            if not self._pool:
                actor_class = self._ray.remote(_ChunkActor).options(**self._resources)
                self._pool = [actor_class.remote() for _ in range(self.size)]
                self._load = dict.fromkeys(range(self.size), 0)
            position = min(self._load, key=self._load.__getitem__)
            self._load[position] += 1
            actor = self._pool[position]

        def release() -> None:
            with self._lock:
                if position in self._load:
                    self._load[position] -= 1

        return actor.run.remote(task, *args), release

    def shutdown(self) -> None:
        """Cancel chunks not finished and kill the actors; disconnect from a cluster
        connected to by ``address``.

        A local Ray runtime stays running (it is process-wide).
        """
        pending = list(self._pending.values())
        self._pending.clear()
        with self._lock:
            pool, self._pool, self._load = self._pool, [], {}
        for actor in pool:
            self._ray.kill(actor)
        if not pool:
            for ref in pending:
                self._ray.cancel(ref)
        if self._connected:
            self._ray.shutdown()
            self._connected = False

    def __repr__(self) -> str:
        mode = f"actors={self.size}" if self.actors else "tasks"
        return f"RayExecutor({mode}, slots={self.slots})"


@dataclass(frozen=True)
class ExecutorSpec:
    """An ``executor=`` argument, checked once (see `resolve_executor`).

    Attributes:
        kind: one of `EXECUTOR_NAMES`, or ``"custom"`` for a `ChunkExecutor` instance.
        remote: whether tasks run in other processes (functions and items are pickled).
        target: the dask ``Client``, `ProcessExecutor`, `RayExecutor` or other
            `ChunkExecutor` passed in; None for a name.
        actors: for ``"ray"`` by name, run on an actor pool (a model class's run).
    """

    kind: str
    remote: bool
    target: Any = None
    actors: bool = False

    def build(self, workers: int | None) -> ChunkExecutor:
        """The executor to run one job on; a passed-in instance is returned as it is."""
        if self.kind == "dask":
            return DaskExecutor(self.target, workers)
        if self.kind == "ray" and self.target is None:
            return RayExecutor(workers, actors=self.actors)
        if self.target is not None:
            executor: ChunkExecutor = self.target
            return executor
        return _FACTORIES[self.kind](workers)

    def check_picklable(self, fn: Callable[..., Any]) -> None:
        """Raise `TypeError` if ``fn`` cannot be shipped to this executor's workers."""
        if not self.remote:
            return
        if self.kind == "processes":
            shipping = _shipping_dumps()
            dumps = shipping or _pickle_dumps
        else:
            import cloudpickle

            shipping = dumps = cloudpickle.dumps
        try:
            dumps(fn)
        except Exception as error:
            raise TypeError(
                f"executor {self.describe()} runs the batch function in other processes, so "
                f"it must be picklable; {fn!r} is not ({error}). Define it at module level, "
                "or use executor='threads'."
            ) from error
        by_name_only = shipping is None and self._start_method() != "fork"
        if by_name_only and getattr(fn, "__module__", None) == "__main__":
            raise TypeError(
                f"executor {self.describe()} starts workers with {self._start_method()!r}, "
                f"which cannot import {fn!r}: it lives in a __main__ without a file (python "
                "-c, a notebook, the REPL). Install cloudpickle to send it by value, move it "
                "into a module, or pass executor=ProcessExecutor(start_method='fork')."
            )

    def _start_method(self) -> str:
        method: str = getattr(self.target, "start_method", DEFAULT_START_METHOD)
        return method

    def describe(self) -> str:
        """The spec as the user wrote it, for messages."""
        return repr(self.kind if self.target is None else self.target)


_FACTORIES: dict[str, Callable[[int | None], ChunkExecutor]] = {
    "threads": ThreadExecutor,
    "processes": ProcessExecutor,
    "asyncio": AsyncioExecutor,
    "serial": lambda workers: SerialExecutor(),
}
_REMOTE_KINDS = frozenset({"processes", "dask", "ray"})
#: The modules of the extra each cluster executor needs (cloudpickle ships the function).
_EXTRA_MODULES = {"dask": ("cloudpickle", "distributed"), "ray": ("cloudpickle", "ray")}


def _require_extra(kind: str) -> None:
    """Raise `ImportError` naming the extra when a module ``kind`` needs is not installed."""
    for module in _EXTRA_MODULES.get(kind, ()):
        if importlib.util.find_spec(module) is None:
            raise ImportError(
                f"executor={kind!r} needs {module}, which is not installed: pip install {module}",
                name=module,
            )


def resolve_executor(spec: Any) -> ExecutorSpec:
    """Validate an ``executor=`` argument without starting anything.

    Args:
        spec: a name from `EXECUTOR_NAMES`, a ``dask.distributed.Client``, a
            `ProcessExecutor` (e.g. with ``start_method="fork"``), a `RayExecutor`
            (e.g. ``actors=True, num_gpus=1``), any other
            `ChunkExecutor` instance, or an `ExecutorSpec` (returned as it is).

    Raises:
        ValueError: ``spec`` is none of these.
        ImportError: ``"dask"`` or ``"ray"`` without its extra installed.
    """
    if isinstance(spec, ExecutorSpec):
        return spec
    if isinstance(spec, str) and spec in EXECUTOR_NAMES:
        _require_extra(spec)
        return ExecutorSpec(spec, spec in _REMOTE_KINDS)
    if type(spec).__name__ == "Client" and type(spec).__module__.startswith("distributed"):
        return ExecutorSpec("dask", True, spec)
    if isinstance(spec, ProcessExecutor):
        return ExecutorSpec("processes", True, spec)
    if isinstance(spec, RayExecutor):
        return ExecutorSpec("ray", True, spec)
    if not isinstance(spec, str) and isinstance(spec, ChunkExecutor):
        return ExecutorSpec("custom", bool(spec.remote), spec)
    raise ValueError(
        f"executor must be one of {', '.join(EXECUTOR_NAMES)}, a dask.distributed.Client "
        f"or a ChunkExecutor, got {spec!r}"
    )
