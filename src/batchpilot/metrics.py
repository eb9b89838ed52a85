"""Prometheus metrics for every batchpilot engine (extra ``[metrics]``).

`PrometheusMetrics` is a batch listener (``record_batch(BatchRecord)``): pass one
instance to any engine's ``listeners`` (online, bulk, buffer) and it exports, per
``engine`` and ``name`` label:

* ``batchpilot_queue_depth`` (gauge): items waiting when the last batch finished;
* ``batchpilot_batch_size`` (histogram): items per batch;
* ``batchpilot_batch_duration_seconds`` (histogram): time in the batch function;
* ``batchpilot_item_latency_seconds`` (histogram): submission to result, per item.
  A `BatchRecord` carries its items' mean wait, so each item of a batch is counted
  once at the batch's mean latency (queue time + duration);
* ``batchpilot_items_total`` (counter, ``outcome`` = ``succeeded``/``failed``);
* ``batchpilot_errors_total`` (counter, ``error_type``): failed items by exception
  class name;
* ``batchpilot_batches_closed_total`` (counter, ``reason``): batches by why they
  closed (``count``, ``budget``, ``idle_worker``, ``max_wait``, ``deadline``,
  ``shutdown``, ``input_end``; batches whose engine does not say are not counted);
* ``batchpilot_batch_cost_total`` and ``batchpilot_batch_padded_cost_total``
  (counters): the batches' real cost (the sum of their items' costs, or their item
  counts without ``cost=``) and padded cost (largest item's cost times size);
* ``batchpilot_batch_padded_fraction`` (gauge): ``1 - cost / padded_cost`` over
  all batches so far, the share of the work that was padding;
* ``batchpilot_oom_splits_total`` (counter): out-of-memory errors batches met, each
  one a split.

`start_http_server` serves them for scraping. Needs prometheus-client (the
``metrics`` extra): ``pip install prometheus-client``.

Example:
    >>> from batchpilot.metrics import PrometheusMetrics, start_http_server
    >>> metrics = PrometheusMetrics()  # doctest: +SKIP
    >>> server = start_http_server(9100)  # doctest: +SKIP
    >>> results = list(map_batches(fn, items, listeners=[metrics]))  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

try:
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "batchpilot.metrics needs prometheus-client; install it with: pip install prometheus-client"
    ) from _missing

from ._core.cost import padded_fraction
from ._core.events import BatchRecord

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "SECONDS_BUCKETS",
    "MetricsServer",
    "PrometheusMetrics",
    "start_http_server",
]

BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(13))
"""Default batch size buckets: 1, 2, 4, ... 4096."""

SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Default buckets for batch durations and item latencies, in seconds."""

_LABELS = ["engine", "name"]


