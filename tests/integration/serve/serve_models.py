"""Targets the serve tests start servers on (imported by the server processes).

``SERVE_TEST_LOG``, when set, names a file each model appends one line to per event
(``setup PID``, ``started PID``, ``admitted ITEM``, ``run ITEM``), so a test can see
what the server processes did.
"""

from __future__ import annotations

import asyncio
import os
import time


def _log(line: str) -> None:
    path = os.environ.get("SERVE_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def double(xs: list[float]) -> list[float]:
    return [2 * x for x in xs]


async def adouble(xs: list[float]) -> list[float]:
    await asyncio.sleep(0)
    return [2 * x for x in xs]


async def slow(xs: list[object]) -> list[object]:
    """Logs every item it runs, then takes SERVE_TEST_DELAY seconds (default 0.3)."""
    for x in xs:
        _log(f"run {x}")
    await asyncio.sleep(float(os.environ.get("SERVE_TEST_DELAY", "0.3")))
    return xs


async def slow_in_thread(xs: list[object]) -> list[object]:
    """`slow`, with its wait in a thread of the event loop's default executor."""
    import time

    for x in xs:
        _log(f"run {x}")
    await asyncio.to_thread(time.sleep, float(os.environ.get("SERVE_TEST_DELAY", "0.3")))
    return xs


class SlowAdmitted:
    """`slow` as a model class that logs ``started PID`` and ``admitted ITEM``.

    A worker builds the model in its startup, with its signal handlers in place, and
    serves right after: with no ``setup()`` it is ready as it starts accepting (the
    CLI builds one in the supervisor too, to fail fast on a bad target). It
    decodes a request once it has admitted it, just before queueing it, so
    ``admitted`` means: this request is in flight in one of the workers.
    """

    def __init__(self) -> None:
        _log(f"started {os.getpid()}")

    def decode(self, request: object) -> object:
        _log(f"admitted {request}")
        return request

    async def predict(self, batch: list[object]) -> list[object]:
        return await slow(batch)


async def fail_negative(xs: list[float]) -> list[float]:
    """Fails any batch holding a negative number; waits a little so requests pile up."""
    await asyncio.sleep(0.2)
    if any(x < 0 for x in xs):
        raise ValueError("negative input")
    return [x + 1 for x in xs]


class Scaler:
    """A model class with all four hooks."""

    def setup(self) -> None:
        self.factor = 10
        _log(f"setup {os.getpid()}")

    def decode(self, request: dict[str, float]) -> float:
        return float(request["x"])

    def predict(self, batch: list[float]) -> list[float]:
        return [self.factor * x for x in batch]

    def encode(self, output: float) -> dict[str, float]:
        return {"y": output}


class WhoAmI:
    """Answers with its worker's pid."""

    def setup(self) -> None:
        self.pid = os.getpid()
        _log(f"setup {self.pid}")

    def predict(self, batch: list[object]) -> list[int]:
        return [self.pid] * len(batch)


class SlowSetup:
    """Logs ``setup PID`` as its setup() starts, then takes SERVE_TEST_DELAY s (default 1)."""

    def setup(self) -> None:
        import time

        _log(f"setup {os.getpid()}")
        time.sleep(float(os.environ.get("SERVE_TEST_DELAY", "1.0")))

    def predict(self, batch: list[object]) -> list[object]:
        return batch


class StaggeredSetup(WhoAmI):
    """`WhoAmI` whose first worker to start setup() is done at once, every other one
    after SERVE_TEST_DELAY seconds (default 3); logs ``ready PID`` when done."""

    def setup(self) -> None:
        import time

        marker = os.environ["SERVE_TEST_LOG"] + ".first"
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(float(os.environ.get("SERVE_TEST_DELAY", "3.0")))
        super().setup()
        _log(f"ready {self.pid}")


class BrokenSetup:
    def setup(self) -> None:
        raise RuntimeError("no weights here")

    def predict(self, batch: list[object]) -> list[object]:
        return batch


class Tokens:
    """Items are token-id lists; ``cost`` is an item's length. Logs ``batch N PADDED``
    per batch and holds the first batch 0.3 s, so that the next requests queue up."""

    def __init__(self) -> None:
        self.first = True

    def cost(self, item: list[int]) -> int:
        return len(item)

    def predict(self, batch: list[list[int]]) -> list[int]:
        _log(f"batch {len(batch)} {max(map(len, batch)) * len(batch)}")
        if self.first:
            self.first = False
            time.sleep(0.3)
        return [len(item) for item in batch]
