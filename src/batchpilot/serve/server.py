"""Running a `ServeApp` under uvicorn: one process, or a supervisor of ``workers`` processes.

SIGTERM (or Ctrl-C) drains: the app reports not ready and refuses new predictions,
uvicorn stops accepting connections, every request already in flight is answered,
queued items are finished, and the process exits 0. A second Ctrl-C exits at once.

With ``workers > 1`` the supervisor binds the socket and starts that many worker
processes (``python -m batchpilot.serve.worker``) that share it, each with its own
batcher and its own ``setup()``. SIGTERM or Ctrl-C to the supervisor drains every
worker (a second Ctrl-C kills them); its exit code is 0 when they all exit 0. A
worker that exits on its own (killed, or drained by a signal sent to it alone)
stops the others, and the supervisor exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Any

import uvicorn

from .._core.lifeline import exit_with_owner
from .app import ServeApp

__all__ = ["run", "serve_app"]

_log = logging.getLogger("batchpilot.serve")


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, told to drain the app on a signal and to exit 0 after it.

    Stock uvicorn re-raises the signal once it has shut down, which ends the
    process with -SIGTERM; a drained server has done its job, so it returns.
    """

    def __init__(self, config: uvicorn.Config, app: ServeApp, interrupt_forces: bool) -> None:
        super().__init__(config)
        self.app = app
        self.exit_code = 0
        self.interrupt_forces = interrupt_forces
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()  # before uvicorn installs handle_exit
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.interrupt_forces and self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            return
        # A signal handler runs between any two bytecodes of the loop's work. The drain
        # begins as a loop callback instead, so every request the server has already
        # parsed (its ASGI task is queued before the callback) is admitted and answered.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.app.begin_drain)
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.app.setup_error is not None:
            self.exit_code = 1
            return True
        return await super().on_tick(counter)


def serve_app(
    app: ServeApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sock: socket.socket | None = None,
    log_level: str = "warning",
    second_interrupt_exits: bool = True,
) -> int:
    """Serve ``app`` in this process until SIGTERM/SIGINT; return the exit code.

    ``sock``: an already bound listening socket (the supervisor's) instead of
    ``host``/``port``. ``second_interrupt_exits``: a second SIGINT while draining
    exits at once (a worker process leaves that to its supervisor, since Ctrl-C in
    a terminal reaches it as well). The exit code is 1 when the model's
    ``setup()`` failed.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        backlog=4096,
        proxy_headers=False,  # 2-3 % of a request; the app reads no X-Forwarded-* header
    )
    server = _DrainingServer(config, app, interrupt_forces=second_interrupt_exits)
    server.run(sockets=[sock] if sock is not None else None)
    if app.setup_error is not None:
        print(f"batchpilot serve: error: {app.setup_error}", file=sys.stderr)
        return 1
    return server.exit_code


def run(
    target: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "warning",
    **options: Any,
) -> int:
    """Serve ``target`` (see `batchpilot.serve.app`) until SIGTERM; return the exit code.

    Args:
        target: what `batchpilot.serve.app` accepts; with ``workers > 1`` it must
            be a ``"MODULE:ATTR"`` string (each worker process imports it).
        host: address to listen on.
        port: port to listen on (0: any free port).
        workers: processes, each with its own batcher and ``setup()``.
        log_level: uvicorn's log level.
        **options: `batchpilot.serve.ServeApp` options; with ``workers > 1`` they
            must be JSON values.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return serve_app(ServeApp(target, **options), host=host, port=port, log_level=log_level)
    if not isinstance(target, str):
        raise TypeError("with workers > 1 the target must be a 'MODULE:ATTR' string")
    return _supervise(target, host, port, workers, log_level, options)


def _supervise(
    target: str, host: str, port: int, workers: int, log_level: str, options: dict[str, Any]
) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=4096)
    listener.set_inheritable(True)
    spec = json.dumps({"target": target, "log_level": log_level, "options": options})
    command = [sys.executable, "-m", "batchpilot.serve.worker", str(listener.fileno()), spec]
    children = [subprocess.Popen(command, pass_fds=[listener.fileno()]) for _ in range(workers)]
    stopping = lost_a_worker = False

    def forward(sig: int, frame: FrameType | None) -> None:
        """First signal: drain every worker (SIGTERM); a second SIGINT: kill them."""
        nonlocal stopping
        kill = stopping and sig == signal.SIGINT
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            exits = [child.poll() for child in children]  # every child, so each is reaped
            if None not in exits:
                break
            if not stopping and any(code is not None for code in exits):
                _log.error("a worker exited (exit codes %s); stopping the others", exits)
                lost_a_worker = True
                forward(signal.SIGTERM, None)
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
    codes = [child.returncode for child in children]
    if not lost_a_worker and all(code == 0 for code in codes):
        return 0
    return max(1, *(abs(code) for code in codes))


def _worker_main(argv: list[str]) -> int:
    """Entry of one worker process: ``FD JSON`` (the shared socket and the app spec)."""
    fd, spec = int(argv[0]), json.loads(argv[1])
    exit_with_owner(os.getppid())  # no orphan keeps serving after a SIGKILLed supervisor
    sock = socket.socket(fileno=fd)
    os.environ.setdefault("BATCHPILOT_SERVE_WORKER", str(os.getpid()))
    app = ServeApp(spec["target"], **spec["options"])
    return serve_app(app, sock=sock, log_level=spec["log_level"], second_interrupt_exits=False)
