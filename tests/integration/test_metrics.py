"""batchpilot.metrics: records in, Prometheus text out, scraped over loopback HTTP."""

from __future__ import annotations

import concurrent.futures
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from batchpilot._core.events import BatchRecord, as_listener, notify
from batchpilot._engine.engine import Engine
from batchpilot.bulk import map_batches
from batchpilot.metrics import MetricsServer, PrometheusMetrics, start_http_server

pytestmark = pytest.mark.timeout(30)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: MetricsServer) -> Samples:
    with urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    with start_http_server(0, registry=registry) as running:
        yield running


def test_records_are_exported_per_engine_and_name(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    metrics = PrometheusMetrics(registry)
    notify(
        [as_listener(metrics)],
        BatchRecord(
            "online",
            size=4,
            duration=0.02,
            queue_time=0.01,
            succeeded=4,
            queue_depth=9,
            name="model",
        ),
    )
    metrics.record_batch(
        BatchRecord(
            "online",
            size=8,
            duration=0.2,
            queue_time=0.05,
            succeeded=6,
            failed=2,
            error_types={"ValueError": 1, "KeyError": 1},
            queue_depth=3,
            name="model",
        )
    )
    metrics.record_batch(BatchRecord("buffer", size=100, duration=1.5, succeeded=100, name="flush"))

    samples = scrape(server)

    model = labels(engine="online", name="model")
    assert samples[("batchpilot_queue_depth", model)] == 3  # the latest value
    assert samples[("batchpilot_batch_size_count", model)] == 2
    assert samples[("batchpilot_batch_size_sum", model)] == 12
    assert samples[("batchpilot_batch_size_bucket", model | {("le", "4.0")})] == 1
    assert samples[("batchpilot_batch_size_bucket", model | {("le", "8.0")})] == 2
    assert samples[("batchpilot_batch_duration_seconds_count", model)] == 2
    assert samples[("batchpilot_batch_duration_seconds_sum", model)] == pytest.approx(0.22)
    assert samples[("batchpilot_batch_duration_seconds_bucket", model | {("le", "0.025")})] == 1
    assert samples[("batchpilot_batch_duration_seconds_bucket", model | {("le", "0.25")})] == 2
    # item latency: one observation per item at its batch's mean latency
    assert samples[("batchpilot_item_latency_seconds_count", model)] == 12
    assert samples[("batchpilot_item_latency_seconds_sum", model)] == pytest.approx(
        4 * 0.03 + 8 * 0.25
    )
    assert samples[("batchpilot_item_latency_seconds_bucket", model | {("le", "0.05")})] == 4
    assert samples[("batchpilot_items_total", model | {("outcome", "succeeded")})] == 10
    assert samples[("batchpilot_items_total", model | {("outcome", "failed")})] == 2
    assert samples[("batchpilot_errors_total", model | {("error_type", "ValueError")})] == 1
    assert samples[("batchpilot_errors_total", model | {("error_type", "KeyError")})] == 1

    flush = labels(engine="buffer", name="flush")
    assert samples[("batchpilot_batch_size_sum", flush)] == 100
    assert samples[("batchpilot_batch_duration_seconds_bucket", flush | {("le", "1.0")})] == 0
    assert samples[("batchpilot_batch_duration_seconds_bucket", flush | {("le", "2.5")})] == 1
    assert "('buffer', 'flush')" in repr(metrics)


def test_a_real_bulk_run_is_exported(registry: CollectorRegistry, server: MetricsServer) -> None:
    metrics = PrometheusMetrics(registry, namespace="jobs")

    def score(batch: list[int]) -> list[int]:
        if any(item % 7 == 0 for item in batch):
            raise ValueError("multiples of 7 are rejected")
        return [item * 2 for item in batch]

    run = map_batches(
        score, range(100), batch_size=10, workers=2, listeners=[metrics], name="nightly"
    )
    results = list(run)
    assert len(results) == 100

    samples = scrape(server)
    job = labels(engine="bulk", name="nightly")
    assert samples[("jobs_batch_size_count", job)] == 10
    assert samples[("jobs_batch_size_sum", job)] == 100
    assert samples[("jobs_item_latency_seconds_count", job)] == 100
    assert samples[("jobs_items_total", job | {("outcome", "failed")})] == 15  # 0, 7, ... 98
    assert samples[("jobs_items_total", job | {("outcome", "succeeded")})] == 85
    assert samples[("jobs_errors_total", job | {("error_type", "ValueError")})] == 15
    assert samples[("jobs_queue_depth", job)] == 0


def test_a_second_exporter_on_the_same_registry_is_a_clear_error(
    registry: CollectorRegistry,
) -> None:
    first = PrometheusMetrics(registry)
    with pytest.raises(ValueError, match=r"already registered.*share one PrometheusMetrics"):
        PrometheusMetrics(registry)
    PrometheusMetrics(registry, namespace="other")  # another namespace is fine

    first.unregister()
    first.unregister()  # idempotent
    PrometheusMetrics(registry)  # the names are free again


def test_defaults_use_the_global_registry() -> None:
    metrics = PrometheusMetrics(namespace="batchpilot_test_defaults")
    try:
        metrics.record_batch(BatchRecord("online", size=2, duration=0.001, succeeded=2))
        with start_http_server(0) as server:
            assert server.address == "127.0.0.1"
            samples = scrape(server)
        key = ("batchpilot_test_defaults_batch_size_sum", labels(engine="online", name=""))
        assert samples[key] == 2
    finally:
        metrics.unregister()


def test_closing_the_server_frees_the_port(registry: CollectorRegistry) -> None:
    server = start_http_server(0, registry=registry)
    scrape(server)
    server.close()
    server.close()  # idempotent
    assert "closed=True" in repr(server)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=5)


@pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (2.0, 1.0)])
def test_bad_buckets_are_rejected(registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="size_buckets must be non-empty and strictly increasing"):
        PrometheusMetrics(registry, size_buckets=buckets)


def test_a_real_online_engine_run_is_exported(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    metrics = PrometheusMetrics(registry)
    seen_items = 0
    all_recorded = threading.Event()

    def count_items(record: BatchRecord) -> None:  # runs after `metrics` for each batch
        nonlocal seen_items
        seen_items += record.size
        if seen_items == 20:
            all_recorded.set()

    def predict(batch: list[int]) -> list[int]:
        if 13 in batch:
            raise KeyError(13)
        return [item + 1 for item in batch]

    engine = Engine(
        predict,
        max_batch_size=8,
        collate="list",
        listeners=[metrics, count_items],
        name="model",
    )
    engine.pause()  # queue everything first, so the batches are exactly 8, 8 and 4
    futures = [engine.submit(item) for item in range(20)]
    engine.resume()
    concurrent.futures.wait(futures, timeout=10)
    assert all_recorded.wait(10)
    engine.close()

    assert [f.result() for f in futures if f.exception() is None] == [
        item + 1 for item in range(20) if item != 13
    ]
    samples = scrape(server)
    model = labels(engine="online", name="model")
    assert samples[("batchpilot_batch_size_count", model)] == 3
    assert samples[("batchpilot_batch_size_bucket", model | {("le", "4.0")})] == 1
    assert samples[("batchpilot_batch_size_bucket", model | {("le", "8.0")})] == 3
    assert samples[("batchpilot_item_latency_seconds_count", model)] == 20
    assert samples[("batchpilot_items_total", model | {("outcome", "failed")})] == 1
    assert samples[("batchpilot_errors_total", model | {("error_type", "KeyError")})] == 1
    assert samples[("batchpilot_queue_depth", model)] == 0


def _latest(registry: CollectorRegistry) -> Samples:
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_batches_by_close_reason_cost_padding_and_oom_splits_are_exported(
    registry: CollectorRegistry,
) -> None:
    metrics = PrometheusMetrics(registry)
    for reason, cost, padded, splits in (
        ("count", 30.0, 40.0, 0),
        ("budget", 50.0, 60.0, 2),
        ("count", 20.0, 20.0, 0),
    ):
        metrics.record_batch(
            BatchRecord(
                "online",
                size=4,
                duration=0.01,
                succeeded=4,
                name="embed",
                close_reason=reason,
                cost=cost,
                padded_cost=padded,
                oom_splits=splits,
            )
        )
    metrics.record_batch(BatchRecord("buffer", size=3, duration=0.1, cost=3, padded_cost=3))
    samples = _latest(registry)
    embed = {"engine": "online", "name": "embed"}
    assert samples["batchpilot_batches_closed_total", labels(**embed, reason="count")] == 2
    assert samples["batchpilot_batches_closed_total", labels(**embed, reason="budget")] == 1
    assert samples["batchpilot_batch_cost_total", labels(**embed)] == 100
    assert samples["batchpilot_batch_padded_cost_total", labels(**embed)] == 120
    assert samples["batchpilot_batch_padded_fraction", labels(**embed)] == pytest.approx(1 / 6)
    assert samples["batchpilot_oom_splits_total", labels(**embed)] == 2
    buffer = {"engine": "buffer", "name": ""}
    assert samples["batchpilot_batch_padded_fraction", labels(**buffer)] == 0
    # A record that does not say why it closed is counted under no reason.
    assert not any(
        name == "batchpilot_batches_closed_total" and ("engine", "buffer") in key
        for name, key in samples
    )


def test_an_online_engine_by_cost_exports_its_reasons_and_padding(
    registry: CollectorRegistry,
) -> None:
    metrics = PrometheusMetrics(registry)
    engine = Engine(
        lambda batch: batch,
        collate="list",
        max_wait=0.0,
        cost=float,
        max_batch_cost=10,
        padded=True,
        sort_window=8,
        listeners=[metrics],
        name="tokens",
    )
    try:
        engine.pause()
        futures = [engine.submit(x) for x in (4, 2, 8)]
        engine.resume()
        assert [future.result(timeout=10) for future in futures] == [4, 2, 8]
    finally:
        engine.close(timeout=5)
    samples = _latest(registry)
    tokens = {"engine": "online", "name": "tokens"}
    # [4, 2] padded to 8 (the 8 would make 3 x 8 = 24 > 10), then [8] alone.
    assert samples["batchpilot_batches_closed_total", labels(**tokens, reason="budget")] == 1
    assert samples["batchpilot_batches_closed_total", labels(**tokens, reason="idle_worker")] == 1
    assert samples["batchpilot_batch_cost_total", labels(**tokens)] == 14
    assert samples["batchpilot_batch_padded_cost_total", labels(**tokens)] == 16
    assert samples["batchpilot_batch_padded_fraction", labels(**tokens)] == pytest.approx(1 / 8)
