"""Where the chunks of a run go: the executor named by ``--executor``, on an existing
cluster with ``--address``."""

from __future__ import annotations

from typing import Any

from .common import CliError

__all__ = ["connect", "require_installed"]


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


def connect(executor: str, address: str, workers: int | None) -> Any:
    """The executor of a run on the existing ``executor`` cluster at ``address``.

    Raises:
        CliError: The cluster cannot be reached.
    """
    from ..bulk.executors import DaskExecutor, RayExecutor

    try:
        if executor == "dask":
            return DaskExecutor(address=address)
        return RayExecutor(workers, address=address)
    except Exception as exc:  # each client raises its own types for an unreachable cluster
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(
            f"cannot connect to the {executor} cluster at {address}: {message}"
        ) from None
