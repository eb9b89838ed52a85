"""``--metrics-port``: the run's batch records served as Prometheus metrics."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from .common import CliError

__all__ = ["metrics_exporter"]


@contextlib.contextmanager
def metrics_exporter(port: int | None) -> Iterator[list[Any]]:
    """Listeners for the run: a Prometheus exporter served on ``port``, or none."""
    if port is None:
        yield []
        return
    try:
        from prometheus_client import CollectorRegistry

        from ..metrics import PrometheusMetrics, start_http_server
    except ImportError:
        raise CliError(
            "--metrics-port needs prometheus-client: pip install prometheus-client"
        ) from None
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    try:
        server = start_http_server(port, registry=registry)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
    print(f"batchpilot: metrics at {server.url}", file=sys.stderr, flush=True)
    try:
        yield [metrics]
    finally:
        server.close()
