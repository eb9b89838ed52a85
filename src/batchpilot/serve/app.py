"""The ASGI application: ``POST /predict`` batched by the online engine, plus health,
readiness, metrics, stats and the dashboard.

Raw ASGI, no web framework: the hot path is one receive, one JSON decode, one
engine call and one send (a framework's routing and request objects cost ~35 %
of the throughput of a constant answer, measured in ``docs/perf-serve.md``).

Lifecycle: the lifespan ``startup`` builds the batcher and starts the model's
``setup()`` in a thread, so ``/health`` answers while the model loads and
``/ready`` turns true when it is done (``setup()`` runs on a daemon thread: a
process told to exit during a long ``setup()`` does not wait for it).
`ServeApp.begin_drain` (the server calls it on SIGTERM) turns ``/ready`` false and
refuses new predictions; the lifespan ``shutdown`` finishes what is queued and
closes the batcher, within what is left of ``drain_timeout``. A server without
lifespan support gets the same startup on its first request.

A worker of ``batchpilot serve --workers N`` has a `Fleet`: ``/ready``, ``/stats``
and ``/metrics`` then answer for every worker together (see `batchpilot.serve.fleet`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..batching import Batcher
from ..errors import ClosedError, QueueFullError
from ..metrics import PrometheusMetrics
from .dashboard import DASHBOARD_ROUTES
from .fleet import Fleet, Snapshot, all_set_up, merge_metrics, merge_stats, metric_samples
from .model import Model, load_model
from .openai_shape import (
    EmbeddingsRequest,
    InvalidRequest,
    embeddings_response,
    models_response,
    openai_error,
)
from .telemetry import Telemetry
from .wire import (
    JSON,
    ORJSON_OPTIONS,
    RETRY_AFTER,
    BadRequest,
    Receive,
    Scope,
    Send,
    decode_json,
    describe,
    dumps,
    error_body,
    header_text,
    read_body,
    send_response,
    to_json,
    too_large,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "PRIORITY_HEADER", "TIMEOUT_HEADER", "ServeApp", "app"]


PRIORITY_HEADER = b"x-priority"
"""``X-Priority: high`` is served before ``normal`` (the default) when requests queue."""
TIMEOUT_HEADER = b"x-request-timeout"
"""``X-Request-Timeout: SECONDS``: this request's deadline (overrides ``timeout``)."""
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
"""A ``POST /predict`` body over this many bytes is refused with 413 (16 MiB)."""

_PRIORITIES = {b"high": 1, b"normal": 0}
_ALLOW_POST = (b"allow", b"POST")
_ALLOW_GET = (b"allow", b"GET, HEAD")
_DEADLINE = "batchpilot.serve: request deadline"
_EMBEDDINGS_PATHS = ("/v1/embeddings", "/embeddings")
_Answerer = Callable[
    [Scope, Receive, asyncio.AbstractEventLoop, Batcher[Any, Any], Model],
    Awaitable[tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]],
]
_log = logging.getLogger("batchpilot.serve")


