"""Targets for the hostile-request tests (``test_hostile_requests.py``), imported by
the server processes.

``SERVE_TEST_LOG``, when set, names a file the models append one line to per event
(``run ITEM`` as a batch starts, ``done ITEM`` as it ends).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any


def _log(line: str) -> None:
    path = os.environ.get("SERVE_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def double_a(batch: list[dict[str, int]]) -> list[dict[str, int]]:
    """The README-style model of a JSON object request."""
    return [{"y": x["a"] * 2} for x in batch]


def identity(batch: list[Any]) -> list[Any]:
    return list(batch)


async def slow_identity(batch: list[Any]) -> list[Any]:
    """Logs ``run ITEM`` per item, then answers each item with itself after SERVE_TEST_DELAY s."""
    for x in batch:
        _log(f"run {x}")
    await asyncio.sleep(float(os.environ.get("SERVE_TEST_DELAY", "0.5")))
    return batch


def slow_sync(batch: list[Any]) -> list[Any]:
    """A plain ``def`` that blocks its thread for SERVE_TEST_DELAY seconds."""
    for x in batch:
        _log(f"run {x}")
    time.sleep(float(os.environ.get("SERVE_TEST_DELAY", "2.0")))
    for x in batch:
        _log(f"done {x}")
    return batch


def _stop(batch: list[Any]) -> None:
    if "exit" in batch:
        sys.exit(3)
    if "interrupt" in batch:
        raise KeyboardInterrupt


def exits(batch: list[Any]) -> list[Any]:
    """``sys.exit(3)`` for a batch holding "exit", KeyboardInterrupt for "interrupt"."""
    _stop(batch)
    return batch


async def aexits(batch: list[Any]) -> list[Any]:
    """`exits` as an ``async def``."""
    await asyncio.sleep(0)
    _stop(batch)
    return batch


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def unprintable(batch: list[Any]) -> list[Any]:
    raise Unprintable
