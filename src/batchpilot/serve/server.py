"""Running a `ServeApp` under uvicorn: one process, or a supervisor of ``workers`` processes.

Once listening, one line on stderr gives the address (the port chosen by ``port=0``).

SIGTERM (or Ctrl-C) drains: the app reports not ready and refuses new predictions,
uvicorn stops accepting connections, every request already in flight is answered,
queued items are finished, and the process exits 0. The drain lasts at most the
app's ``drain_timeout``: then the connections still open (a client that never sends
the rest of its body) are closed, a warning says how many, and the process exits 0.
A second Ctrl-C exits at once, with code 130.

With ``workers > 1`` the supervisor binds the socket and starts that many worker
processes (``python -m batchpilot.serve.worker``) that share it, each with its own
batcher and its own ``setup()``, and a private folder through which every worker
answers ``/ready``, ``/stats`` and ``/metrics`` for all of them (`.fleet`). Each
worker is given its supervisor's pid and exits when it is gone, even if that
happened before the worker started. SIGTERM or Ctrl-C to the supervisor drains
every worker (a second Ctrl-C kills them, as does the end of the drain deadline
plus a grace); its exit code is 0 when they all exit 0. A worker that exits on its
own (killed, or drained by a signal sent to it alone) stops the others, and the
supervisor exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import Any

import uvicorn

from .._core.lifeline import exit_with_owner
from .app import ServeApp
from .fleet import Fleet

__all__ = ["run", "serve_app"]

_log = logging.getLogger("batchpilot.serve")

_KILL_GRACE = 5.0
"""Seconds the supervisor allows past its workers' drain deadline before SIGKILL."""


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, told to drain the app on a signal and to exit 0 after it.

    Stock uvicorn re-raises the signal once it has shut down, which ends the
    process with -SIGTERM; a drained server has done its job, so it returns.
    """

    def __init__(
        self, config: uvicorn.Config, app: ServeApp, interrupt_forces: bool, announce: bool
    ) -> None:
        super().__init__(config)
        self.app = app
        self.exit_code = 0
        self.interrupt_forces = interrupt_forces
        self.announce = announce
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()  # before uvicorn installs handle_exit
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.announce and self.started:
            _announce(self.servers[0].sockets[0].getsockname())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, with connections still open at the deadline closed."""
        left = self.app.drain_time_left()
        self.config.timeout_graceful_shutdown = left  # type: ignore[assignment]
        if left is not None:
            assert self._loop is not None
            self._loop.call_later(left, self._report_dropped, left)
        await super().shutdown(sockets)

    def _report_dropped(self, left: float) -> None:
        connections = len(self.server_state.connections)
        if connections:
            telemetry = self.app.telemetry
            _log.warning(
                "drain deadline (%g s) passed: closing %d connection(s) still open, "
                "%d request(s) to /predict among them unanswered",
                self.app.drain_timeout, connections, telemetry.in_flight if telemetry else 0,
            )  # fmt: skip

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.interrupt_forces and self.should_exit and sig == signal.SIGINT:
            # Waiting on user code (a batch, setup()) is what the first Ctrl-C asked
            # for; the second one means now, whatever is running.
            print("batchpilot serve: interrupted again: exiting at once", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + signal.SIGINT)
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
    ``host``/``port``; without it, one line on stderr gives the address once
    listening. ``second_interrupt_exits``: a second SIGINT while draining exits at
    once with code 130 (a worker process leaves that to its supervisor, since Ctrl-C
    in a terminal reaches it as well). The exit code is 1 when the model's
    ``setup()`` failed (the app has logged why).
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
    server = _DrainingServer(
        config, app, interrupt_forces=second_interrupt_exits, announce=sock is None
    )
    server.run(sockets=[sock] if sock is not None else None)
    return 1 if app.setup_error is not None else server.exit_code


def _announce(address: tuple[Any, ...]) -> None:
    """The one line that says where the server listens."""
    host, port = address[0], address[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"batchpilot serve: listening on http://{shown}:{port}", file=sys.stderr, flush=True)


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
        **options: `batchpilot.serve.ServeApp` options (``drain_timeout`` among
            them); with ``workers > 1`` they must be JSON values.
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
    drain_timeout = ServeApp(target, **options).drain_timeout  # checks the options too
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=4096)
    listener.set_inheritable(True)
    folder = tempfile.mkdtemp(prefix="batchpilot-serve-")
    spec = {
        "target": target, "log_level": log_level, "options": options,
        "owner": os.getpid(), "fleet": folder, "workers": workers,
    }  # fmt: skip
    children = [_spawn_worker(listener, {**spec, "index": index}) for index in range(workers)]
    _announce(listener.getsockname())  # the kernel queues connections from now on
    stopping = lost_a_worker = False
    kill_at = float("inf")

    def forward(sig: int, frame: FrameType | None) -> None:
        """First signal: drain every worker (SIGTERM); a second SIGINT: kill them."""
        nonlocal stopping, kill_at
        kill = stopping and sig == signal.SIGINT
        if not stopping:
            kill_at = time.monotonic() + drain_timeout + _KILL_GRACE
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
            elif time.monotonic() > kill_at:
                _log.error(
                    "workers still running %g s past the drain deadline: killed", _KILL_GRACE
                )
                kill_at = float("inf")
                for child in children:
                    if child.poll() is None:
                        child.kill()
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)
    return _exit_code([child.returncode for child in children], lost_a_worker)


def _spawn_worker(listener: socket.socket, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A worker process serving ``spec`` on ``listener`` (inherited by descriptor)."""
    fd = listener.fileno()
    command = [sys.executable, "-m", "batchpilot.serve.worker", str(fd), json.dumps(spec)]
    return subprocess.Popen(command, pass_fds=[fd])


def _exit_code(codes: list[int], lost_a_worker: bool) -> int:
    """The supervisor's exit code from its workers' (0: every one stopped cleanly).

    A worker told to stop before it had its handlers (still importing) ends by the
    SIGTERM itself: it had nothing in flight, so that is a clean stop too.
    """
    stopped = (0, -signal.SIGTERM)
    if not lost_a_worker and all(code in stopped for code in codes):
        return 0
    return max(1, *(abs(code) for code in codes))


def _worker_main(argv: list[str]) -> int:
    """Entry of one worker process: ``FD JSON`` (the shared socket and the worker's spec)."""
    fd, spec = int(argv[0]), json.loads(argv[1])
    # The owner's pid, not os.getppid(): a supervisor killed before this line ran has
    # already handed its children to init, whose pid would be watched instead.
    exit_with_owner(spec["owner"])
    sock = socket.socket(fileno=fd)
    os.environ.setdefault("BATCHPILOT_SERVE_WORKER", str(os.getpid()))
    app = ServeApp(spec["target"], **spec["options"])
    app.fleet = Fleet(spec["fleet"], spec["index"], spec["workers"])
    return serve_app(app, sock=sock, log_level=spec["log_level"], second_interrupt_exits=False)