class _Histogram:
    """Bucket counts that accept weighted observations (n items at one value)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += weight
        self.total += value * weight

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        return cumulative


@dataclass
class _Series:
    """Everything exported for one (engine, name) pair."""

    size: _Histogram
    duration: _Histogram
    latency: _Histogram
    queue_depth: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # batches by close reason
    cost: float = 0.0  # summed real cost of the batches
    padded_cost: float = 0.0  # summed padded cost of the batches
    oom_splits: int = 0  # out-of-memory errors the batches met

    def snapshot(self) -> _Snapshot:
        """Plain copies of the current values (taken under the listener's lock)."""
        return _Snapshot(
            self.queue_depth,
            (self.size.buckets(), self.size.total),
            (self.duration.buckets(), self.duration.total),
            (self.latency.buckets(), self.latency.total),
            self.succeeded,
            self.failed,
            dict(self.errors),
            dict(self.reasons),
            self.cost,
            self.padded_cost,
            self.oom_splits,
        )


_Buckets = tuple[list[tuple[str, float]], float]  # a histogram's cumulative buckets and sum


@dataclass(frozen=True)
class _Snapshot:
    """One series' values at a scrape."""

    queue_depth: int
    size: _Buckets
    duration: _Buckets
    latency: _Buckets
    succeeded: int
    failed: int
    errors: dict[str, int]
    reasons: dict[str, int]
    cost: float
    padded_cost: float
    oom_splits: int


class PrometheusMetrics:
    """A batch listener exporting engine metrics to a Prometheus registry.

    One instance serves any number of engines: series are labelled by the
    record's ``engine`` and ``name``. Thread-safe and cheap per batch.

    Args:
        registry: where to register (default: prometheus_client's global
            ``REGISTRY``, which `start_http_server` serves by default).
        namespace: prefix of every metric name.
        size_buckets: upper bounds of the batch size histogram.
        seconds_buckets: upper bounds of the duration and latency histograms.

    Raises:
        ValueError: these metric names are already registered in ``registry``
            (share one instance between engines, or `unregister` the old one).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "batchpilot",
        *,
        size_buckets: Sequence[float] = BATCH_SIZE_BUCKETS,
        seconds_buckets: Sequence[float] = SECONDS_BUCKETS,
    ) -> None:
        for label, bounds in (("size_buckets", size_buckets), ("seconds_buckets", seconds_buckets)):
            if not bounds or list(bounds) != sorted(set(bounds)):
                raise ValueError(f"{label} must be non-empty and strictly increasing")
        self.namespace = namespace
        self._size_buckets = tuple(size_buckets)
        self._seconds_buckets = tuple(seconds_buckets)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._registry = registry if registry is not None else REGISTRY
        try:
            self._registry.register(self)
        except ValueError:
            raise ValueError(
                f"metrics named {namespace}_* are already registered in this registry "
                "(share one PrometheusMetrics between engines, call unregister() on "
                "the old one, or use another namespace)"
            ) from None

    def record_batch(self, record: BatchRecord) -> None:
        """Account one finished batch (the `BatchListener` protocol)."""
        with self._lock:
            series = self._series.get((record.engine, record.name))
            if series is None:
                series = self._series[(record.engine, record.name)] = _Series(
                    _Histogram(self._size_buckets),
                    _Histogram(self._seconds_buckets),
                    _Histogram(self._seconds_buckets),
                )
            series.queue_depth = record.queue_depth
            series.size.observe(record.size)
            series.duration.observe(record.duration)
            series.latency.observe(record.latency, weight=record.size)
            series.succeeded += record.succeeded
            series.failed += record.failed
            series.errors.update(record.error_types)
            if record.close_reason:
                series.reasons[record.close_reason] += 1
            series.cost += record.cost
            series.padded_cost += record.padded_cost
            series.oom_splits += record.oom_splits

    def unregister(self) -> None:
        """Remove these metrics from the registry (idempotent)."""
        with contextlib.suppress(KeyError):
            self._registry.unregister(self)

    def describe(self) -> list[Metric]:
        """The metric families, without samples (lets the registry detect clashes)."""
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        """The current values, for the registry to expose."""
        with self._lock:
            snapshot = {key: series.snapshot() for key, series in self._series.items()}
        return self._families(snapshot)

    def _families(self, snapshot: dict[tuple[str, str], _Snapshot]) -> Iterator[Metric]:
        yield from self._batch_families(snapshot)
        yield from self._cost_families(snapshot)

    def _batch_families(self, snapshot: dict[tuple[str, str], _Snapshot]) -> Iterator[Metric]:
        """Queue depth, sizes, durations, latencies, items and errors."""
        prefix = self.namespace
        depth = GaugeMetricFamily(
            f"{prefix}_queue_depth", "Items waiting when the last batch finished.", labels=_LABELS
        )
        size = HistogramMetricFamily(f"{prefix}_batch_size", "Items per batch.", labels=_LABELS)
        duration = HistogramMetricFamily(
            f"{prefix}_batch_duration_seconds", "Seconds in the batch function.", labels=_LABELS
        )
        latency = HistogramMetricFamily(
            f"{prefix}_item_latency_seconds",
            "Seconds from submission to result, per item (at its batch's mean).",
            labels=_LABELS,
        )
        items = CounterMetricFamily(
            f"{prefix}_items", "Items processed, by outcome.", labels=[*_LABELS, "outcome"]
        )
        errors = CounterMetricFamily(
            f"{prefix}_errors", "Failed items by exception type.", labels=[*_LABELS, "error_type"]
        )
        for key, values in snapshot.items():
            labels = list(key)
            depth.add_metric(labels, values.queue_depth)
            size.add_metric(labels, *values.size)
            duration.add_metric(labels, *values.duration)
            latency.add_metric(labels, *values.latency)
            items.add_metric([*labels, "succeeded"], values.succeeded)
            items.add_metric([*labels, "failed"], values.failed)
            for error_type, count in sorted(values.errors.items()):
                errors.add_metric([*labels, error_type], count)
        yield from (depth, size, duration, latency, items, errors)

    def _cost_families(self, snapshot: dict[tuple[str, str], _Snapshot]) -> Iterator[Metric]:
        """Why batches closed, what they cost, padded and not, and out-of-memory splits."""
        prefix = self.namespace
        closed = CounterMetricFamily(
            f"{prefix}_batches_closed",
            "Batches by why they closed.",
            labels=[*_LABELS, "reason"],
        )
        cost = CounterMetricFamily(
            f"{prefix}_batch_cost",
            "Real cost of the batches: the sum of their items' costs (items without cost=).",
            labels=_LABELS,
        )
        padded = CounterMetricFamily(
            f"{prefix}_batch_padded_cost",
            "Padded cost of the batches: largest item's cost times size.",
            labels=_LABELS,
        )
        fraction = GaugeMetricFamily(
            f"{prefix}_batch_padded_fraction",
            "Share of the padded cost that was padding: 1 - cost / padded cost.",
            labels=_LABELS,
        )
        splits = CounterMetricFamily(
            f"{prefix}_oom_splits",
            "Out-of-memory errors batches met, each one a split.",
            labels=_LABELS,
        )
        for key, values in snapshot.items():
            labels = list(key)
            for reason, count in sorted(values.reasons.items()):
                closed.add_metric([*labels, reason], count)
            cost.add_metric(labels, values.cost)
            padded.add_metric(labels, values.padded_cost)
            fraction.add_metric(labels, padded_fraction(values.cost, values.padded_cost))
            splits.add_metric(labels, values.oom_splits)
        yield from (closed, cost, padded, fraction, splits)

    def __repr__(self) -> str:
        with self._lock:
            series = sorted(self._series)
        return f"PrometheusMetrics(namespace={self.namespace!r}, series={series})"


class MetricsServer:
    """A running metrics HTTP server; `close` (or ``with``) stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False

    @property
    def address(self) -> str:
        """The address the server listens on."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when started with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where to scrape, e.g. ``http://127.0.0.1:9100/metrics``."""
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetricsServer(url={self.url!r}, closed={self._closed})"


def start_http_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> MetricsServer:
    """Serve ``registry`` (default: the global one) at ``http://addr:port/metrics``.

    Listens on loopback unless told otherwise; ``port=0`` picks a free port (see
    `MetricsServer.port`). Serves from daemon threads; `MetricsServer.close` stops it
    within about 50 ms.
    """
    family, *_, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("_MetricsHTTPServer", (_ThreadingWSGIServer,), {"address_family": family})
    app = prometheus_client.make_wsgi_app(registry if registry is not None else REGISTRY)
    server: WSGIServer = make_server(
        str(sockaddr[0]), port, app, server_class, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"batchpilot-metrics:{server.server_port}",
        daemon=True,
    )
    thread.start()
    return MetricsServer(server, thread)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a line on stderr each."""
