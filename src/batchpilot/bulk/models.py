"""A model class in a bulk run: instantiated and set up once per worker, reused for every chunk.

`map_batches(Model, items)` takes a model class (`batchpilot._core.models`: the
contract of `batchpilot serve`) in place of a batch function. The run's batch
function is then a `ModelBatch`: each call asks for the model (`ModelCache.get`),
which instantiates the class and calls ``setup()`` the first time, under a lock,
so tasks running at once in one process never set it up twice; then calls its
``predict``.

Where the instance lives:

* threads, asyncio, serial: in the run (the `ModelBatch` the driver holds has a
  cache of its own), so it is set up once per run and dropped with it;
* processes, Dask, Ray: a `ModelBatch` sent to another process leaves that cache
  behind, and finds the model in the process's own cache (`model_instance`), keyed
  by the `ModelSpec`'s token: a hash of the pickled class and its arguments, so
  every chunk of a run, and the runs of the same model on a long-lived Dask worker,
  share one instance per worker process. A process keeps its `MODELS_PER_PROCESS`
  latest models. On Ray a model run uses an actor pool (`RayExecutor(actors=True)`),
  so each actor is a process holding one instance.

Setups are counted where they happen (`take_setups`, per thread), sent back with
each chunk's result, and summed in ``BulkRun.statistics().model_setups``.

A task of one's own (the partition tasks) gets the model with ``model_instance(spec)``.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core.models import instantiate, predict_is_async, set_up
from ..errors import BatchpilotError

__all__ = [
    "MODELS_PER_PROCESS",
    "AsyncModelBatch",
    "ModelBatch",
    "ModelCache",
    "ModelSetupError",
    "ModelSpec",
    "model_batch",
    "model_instance",
    "model_spec",
    "take_setups",
]

MODELS_PER_PROCESS = 2
"""How many models (distinct `ModelSpec` tokens) one worker process keeps loaded."""


class ModelSetupError(BatchpilotError):
    """Instantiating the model class or its ``setup()`` raised (the cause); every item of
    the calls that needed it fails with this error, and setup is not retried by them."""


@dataclass(frozen=True)
class ModelSpec:
    """A model class to load in whatever process runs a task; small and picklable.

    Attributes:
        cls: the model class.
        init: keyword arguments of its constructor.
        token: names the model in each process's cache (see `model_spec`).
    """

    cls: type
    init: Mapping[str, Any] = field(default_factory=dict)
    token: str = ""

    def load(self) -> Any:
        """A new instance, set up."""
        model = instantiate(self.cls, self.init)
        set_up(model)
        return model


def _token(cls: type, init: Mapping[str, Any]) -> str:
    """A hash of ``(cls, init)`` pickled (by value with cloudpickle, for a ``__main__`` class),
    or a random token where they do not pickle (then only this process can run them)."""
    try:
        import cloudpickle

        data = cloudpickle.dumps((cls, dict(init)))
    except ImportError:
        data = pickle.dumps((cls, dict(init)))
    except Exception:
        return uuid.uuid4().hex
    return hashlib.sha256(data).hexdigest()


def model_spec(cls: type, init: Mapping[str, Any] | None = None) -> ModelSpec:
    """The `ModelSpec` of a model class, its token computed here, once.

    Raises:
        NotAModelError: ``cls`` has no ``predict(self, batch)``.
    """
    predict_is_async(cls)  # checks the contract
    arguments = dict(init or {})
    return ModelSpec(cls, arguments, _token(cls, arguments))


_counts = threading.local()


def take_setups() -> int:
    """How many models this thread has set up since the last call (and reset to 0)."""
    count: int = getattr(_counts, "setups", 0)
    _counts.setups = 0
    return count


class _Slot:
    """One model of a cache: loaded once, by the first thread that asks for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.model: Any = None
        self.loaded = False


class ModelCache:
    """Loaded models by `ModelSpec` token; the latest ``limit`` are kept. Thread-safe."""

    def __init__(self, limit: int = MODELS_PER_PROCESS) -> None:
        self.limit = limit
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> Any:
        """The instance of ``spec``: loaded (and counted) by the first caller, others wait.

        A load that raises leaves nothing behind: the next call loads again.
        """
        with self._lock:
            slot = self._slots.get(spec.token)
            if slot is None:
                slot = self._slots[spec.token] = _Slot()
                while len(self._slots) > self.limit:
                    self._slots.popitem(last=False)
            self._slots.move_to_end(spec.token)
        with slot.lock:
            if not slot.loaded:
                slot.model = spec.load()
                slot.loaded = True
                _counts.setups = getattr(_counts, "setups", 0) + 1
        return slot.model

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        return f"ModelCache(models={len(self._slots)}, limit={self.limit})"


_PROCESS_CACHE = ModelCache()


def model_instance(spec: ModelSpec) -> Any:
    """This process's instance of ``spec``'s model, instantiated and set up on first use."""
    return _PROCESS_CACHE.get(spec)


class ModelBatch:
    """The batch function of a model run: ``model.predict(batch)`` on the worker's instance.

    The driver's object has a cache of its own (the run's instance, for executors
    in this process); a copy sent to another process uses that process's cache.
    Once loading the model has failed in an object, its later calls raise
    `ModelSetupError` without loading again (a failing chunk is bisected: each of its
    items would otherwise pay the setup).
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._cache: ModelCache | None = ModelCache(limit=1)
        self._failure: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "_cache": None, "_failure": None}

    def _model(self) -> Any:
        name = self.spec.cls.__qualname__
        if self._failure is not None:
            raise ModelSetupError(f"loading model {name} failed: {self._failure}")
        try:
            if self._cache is not None:
                return self._cache.get(self.spec)
            return model_instance(self.spec)
        except Exception as error:
            self._failure = f"{type(error).__name__}: {error}"
            raise ModelSetupError(f"loading model {name} failed: {self._failure}") from error

    def __call__(self, items: list[Any]) -> Any:
        return self._model().predict(items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.cls.__qualname__})"


class AsyncModelBatch(ModelBatch):
    """`ModelBatch` for a model whose ``predict`` is ``async def`` (runs on asyncio)."""

    async def __call__(self, items: list[Any]) -> Any:
        return await self._model().predict(items)


def model_batch(cls: type, init: Mapping[str, Any] | None = None) -> ModelBatch:
    """The batch function that runs the model class ``cls`` (see the module docstring).

    Raises:
        NotAModelError: ``cls`` has no ``predict(self, batch)``.
    """
    spec = model_spec(cls, init)
    return AsyncModelBatch(spec) if predict_is_async(cls) else ModelBatch(spec)
