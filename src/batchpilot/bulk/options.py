"""`BulkOptions`: every setting of a bulk run, with its default and its check.

`map_batches` takes these fields as keyword arguments (its signature is taken
from this class, so the list of settings is written here only) and documents
each one; it builds one `BulkOptions` and gives it to `BulkRun`. What depends on
the batch function itself (its kind, whether it pickles, grouping by cost) is
checked by `BulkOptions.bind`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from .._core.callables import is_async_callable
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.cost import CostBudget
from .._core.events import BatchListener, BatchRecord, as_listener
from .._core.models import is_model_class
from .._core.retry import NO_RETRY, RetryPolicy
from .._core.sizing import SizeController
from .chunking import make_controller
from .executors import ExecutorSpec, resolve_executor
from .grouping import DEFAULT_SORT_WINDOW, cost_budget, cost_grouped
from .models import model_batch
from .serialize import SERIALIZERS
from .statistics import BulkProgress

__all__ = ["BatchSize", "Binding", "BulkOptions"]

BatchSize = int | Literal["auto"] | SizeController


class Binding(NamedTuple):
    """What one run of a batch function needs beyond its options."""

    function: Callable[[list[Any]], Any]  # what one chunk runs: fn, or fn grouped by cost
    controller: SizeController  # chooses each chunk's size; one per run
    executor: ExecutorSpec  # where the chunks run


@dataclass(frozen=True, kw_only=True)
class BulkOptions:
    """The settings of one bulk run; checked when constructed.

    The fields are the keyword arguments of `map_batches`, described in its
    docstring. The fields after them are derived here, once.

    Raises:
        TypeError, ValueError: a field has the wrong type or is out of range (the
            message names the field).
        ImportError: ``executor="dask"`` or ``"ray"`` without its extra installed.
    """

    batch_size: BatchSize = "auto"
    executor: Any = None
    workers: int | None = None
    job: str | None = None
    retry_failed: bool = False
    quarantine_damaged: bool = False
    serializer: str = "json"
    ordered: bool = True
    progress: bool = False
    fail_fast: bool = False
    retry: RetryPolicy = NO_RETRY
    on_progress: Callable[[BulkProgress], object] | None = None
    listeners: Iterable[BatchListener | Callable[[BatchRecord], object]] = ()
    name: str = ""
    clock: Clock = SYSTEM_CLOCK
    cost: Callable[[Any], float] | None = None
    max_batch_cost: float = math.inf
    padded: bool = False
    sort_window: int = DEFAULT_SORT_WINDOW
    is_oom: Callable[[BaseException], bool] | None = None
    batch_format: str | None = None
    sink: Any = None

    # derived in __post_init__:
    hooks: tuple[BatchListener, ...] = field(init=False, repr=False, compare=False)  # listeners
    spec: ExecutorSpec | None = field(init=False, repr=False, compare=False)  # None: by fn's kind
    budget: CostBudget | None = field(init=False, repr=False, compare=False)  # with cost only
    # With cost= and batch_size a size controller: it sizes the cost cap, in cost units.
    cost_controller: SizeController | None = field(init=False, repr=False, compare=False)
    chunk_size: BatchSize = field(init=False, repr=False, compare=False)  # items of one chunk

    def __post_init__(self) -> None:
        derive = object.__setattr__  # frozen: the derived fields are set once, here
        budget: CostBudget | None = None
        cost_controller: SizeController | None = None
        chunk_size = self.batch_size
        if self.cost is not None:
            budget, chunk_size, cost_controller = cost_budget(
                self.batch_size,
                cost=self.cost,
                max_batch_cost=self.max_batch_cost,
                padded=self.padded,
                sort_window=self.sort_window,
            )
        make_controller(chunk_size)  # raises for a bad batch_size; each run makes its own
        derive(self, "budget", budget)
        derive(self, "cost_controller", cost_controller)
        derive(self, "chunk_size", chunk_size)
        self._check_workers()
        derive(self, "spec", None if self.executor is None else resolve_executor(self.executor))
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")
        if self.job is not None and not isinstance(self.job, str):
            derive(self, "job", str(self.job))  # a path
        self._check_job_flags()
        derive(self, "hooks", tuple(as_listener(hook) for hook in self.listeners))

    def _check_workers(self) -> None:
        workers = self.workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
            raise TypeError(f"workers must be an int or None, got {workers!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")

    def _check_job_flags(self) -> None:
        if not isinstance(self.retry_failed, bool):
            raise TypeError(f"retry_failed must be a bool, got {self.retry_failed!r}")
        if self.serializer not in SERIALIZERS:
            raise ValueError(f"serializer must be one of {SERIALIZERS}, got {self.serializer!r}")
        if self.retry_failed and self.job is None:
            raise ValueError("retry_failed=True needs a job file (job=...) to take failures from")
        if not isinstance(self.quarantine_damaged, bool):
            raise TypeError(f"quarantine_damaged must be a bool, got {self.quarantine_damaged!r}")
        if self.quarantine_damaged and self.job is None:
            raise ValueError("quarantine_damaged=True needs a job file (job=...)")

    @property
    def balance_tail(self) -> bool:
        """Whether chunks shrink at the end of an input of known length (``"auto"`` only)."""
        return self.batch_size == "auto"

    def bind(self, fn: Callable[[list[Any]], Any] | type) -> Binding:
        """Check ``fn`` (a batch function or a model class) against these options and
        give what a run of it needs.

        A model class becomes a `ModelBatch` (set up once per worker); on Ray, named
        by ``executor="ray"``, it runs on an actor pool.

        Raises:
            TypeError: ``fn``'s kind (sync/async) does not suit the executor, it
                cannot be pickled for a process/Dask/Ray executor, or it is a class
                without ``predict``.
            ValueError: ``cost=`` with an ``async def`` function.
        """
        fn, model = _as_function(fn)
        is_async = is_async_callable(fn)
        spec = self.spec or resolve_executor("asyncio" if is_async else "threads")
        if self.budget is not None:
            assert self.cost is not None
            fn = cost_grouped(
                fn,
                self.cost,
                self.budget,
                regroup=self.sort_window > 0,
                is_oom=self.is_oom,
                controller=self.cost_controller,
                clock=None if spec.remote else self.clock,  # a worker's own clock
            )
        if is_async != (spec.kind == "asyncio"):
            needs = "executor='asyncio'" if is_async else "a plain function, not async def"
            raise TypeError(f"{fn!r} with executor={spec.describe()}: this needs {needs}")
        spec.check_picklable(fn)
        return Binding(fn, make_controller(self.chunk_size), _placed(spec, model))

    def bind_partitioned(
        self, fn: Callable[[Any], Any] | type
    ) -> tuple[Callable[[Any], Any], ExecutorSpec]:
        """What a partitioned run of ``fn`` (a batch function or a model class) calls, and
        where its partition tasks run (threads by default; a model on Ray: actors).

        Raises:
            TypeError: ``fn`` is ``async def`` or the executor asyncio (a partition task
                calls ``fn`` where it reads), or ``fn`` cannot be pickled for the executor.
        """
        fn, model = _as_function(fn)
        spec = self.spec or resolve_executor("threads")
        if is_async_callable(fn) or spec.kind == "asyncio":
            raise TypeError(f"{fn!r}: a partitioned run needs a plain function and executor")
        spec.check_picklable(fn)
        return fn, _placed(spec, model)


def _as_function(fn: Callable[..., Any] | type) -> tuple[Callable[..., Any], bool]:
    """``fn``, or a model class's `ModelBatch`; and whether it was a model class."""
    if is_model_class(fn):
        return model_batch(fn), True
    return fn, False


def _placed(spec: ExecutorSpec, model: bool) -> ExecutorSpec:
    """A model on Ray (named by ``executor="ray"``) runs on an actor pool."""
    if model and spec.kind == "ray" and spec.target is None:
        return replace(spec, actors=True)
    return spec
