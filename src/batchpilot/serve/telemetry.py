"""What the server measures about its own requests: counters, per-second series, Prometheus.

Everything here runs on the server's event loop (requests record, a tick closes each
second), so it needs no locks. The batch-level metrics come from the engine
(`batchpilot.metrics.PrometheusMetrics` as a batch listener); this module adds what
only the HTTP side sees: responses by status, rejections, deadlines, requests in
flight, and the end-to-end latency percentiles the dashboard plots.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Second", "Telemetry"]


@dataclass(frozen=True)
class Second:
    """One closed second of traffic, as the dashboard plots it.

    Attributes:
        t: wall-clock end of the second (Unix seconds).
        requests: ``/predict`` responses sent in it (any status).
        errors: responses with a 5xx status among them.
        p50_ms: median end-to-end latency of its responses, ms (0 without any).
        p99_ms: 99th percentile of the same, ms.
        batches: batches the engine finished in it.
        mean_batch_size: items per batch among them (0 without batches).
        queue_depth: items waiting when it closed.
    """

    t: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    batches: int
    mean_batch_size: float
    queue_depth: int


class Telemetry:
    """Request counters and a rolling window of `Second` samples.

    Args:
        horizon: seconds of history kept for the dashboard and ``/stats``.
        namespace: prefix of the Prometheus metric names.
    """

    def __init__(self, horizon: int = 300, namespace: str = "batchpilot") -> None:
        self.namespace = namespace
        self.responses: dict[int, int] = {}
        self.rejected = 0
        self.timed_out = 0
        self.in_flight = 0
        self._latencies: list[float] = []
        self._errors = 0
        self._seconds: deque[Second] = deque(maxlen=horizon)
        self._batches = 0
        self._items = 0

    def record(self, status: int, seconds: float) -> None:
        """Account one ``/predict`` response that took ``seconds`` end to end."""
        self.responses[status] = self.responses.get(status, 0) + 1
        self._latencies.append(seconds)
        if status >= 500:
            self._errors += 1

    def tick(self, batches: int, items: int, queue_depth: int) -> Second:
        """Close the current second; ``batches``/``items`` are the engine's running totals."""
        latencies = sorted(self._latencies)
        self._latencies = []
        new_batches, new_items = batches - self._batches, items - self._items
        self._batches, self._items = batches, items
        second = Second(
            t=time.time(),
            requests=len(latencies),
            errors=self._errors,
            p50_ms=_percentile(latencies, 0.50) * 1e3,
            p99_ms=_percentile(latencies, 0.99) * 1e3,
            batches=new_batches,
            mean_batch_size=new_items / new_batches if new_batches else 0.0,
            queue_depth=queue_depth,
        )
        self._errors = 0
        self._seconds.append(second)
        return second

    def series(self, last: int | None = None) -> dict[str, list[Any]]:
        """The kept seconds as columns (``t``, ``requests``, ...), oldest first."""
        seconds = list(self._seconds)[-last:] if last else list(self._seconds)
        names = Second.__dataclass_fields__
        return {name: [asdict(s)[name] for s in seconds] for name in names}

    def counters(self) -> dict[str, Any]:
        """Totals since start: responses by status, rejections, deadlines, in flight."""
        return {
            "responses": {str(code): n for code, n in sorted(self.responses.items())},
            "rejected": self.rejected,
            "timed_out": self.timed_out,
            "in_flight": self.in_flight,
        }

    # -- the prometheus_client collector protocol -----------------------------------

    def describe(self) -> list[Metric]:
        """The metric families, without samples."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        """Current values for the registry."""
        return self._families()

    def _families(self) -> Iterator[Metric]:
        prefix = f"{self.namespace}_http"
        responses = CounterMetricFamily(
            f"{prefix}_responses", "Responses to /predict by status code.", labels=["code"]
        )
        for code, n in sorted(self.responses.items()):
            responses.add_metric([str(code)], n)
        yield responses
        yield CounterMetricFamily(
            f"{prefix}_rejected", "Requests refused with 503 on a full queue.", value=self.rejected
        )
        yield CounterMetricFamily(
            f"{prefix}_timed_out", "Requests answered 504 at their deadline.", value=self.timed_out
        )
        yield GaugeMetricFamily(
            f"{prefix}_in_flight", "Requests to /predict not answered yet.", value=self.in_flight
        )


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
