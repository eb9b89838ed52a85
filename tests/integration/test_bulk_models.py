"""A model class runs once set up per worker: counted on a real Dask cluster of 2 worker
processes, a local Ray runtime on 127.0.0.1, and a process pool (issue 23 item 4).

Each model writes its process id to a file in ``setup()`` (the file named by the
environment, which the worker processes inherit): the distinct lines are the workers
that got work, and no line appears twice.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpilot.bulk import ItemFailure, ModelSetupError, RayExecutor, map_batches

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LOG_VARIABLE = "BATCHPILOT_TEST_SETUP_LOG"


class PidModel:
    """Writes its pid to the setup log when set up; predicts (pid, item * 2)."""

    def setup(self) -> None:
        with open(os.environ[LOG_VARIABLE], "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()}\n")
        self.factor = 2

    def predict(self, batch: list[int]) -> list[tuple[int, int]]:
        return [(os.getpid(), item * self.factor) for item in batch]


class BrokenModel:
    """Its setup always raises."""

    def setup(self) -> None:
        raise RuntimeError("no weights")

    def predict(self, batch: list[int]) -> list[int]:
        return batch


@pytest.fixture(scope="module")
def setup_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The setup log, named in the environment before any worker process starts."""
    path = tmp_path_factory.mktemp("models") / "setups.log"
    before = os.environ.get(LOG_VARIABLE)
    os.environ[LOG_VARIABLE] = str(path)
    yield path
    if before is None:
        del os.environ[LOG_VARIABLE]
    else:
        os.environ[LOG_VARIABLE] = before


@pytest.fixture
def log(setup_log: Path) -> Path:
    setup_log.write_text("")
    return setup_log


def check_once_per_worker(run: Any, log: Path, items: int) -> list[str]:
    """The run's results are right, and each worker that ran a chunk set up once."""
    out = list(run)
    assert [value for _, value in out] == [x * 2 for x in range(items)]
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)), f"a worker set the model up twice: {pids}"
    assert set(pids) == {str(pid) for pid, _ in out}  # the workers that got work
    assert run.statistics().model_setups == len(pids)
    assert run.stats()["chunks_processed"] >= 10  # many chunks per worker
    return pids


def test_on_threads_the_model_is_set_up_once_for_the_run(log: Path) -> None:
    run = map_batches(PidModel, range(500), batch_size=10, executor="threads", workers=4)
    assert check_once_per_worker(run, log, 500) == [str(os.getpid())]


def test_in_a_process_pool_the_model_is_set_up_once_per_process(log: Path) -> None:
    run = map_batches(PidModel, range(2000), batch_size=20, executor="processes", workers=2)
    assert 1 <= len(check_once_per_worker(run, log, 2000)) <= 2


def test_a_failing_setup_fails_the_items_with_its_cause_and_is_not_retried_per_item(
    log: Path,
) -> None:
    run = map_batches(BrokenModel, range(64), batch_size=64, executor="serial")
    out = list(run)
    assert all(isinstance(v, ItemFailure) and isinstance(v.error, ModelSetupError) for v in out)
    assert "RuntimeError: no weights" in str(out[0].error)
    assert run.statistics().model_setups == 0