class ServeApp:
    """An ASGI app serving one model with dynamic batching (build it with `app`).

    Args:
        target: a batch function, a model class, an instance, or ``"MODULE:ATTR"``
            (see `batchpilot.serve.model`).
        max_batch_size: cap on the items of one batch.
        max_wait: upper bound in seconds on waiting for a fuller batch.
        max_queue: requests that may wait; one more is refused with 503 at once.
        timeout: seconds a request may take before it is answered 504 (None: no
            deadline); a request that has not started by then is never run.
        max_body_bytes: a larger request body is answered 413 before it is read
            whole (its ``Content-Length``, or the bytes of a chunked body so far),
            and the connection is closed.
        ready_queue_fraction: ``/ready`` is false while the queue is at least this
            full (a load balancer then sends traffic elsewhere).
        decode: request JSON -> model input; overrides the target's ``decode``.
        encode: model output -> response JSON; overrides the target's ``encode``.
        history: seconds of per-second samples kept for ``/stats`` and the dashboard.
        target_options: keyword arguments for the target when it is a class (JSON
            values when ``--workers N`` ships them to worker processes).
        drain_timeout: seconds from `begin_drain` to the end of the drain: the server
            closes connections still open by then, and the lifespan shutdown stops
            waiting for queued items (None: ``timeout`` + 5, or 30 without ``timeout``).
        batcher_options: more `batchpilot.Batcher` arguments (``collate``,
            ``controller``, ``max_concurrent_batches``, ...). Two defaults differ
            from `batchpilot.Batcher`'s: ``placement="measured"`` (a plain ``def``
            predict runs inline on the server's event loop only after a worker
            thread has shown it is short, so a slow model never holds ``/health``,
            deadlines or signals) and, without a
            ``decode`` hook, ``collate="list"`` (the batch is the list of the
            requests' JSON values).
    """

    def __init__(
        self,
        target: Any,
        *,
        max_batch_size: int = 64,
        max_wait: float = 0.005,
        max_queue: int = 10_000,
        timeout: float | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        ready_queue_fraction: float = 0.9,
        decode: Callable[[Any], Any] | None = None,
        encode: Callable[[Any], Any] | None = None,
        history: int = 300,
        drain_timeout: float | None = None,
        target_options: dict[str, Any] | None = None,
        **batcher_options: Any,
    ) -> None:
        _check_options(timeout, drain_timeout, max_body_bytes, ready_queue_fraction)
        self._target = target
        self._hooks = {"decode": decode, "encode": encode, "init": target_options}
        self._batcher_options = {
            "max_batch_size": max_batch_size,
            "max_wait": max_wait,
            "max_queue_size": max_queue,
            **batcher_options,
        }
        self.max_queue = max_queue
        self.timeout = timeout
        if drain_timeout is None:
            drain_timeout = 30.0 if timeout is None else timeout + 5.0
        self.drain_timeout = drain_timeout
        self.max_body_bytes = max_body_bytes
        self._ready_depth = max(1, int(max_queue * ready_queue_fraction))
        self._history = history
        # Built at startup, in the serving process (the app itself stays picklable
        # for servers that ship it to workers, such as Ray Serve).
        self.model: Model | None = None
        self.batcher: Batcher[Any, Any] | None = None
        self.telemetry: Telemetry | None = None
        self._registry: CollectorRegistry | None = None
        self._metrics: PrometheusMetrics | None = None
        self._started: asyncio.Task[None] | None = None
        self._setup_done = False
        self.setup_error: str | None = None
        self.draining = False
        self._drain_started: float | None = None
        self._created = int(time.time())  # when this app was made (OpenAI's model "created")
        self.fleet: Fleet | None = None
        """The other workers of a ``--workers N`` server (set by the worker process)."""
        self._background: list[asyncio.Task[Any]] = []
        self._get_routes: dict[str, Callable[[], Awaitable[tuple[int, bytes, bytes]]]] = {
            "/health": self._health,
            "/ready": self._ready,
            "/metrics": self._metrics_page,
            "/stats": self._stats,
        }
        self._post_routes: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            "/predict": self._predict
        }

    # -- lifecycle ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Setup is done, the queue is below its critical depth, and not draining."""
        return (
            self._setup_done
            and not self.draining
            and self.batcher is not None
            and self.batcher.queue_size < self._ready_depth
        )

    async def startup(self) -> None:
        """Build the model, batcher and metrics; start ``setup()`` in a thread (idempotent).

        Returns before ``setup()`` finishes: ``/ready`` turns true when it has.
        """
        if self._started is not None:
            return
        model = load_model(self._target, **self._hooks)  # type: ignore[arg-type]
        self.model = model
        self.telemetry = Telemetry(self._history)
        self._registry = CollectorRegistry()
        self._metrics = PrometheusMetrics(self._registry)
        self._registry.register(self.telemetry)
        # A batch runs on the server's event loop only when a worker thread has shown
        # it is short (placement="measured"): a slow model never holds the loop. JSON
        # values are passed as they are, never stacked into columns (collate="list").
        defaults = {"name": model.name, "priority_levels": 2, "placement": "measured"}
        if model.decode is None:
            defaults["collate"] = "list"
        if model.cost is not None and "max_batch_cost" in self._batcher_options:
            defaults["cost"] = model.cost  # the model declares its items' cost
        options = {**defaults, **self._batcher_options}
        options["listeners"] = [*options.get("listeners", ()), self._metrics]
        self.batcher = Batcher(model.predict, **options)
        if model.tokenize is not None:
            self._post_routes.update(dict.fromkeys(_EMBEDDINGS_PATHS, self._embeddings))
            self._get_routes["/v1/models"] = self._models
        self._started = asyncio.create_task(self._run_setup(model))
        self._background.append(asyncio.create_task(self._tick_every_second()))

    async def wait_ready(self) -> None:
        """Wait until ``setup()`` has finished (raises `RuntimeError` if it failed)."""
        await self.startup()
        assert self._started is not None
        await asyncio.shield(self._started)
        if self.setup_error is not None:
            raise RuntimeError(self.setup_error)

    async def _run_setup(self, model: Model) -> None:
        if model.setup is not None:
            try:
                await _on_daemon_thread(model.setup, f"batchpilot-{model.name}-setup")
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.setup_error = f"setup() failed: {describe(exc)}"
                _log.error("%s", self.setup_error)
                return
        self._setup_done = True
        self._publish()

    def begin_drain(self) -> None:
        """Refuse new predictions and report not ready; requests in flight still finish.

        The ``drain_timeout`` counts from the first call.
        """
        if self._drain_started is None:
            self._drain_started = time.monotonic()
        self.draining = True
        self._publish()

    def drain_time_left(self) -> float | None:
        """Seconds left of ``drain_timeout`` since `begin_drain` (None before it)."""
        if self._drain_started is None:
            return None
        return max(0.0, self._drain_started + self.drain_timeout - time.monotonic())

    async def shutdown(self, timeout: float | None = None) -> None:
        """Finish queued requests (up to ``timeout`` s), close the batcher, stop the ticks."""
        self.draining = True
        if self.batcher is not None:
            await self.batcher.aclose(timeout)
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self._started is not None and not self._started.done():
            self._started.cancel()
        if self._metrics is not None:
            self._metrics.unregister()

    async def _tick_every_second(self) -> None:
        assert self.telemetry is not None and self.batcher is not None
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + 1.0
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick += 1.0
            stats = self.batcher.statistics()
            self.telemetry.tick(stats.batches, stats.items, stats.queue_size)
            self._publish()

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._started is None:
                await self.startup()
            path = _route_path(scope)
            post = self._post_routes.get(path)
            if post is not None:
                if scope["method"] == "POST":
                    await post(scope, receive, send)
                else:
                    refusal = error_body(f"use POST {path}")
                    await send_response(send, 405, refusal, JSON, (_ALLOW_POST,))
                return
            if scope["method"] in ("GET", "HEAD"):
                await self._get(path, send)
            else:
                await send_response(send, 405, error_body(f"use GET {path}"), JSON, (_ALLOW_GET,))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    text = describe(exc)
                    await send({"type": "lifespan.startup.failed", "message": text})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown(self.drain_time_left())
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send, self._answer_predict)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send, self._answer_embeddings)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, answer: _Answerer) -> None:
        """Answer one POST with ``answer``, counted in the telemetry."""
        telemetry, batcher, model = self.telemetry, self.batcher, self.model
        assert telemetry is not None and batcher is not None and model is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        telemetry.in_flight += 1
        try:
            status, body, extra = await answer(scope, receive, loop, batcher, model)
        except _Reply as reply:
            status, body, extra = reply.status, reply.body, reply.headers
        finally:
            telemetry.in_flight -= 1
        telemetry.record(status, loop.time() - started)
        if status == 503 and extra:
            telemetry.rejected += 1
        elif status == 504:
            telemetry.timed_out += 1
        await send_response(send, status, body, JSON, extra)

    async def _answer_predict(
        self,
        scope: Scope,
        receive: Receive,
        loop: asyncio.AbstractEventLoop,
        batcher: Batcher[Any, Any],
        model: Model,
    ) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
        """(status, body, extra headers) of one ``/predict`` request."""
        priority, timeout, body = await self._admit(scope, receive, error_body)
        try:
            item = decode_json(body, model.decode)
        except BadRequest as exc:
            return exc.status, error_body(str(exc)), exc.headers
        try:
            future = batcher.engine.afuture_on(loop, item, priority=priority)
        except (QueueFullError, ClosedError) as exc:
            raise self._refused(exc, error_body) from None
        output = await _outcome(loop, future, (future,), timeout, error_body)
        try:
            if model.encode is not None:
                output = model.encode(output)
            return 200, dumps(output), ()
        except Exception as exc:
            return 500, error_body(f"cannot encode the output: {describe(exc)}"), ()

    async def _answer_embeddings(
        self,
        scope: Scope,
        receive: Receive,
        loop: asyncio.AbstractEventLoop,
        batcher: Batcher[Any, Any],
        model: Model,
    ) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
        """(status, body, extra headers) of one OpenAI ``/v1/embeddings`` request.

        Each input is its own item, so a request of many inputs is never one giant
        item; the texts are tokenised on a worker thread, off the event loop.
        """
        assert model.tokenize is not None
        priority, timeout, body = await self._admit(scope, receive, openai_error)
        try:
            request = EmbeddingsRequest.parse(decode_json(body, None))
        except (BadRequest, InvalidRequest) as exc:
            return getattr(exc, "status", 400), openai_error(str(exc)), ()
        items = await loop.run_in_executor(None, model.tokenize, request.texts)
        futures: list[asyncio.Future[Any]] = []
        try:
            for item in items:
                futures.append(batcher.engine.afuture_on(loop, item, priority=priority))
        except (QueueFullError, ClosedError) as exc:
            _cancel_all(futures)
            raise self._refused(exc, openai_error) from None
        gathered = asyncio.gather(*futures)
        vectors = await _outcome(loop, gathered, futures, timeout, openai_error)
        tokens = sum(len(item) for item in items)
        response = embeddings_response(request, vectors, tokens, request.model or model.name)
        return 200, orjson.dumps(response), ()

    async def _admit(
        self, scope: Scope, receive: Receive, error: Callable[[str], bytes]
    ) -> tuple[int, float | None, bytes]:
        """(priority, timeout, body) of a request this server takes, or a `_Reply`.

        Admission is decided on arrival, before any await: a request that reached the
        app before the drain began is in flight, and is answered.
        """
        refusal = None
        if self.draining:
            refusal = "draining: the server is shutting down"
        elif not self._setup_done:
            refusal = self.setup_error or "not ready: setup() is still running"
        try:
            priority, timeout = self._request_options(scope["headers"])
            body = await read_body(receive, self.max_body_bytes)
        except BadRequest as exc:
            raise _Reply(exc.status, error(str(exc)), exc.headers) from None
        if refusal is not None:
            raise _Reply(503, error(refusal), (RETRY_AFTER,))
        return priority, timeout, body

    def _refused(self, exc: Exception, error: Callable[[str], bytes]) -> _Reply:
        """The 503 of a submission the engine refused (queue full, or closing)."""
        if isinstance(exc, QueueFullError):
            return _Reply(503, error(f"queue full ({self.max_queue} requests)"), (RETRY_AFTER,))
        return _Reply(503, error("draining: the server is shutting down"), (RETRY_AFTER,))

    def _request_options(self, headers: list[tuple[bytes, bytes]]) -> tuple[int, float | None]:
        """(priority, timeout) from the request headers and the app's default timeout.

        Raises:
            BadRequest: 400 for a bad header value; 413 for a ``Content-Length``
                over ``max_body_bytes`` (before any of the body is read).
        """
        priority, timeout = 0, self.timeout
        for name, value in headers:
            if name == PRIORITY_HEADER:
                level = _PRIORITIES.get(value.strip().lower())
                if level is None:
                    raise BadRequest(
                        400, f"X-Priority must be high or normal, got {header_text(value)}"
                    )
                priority = level
            elif name == TIMEOUT_HEADER:
                try:
                    timeout = float(value)
                except ValueError:
                    timeout = -1.0
                if not timeout > 0:
                    raise BadRequest(
                        400, f"X-Request-Timeout must be seconds > 0, got {header_text(value)}"
                    )
            elif name == b"content-length" and int(value) > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
        return priority, timeout

    async def _get(self, path: str, send: Send) -> None:
        route = self._get_routes.get(path)
        if route is not None:
            status, body, content_type = await route()
            await send_response(send, status, body, content_type)
            return
        page = DASHBOARD_ROUTES.get(path)
        if page is not None:
            await send_response(send, 200, page.body, page.content_type, page.headers)
            return
        await send_response(send, 404, error_body(f"no route {path}"), JSON)

    # -- the GET endpoints: (status, body, content type) ------------------------------

    async def _models(self) -> tuple[int, bytes, bytes]:
        assert self.model is not None
        return 200, orjson.dumps(models_response(self.model.name, self._created)), JSON

    async def _health(self) -> tuple[int, bytes, bytes]:
        if self.setup_error is not None:
            return 500, orjson.dumps({"status": "failed", "error": self.setup_error}), JSON
        return 200, b'{"status":"ok"}', JSON

    async def _ready(self) -> tuple[int, bytes, bytes]:
        ready = self.ready
        body: dict[str, Any] = {
            "ready": ready,
            "setup_done": self._setup_done,
            "draining": self.draining,
            "queue_size": self.batcher.queue_size if self.batcher else 0,
            "critical_queue_size": self._ready_depth,
        }
        if self.fleet is not None:
            snapshots = self.fleet.snapshots(self._snapshot())
            ready = body["ready"] = ready and all_set_up(snapshots)
            body["workers_set_up"] = sum(s is not None and s["setup_done"] for s in snapshots)
            body["workers"] = self.fleet.size
        return (200 if ready else 503), orjson.dumps(body), JSON

    async def _metrics_page(self) -> tuple[int, bytes, bytes]:
        assert self._registry is not None
        registry = self._registry
        if self.fleet is not None:
            registry = merge_metrics(self.fleet.snapshots(self._snapshot()))
        return 200, generate_latest(registry), CONTENT_TYPE_LATEST.encode()

    async def _stats(self) -> tuple[int, bytes, bytes]:
        snapshot = self._local_stats()
        if self.fleet is not None:
            snapshots = self.fleet.snapshots(self._snapshot(snapshot))
            snapshot = merge_stats(snapshots, self.ready and all_set_up(snapshots))
        return 200, orjson.dumps(snapshot, default=to_json, option=ORJSON_OPTIONS), JSON

    def _local_stats(self) -> dict[str, Any]:
        """This process's ``/stats`` body."""
        assert self.telemetry is not None and self.batcher is not None
        return {
            "model": self.model.name if self.model else None,
            "ready": self.ready,
            "setup_done": self._setup_done,
            "draining": self.draining,
            "timeout": self.timeout,
            "max_queue": self.max_queue,
            **self.telemetry.counters(),
            "batcher": self.batcher.statistics().__dict__,
            "series": self.telemetry.series(),
        }

    def _snapshot(self, stats: dict[str, Any] | None = None) -> Snapshot:
        """What this worker tells its fleet (``stats``: its `_local_stats`, if at hand)."""
        assert self.fleet is not None and self._registry is not None
        return {
            "worker": self.fleet.index,
            "pid": os.getpid(),
            "setup_done": self._setup_done,
            "ready": self.ready,
            "draining": self.draining,
            "stats": self._local_stats() if stats is None else stats,
            "metrics": metric_samples(self._registry),
        }

    def _publish(self) -> None:
        """Tell the fleet this worker's state (a no-op outside ``--workers N``)."""
        if self.fleet is not None and self._registry is not None:
            self.fleet.publish(self._snapshot())


