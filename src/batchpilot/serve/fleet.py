"""The whole server seen from any one worker of ``batchpilot serve --workers N``.

The supervisor makes a private folder (and removes it at exit) and tells every
worker its index in it. Each worker publishes a snapshot of itself there, one JSON
file replaced atomically, when its ``setup()`` ends, once a second, and when it
drains, and before it answers ``/ready``, ``/stats`` or ``/metrics``, which it
does with every worker's file. So readiness means every worker is ready, and
counters add up across workers whichever connection a scrape lands on; the peers'
numbers are at most a second old, and never go down from one scrape to the next.

A snapshot is ``{"worker", "pid", "setup_done", "ready", "draining", "stats",
"metrics"}``: ``stats`` is the worker's own ``/stats`` body, ``metrics`` its
Prometheus samples as ``[name, type, help, [[sample, labels, value], ...]]``.
Every exported metric is a counter, a histogram or a gauge of something that adds
up (requests in flight, queue depth), so merging is a sum per sample.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from .._core.cost import padded_fraction

__all__ = ["Fleet", "all_set_up", "merge_metrics", "merge_stats", "metric_samples"]

Snapshot = dict[str, Any]
_log = logging.getLogger("batchpilot.serve")

_SUMMED_BATCHER = (
    "queue_size", "active_batches", "batches", "items", "succeeded", "failed", "expired",
    "cancelled", "failed_batches", "waits", "cost", "padded_cost", "oom_splits",
)  # fmt: skip
_SUMMED_SERIES = ("requests", "errors", "batches", "queue_depth")


class Fleet:
    """One worker's view of the folder its supervisor shares with every worker.

    Args:
        folder: the supervisor's folder.
        index: this worker's number, 0 to ``size - 1``.
        size: how many workers the supervisor started.
    """

    def __init__(self, folder: str | Path, index: int, size: int) -> None:
        self.folder = Path(folder)
        self.index = index
        self.size = size

    def publish(self, snapshot: Snapshot) -> None:
        """Replace this worker's file with ``snapshot`` (readers never see half of it)."""
        path = self._path(self.index)
        partial = path.with_suffix(".tmp")
        try:
            partial.write_bytes(json.dumps(snapshot).encode())
            os.replace(partial, path)
        except OSError as exc:  # the peers see older numbers; this worker serves on
            _log.warning("cannot publish this worker's state to %s: %s", self.folder, exc)

    def snapshots(self, own: Snapshot) -> list[Snapshot | None]:
        """Every worker's snapshot by index, None for a worker that has published
        nothing yet; ``own`` (this worker's, fresh) is published first.

        So what any worker answers is the sum of the files as they are now: every file
        only grows, so a counter scraped from one worker, then from another, never
        goes down (Prometheus would read that as a restart).
        """
        self.publish(own)
        found: list[Snapshot | None] = []
        for index in range(self.size):
            if index == self.index:
                found.append(own)
                continue
            try:
                found.append(json.loads(self._path(index).read_bytes()))
            except (OSError, ValueError):  # not published yet (or gone with its folder)
                found.append(None)
        return found

    def _path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.json"


def all_set_up(snapshots: Iterable[Snapshot | None]) -> bool:
    """Whether every worker has published that its ``setup()`` is done."""
    return all(s is not None and s["setup_done"] for s in snapshots)


def merge_stats(snapshots: list[Snapshot | None], ready: bool) -> dict[str, Any]:
    """The ``/stats`` body of the whole server: sums, plus one summary per worker.

    The first published snapshot gives the fields every worker shares (model,
    timeout, ...); ``ready`` is the server's readiness as ``/ready`` decides it.
    """
    present = [s for s in snapshots if s is not None]
    stats = [s["stats"] for s in present]
    responses: dict[str, int] = {}
    for one in stats:
        for code, n in one["responses"].items():
            responses[code] = responses.get(code, 0) + n
    merged = {
        **stats[0],
        "ready": ready,
        "setup_done": len(present) == len(snapshots) and all(s["setup_done"] for s in present),
        "draining": any(s["draining"] for s in present),
        "responses": dict(sorted(responses.items(), key=lambda kv: int(kv[0]))),
        **{key: sum(one[key] for one in stats) for key in ("rejected", "timed_out", "in_flight")},
        "batcher": _merge_batcher([one["batcher"] for one in stats]),
        "series": _merge_series([one["series"] for one in stats]),
        "workers": [_worker_summary(i, s) for i, s in enumerate(snapshots)],
    }
    return merged