def test_on_a_dask_cluster_of_two_processes_each_worker_sets_up_once(log: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        run = map_batches(PidModel, range(4000), batch_size=100, executor=client)
        pids = check_once_per_worker(run, log, 4000)
        assert len(pids) == 2, "both workers got work"
        # a second run of the same model on the same workers reuses their instances
        again = map_batches(PidModel, range(400), batch_size=100, executor=client)
        assert len(list(again)) == 400
        assert again.statistics().model_setups == 0
        assert log.read_text().split() == pids


@pytest.fixture(scope="module")
def ray_runtime(setup_log: Path) -> Iterator[Any]:
    """A local Ray runtime of 2 CPUs, no dashboard.

    Not bound to 127.0.0.1: this Ray's ``ray.init`` turns a loopback ``_node_ip_address``
    into the machine's address (``services.resolve_ip_for_localhost``); only ``ray start
    --node-ip-address`` binds it, with a driver of its own (tests/integration/
    test_cli_clusters.py).
    """
    ray = pytest.importorskip("ray")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    from ray import cloudpickle as ray_cloudpickle

    ray_cloudpickle.register_pickle_by_value(sys.modules[__name__])  # not importable there
    yield ray
    if started_here:
        ray.shutdown()


def test_on_ray_each_actor_of_the_pool_sets_up_once(ray_runtime: Any, log: Path) -> None:
    run = map_batches(PidModel, range(3000), batch_size=100, executor="ray", workers=2)
    pids = check_once_per_worker(run, log, 3000)
    assert len(pids) == 2, "both actors got work"


def test_ray_actors_reserve_what_they_are_given(ray_runtime: Any, log: Path) -> None:
    # 2 CPUs, 2 per actor: one actor fits, so every chunk runs in one process
    executor = RayExecutor(actors=True, num_cpus=2, num_gpus=0)
    assert executor.size == 1
    run = map_batches(PidModel, range(1000), batch_size=50, executor=executor)
    assert len(check_once_per_worker(run, log, 1000)) == 1


CLI_MODEL = """
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

class PidModel:
    def setup(self):
        with open({log!r}, "a", encoding="utf-8") as log:
            log.write(f"{{os.getpid()}}\\n")

    def predict(self, records):
        return [{{"id": r["id"], "pid": os.getpid()}} for r in records]
"""


@pytest.fixture
def cli_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module of a model class that logs its setups, importable here and in workers."""
    import importlib

    name = f"climodel_{uuid.uuid4().hex[:10]}"
    log = tmp_path / "setups.log"
    log.write_text("")
    (tmp_path / f"{name}.py").write_text(CLI_MODEL.format(log=str(log)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cloudpickle = pytest.importorskip("cloudpickle")
    module = importlib.import_module(name)
    cloudpickle.register_pickle_by_value(module)  # Ray workers do not have tmp_path
    try:
        from ray import cloudpickle as ray_cloudpickle  # Ray's own copy
    except ImportError:
        pass
    else:
        ray_cloudpickle.register_pickle_by_value(module)
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(3000)))
    return name, log


def run_cli_model(name: str, log: Path, *options: str) -> list[str]:
    """``batchpilot run NAME:PidModel``; the pids of its setups, checked against the output."""
    from batchpilot.cli import main

    argv = ["run", f"{name}:PidModel", "-i", "in.jsonl", "-o", "out.jsonl", "--no-progress"]
    assert main([*argv, "--batch-size", "50", *options]) == 0
    rows = [json.loads(line) for line in Path("out.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == list(range(3000))
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)), f"a worker set the model up twice: {pids}"
    assert set(pids) == {str(row["pid"]) for row in rows}
    return pids


def test_batchpilot_run_sets_a_model_class_up_once_on_threads(cli_model) -> None:
    assert run_cli_model(*cli_model, "--workers", "4") == [str(os.getpid())]


def test_batchpilot_run_sets_a_model_class_up_once_per_process(cli_model) -> None:
    pids = run_cli_model(*cli_model, "--executor", "processes", "--workers", "2")
    assert 1 <= len(pids) <= 2


def test_batchpilot_run_puts_a_model_class_on_ray_actors(ray_runtime: Any, cli_model) -> None:
    assert len(run_cli_model(*cli_model, "--executor", "ray", "--workers", "2")) == 2


def test_per_item_with_a_model_class_is_bad_usage(cli_model, capsys) -> None:
    from batchpilot.cli import main

    name, _ = cli_model
    code = main(["run", f"{name}:PidModel", "-i", "in.jsonl", "-o", "o.jsonl", "--per-item"])
    assert code == 2
    assert "is a model class, whose predict takes a list of records" in capsys.readouterr().err