def app(target: Any, **options: Any) -> ServeApp:
    """The ASGI app serving ``target`` with dynamic batching; run it under any ASGI server.

    Args:
        target: a batch function (list of inputs -> list of outputs, ``def`` or
            ``async def``), a class with ``setup(self)`` / ``predict(self, batch)``
            and optional ``decode``/``encode``, or ``"MODULE:ATTR"``.
        **options: `ServeApp` options (``max_batch_size``, ``max_wait``,
            ``max_queue``, ``timeout``, ...) and more `batchpilot.Batcher` arguments.

    Example:
        >>> from batchpilot import serve
        >>> def double(xs):
        ...     return [2 * x for x in xs]
        >>> application = serve.app(double, max_batch_size=32, timeout=1.0)
        >>> # uvicorn module:application, or batchpilot serve module:double
    """
    return ServeApp(target, **options)


# -- helpers -------------------------------------------------------------------------


async def _on_daemon_thread(function: Callable[[], Any], name: str) -> Any:
    """``function()`` on a new daemon thread, awaited: unlike an executor's thread, the
    process does not wait for it when it exits."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(exc: BaseException | None, result: Any) -> None:
        if done.cancelled():
            return
        if exc is None:
            done.set_result(result)
        else:
            done.set_exception(exc)

    def call() -> None:
        exc, result = None, None
        try:
            result = function()
        except BaseException as raised:
            exc = raised
        with contextlib.suppress(RuntimeError):  # the loop closed while it ran
            loop.call_soon_threadsafe(settle, exc, result)

    threading.Thread(target=call, name=name, daemon=True).start()
    return await done


def _route_path(scope: Scope) -> str:
    """The path below the app's mount point (``root_path``, e.g. a Ray Serve route prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _check_options(
    timeout: float | None,
    drain_timeout: float | None,
    max_body_bytes: int,
    ready_queue_fraction: float,
) -> None:
    """`ServeApp`'s own options, checked (the batcher checks the rest)."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if drain_timeout is not None and not drain_timeout > 0:
        raise ValueError(f"drain_timeout must be > 0 seconds, got {drain_timeout}")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
        raise TypeError(f"max_body_bytes must be an int, got {max_body_bytes!r}")
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if not 0 < ready_queue_fraction <= 1:
        raise ValueError(f"ready_queue_fraction must be in (0, 1], got {ready_queue_fraction}")


class _Reply(Exception):
    """An answer decided before the model's outcome: raised, and sent as it is."""

    def __init__(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def _failed(
    exc: BaseException, timeout: float | None, error: Callable[[str], bytes]
) -> BaseException:
    """What to raise for a prediction that did not come: a `_Reply` (504 at its deadline,
    503 when closing, 500 for the model's exception), or ``exc`` itself when the request
    was cancelled or the process is ending."""
    if isinstance(exc, asyncio.CancelledError):
        if exc.args != (_DEADLINE,):
            return exc  # the request itself was cancelled
        return _Reply(504, error(f"deadline of {timeout:g} s passed"), ())
    if isinstance(exc, ClosedError):
        return _Reply(503, error("draining: the server is shutting down"), (RETRY_AFTER,))
    if isinstance(exc, Exception):
        return _Reply(500, error(describe(exc)), ())
    return exc


async def _outcome(
    loop: asyncio.AbstractEventLoop,
    waiting: Awaitable[Any],
    futures: Sequence[asyncio.Future[Any]],
    timeout: float | None,
    error: Callable[[str], bytes],
) -> Any:
    """What ``waiting`` (the request's ``futures``, or their gathering) gives, or the
    `_Reply` for its failure. A deadline is one timer that cancels the futures (the
    engine then drops queued items unrun): cheaper than asyncio.wait_for's waiter and
    callbacks. When one fails, the others are cancelled too."""
    timer = None if timeout is None else loop.call_later(timeout, _cancel_all, futures)
    try:
        return await waiting
    except BaseException as exc:
        _cancel_all(futures)
        raise _failed(exc, timeout, error) from None
    finally:
        if timer is not None:
            timer.cancel()


def _cancel_all(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel every future of a request (its deadline passed, or one of them failed)."""
    for future in futures:
        future.cancel(_DEADLINE)