def _merge_batcher(batchers: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters summed; means recomputed; any other field kept where every worker agrees."""
    merged: dict[str, Any] = {}
    for key in batchers[0]:
        values = [b[key] for b in batchers]
        if key in _SUMMED_BATCHER:
            merged[key] = sum(values)
        else:
            merged[key] = values[0] if all(v == values[0] for v in values) else None
    batches = merged["batches"]
    merged["mean_batch_size"] = merged["items"] / batches if batches else 0.0
    merged["mean_batch_duration"] = (
        sum(b["mean_batch_duration"] * b["batches"] for b in batchers) / batches if batches else 0.0
    )
    if "close_reasons" in merged:  # batches by why they closed, and the padding, fleet-wide
        reasons: Counter[str] = Counter()
        for batcher in batchers:
            reasons.update(batcher["close_reasons"])
        merged["close_reasons"] = dict(reasons)
        merged["padded_fraction"] = padded_fraction(merged["cost"], merged["padded_cost"])
    return merged


def _merge_series(series: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """Per-second columns aligned on each worker's latest second (they tick out of phase).

    Counts and queue depths add up; ``p50_ms`` is the request-weighted mean of the
    workers' medians, ``p99_ms`` the highest worker's, ``t`` the latest.
    """
    length = max(len(one["t"]) for one in series)
    columns: dict[str, list[Any]] = {name: [] for name in series[0]}
    for back in range(length, 0, -1):
        rows = [
            {name: column[-back] for name, column in one.items()}
            for one in series
            if len(one["t"]) >= back
        ]
        requests = sum(row["requests"] for row in rows)
        batches = sum(row["batches"] for row in rows)
        items = sum(row["mean_batch_size"] * row["batches"] for row in rows)
        columns["t"].append(max(row["t"] for row in rows))
        for name in _SUMMED_SERIES:
            columns[name].append(sum(row[name] for row in rows))
        columns["p50_ms"].append(
            sum(row["p50_ms"] * row["requests"] for row in rows) / requests if requests else 0.0
        )
        columns["p99_ms"].append(max(row["p99_ms"] for row in rows))
        columns["mean_batch_size"].append(items / batches if batches else 0.0)
    return columns


def _worker_summary(index: int, snapshot: Snapshot | None) -> dict[str, Any]:
    if snapshot is None:
        return {"worker": index, "pid": None, "setup_done": False, "ready": False}
    stats, batcher = snapshot["stats"], snapshot["stats"]["batcher"]
    return {
        "worker": index,
        "pid": snapshot["pid"],
        "setup_done": snapshot["setup_done"],
        "ready": snapshot["ready"],
        "draining": snapshot["draining"],
        "responses": stats["responses"],
        "in_flight": stats["in_flight"],
        "queue_size": batcher["queue_size"],
        "batches": batcher["batches"],
        "items": batcher["items"],
    }


def metric_samples(registry: CollectorRegistry) -> list[list[Any]]:
    """The registry's current samples in the snapshot's JSON form."""
    return [
        [family.name, family.type, family.documentation, [list(s[:3]) for s in family.samples]]
        for family in registry.collect()
    ]


class _Merged:
    """A collector of fixed families (what `merge_metrics` registers)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_metrics(snapshots: Iterable[Snapshot | None]) -> CollectorRegistry:
    """A registry exposing every worker's samples summed per name and labels."""
    families: dict[str, Metric] = {}
    totals: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for snapshot in snapshots:
        if snapshot is None:
            continue
        for name, kind, documentation, samples in snapshot["metrics"]:
            if name not in families:
                families[name] = Metric(name, documentation, kind)
                totals[name] = {}
            for sample, labels, value in samples:
                key = (sample, tuple(sorted(labels.items())))
                totals[name][key] = totals[name].get(key, 0.0) + value
    for name, family in families.items():
        for (sample, labels), value in totals[name].items():
            family.add_sample(sample, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(list(families.values())))
    return registry
