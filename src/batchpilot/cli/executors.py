"""Where the chunks of a run go: the executor named by ``--executor``, on an existing
cluster with ``--address``."""

from __future__ import annotations

from typing import Any

from .common import CliError

__all__ = ["executor_for", "require_installed"]


def require_installed(executor: str) -> None:
    """Refuse ``--executor dask|ray`` before any work when its extra is not installed.

    Raises:
        CliError: A module it needs is not installed.
    """
    from ..bulk.executors import resolve_executor

    try:
        resolve_executor(executor)
    except ImportError as exc:
        raise CliError(
            f"--executor {executor} needs {exc.name}, which is not installed: "
            f"pip install {exc.name}"
        ) from None


def executor_for(executor: str, address: str | None, workers: int | None, actors: bool) -> Any:
    """What ``map_batches`` runs on: the name ``executor``, or an executor connected to
    the existing cluster at ``address``; with ``actors`` (a model class), Ray's runs on
    an actor pool.

    Raises:
        CliError: The cluster cannot be reached.
    """
    from ..bulk.executors import DaskExecutor, RayExecutor

    if address is None and not (actors and executor == "ray"):
        return executor
    try:
        if executor == "dask":
            return DaskExecutor(address=address)
        return RayExecutor(workers, address=address, actors=actors)
    except Exception as exc:  # each client raises its own types for an unreachable cluster
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = "a local runtime" if address is None else f"the {executor} cluster at {address}"
        raise CliError(f"cannot connect to {where}: {message}") from None
