"""SIGTERM drains a real server; ``--workers N`` runs N processes with their own setup().

Also what bounds a drain: its deadline, a signal during ``setup()``, a second Ctrl-C,
and a supervisor killed before its workers could watch it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import psutil
import pytest


def _refuses_connections(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def _arrived(server) -> tuple[int, int]:
    """(requests that reached the app, of which still in flight)."""
    stats = server.stats()
    return stats["in_flight"] + sum(stats["responses"].values()), stats["in_flight"]


@pytest.mark.slow
def test_sigterm_answers_all_200_in_flight_requests_and_exits_0(serve):
    server = serve("serve_models:slow", "--max-batch-size", "256", env={"SERVE_TEST_DELAY": "1.0"})
    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        replies = [pool.submit(server.predict, i, timeout=30) for i in range(200)]
        server.wait_until(
            lambda: _arrived(server)[0] >= 200, timeout=20, what="200 requests to arrive"
        )
        in_flight = _arrived(server)[1]
        server.process.send_signal(signal.SIGTERM)
        server.wait_until(
            lambda: _refuses_connections(server.port), timeout=5, what="the listener to close"
        )
        unanswered_when_closed = sum(not r.done() for r in replies)
        results = [r.result(30) for r in replies]
    # batches run one at a time for 1 s each: most requests are still waiting at SIGTERM
    assert in_flight >= 100 and unanswered_when_closed >= 100
    assert [r.status for r in results] == [200] * 200
    assert sorted(r.json() for r in results) == list(range(200))
    assert server.process.wait(20) == 0


@pytest.mark.slow
def test_workers_are_processes_with_their_own_setup(serve):
    server = serve("serve_models:WhoAmI", "--workers", "2")
    server.wait_until(
        lambda: len([x for x in server.log_lines() if x.startswith("setup")]) == 2,
        what="both workers' setup()",
    )
    setup_pids = {int(line.split()[1]) for line in server.log_lines() if line.startswith("setup")}
    assert len(setup_pids) == 2 and server.process.pid not in setup_pids
    answered: set[int] = set()
    deadline = time.monotonic() + 20
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while answered != setup_pids and time.monotonic() < deadline:
            answered |= {r.json() for r in pool.map(server.predict, range(32))}
    assert answered == setup_pids  # both workers serve, each its own model instance
    assert server.terminate() == 0


@pytest.mark.slow
def test_ctrl_c_drains_every_worker_and_exits_0(serve):
    """Ctrl-C in a terminal signals the whole process group: supervisor and workers.

    The signal goes out once both workers are serving (``/ready`` answered by one
    says nothing of the other) and together have admitted all 40 requests (a request
    the client has sent may still wait in the kernel's accept queue; one read after
    the signal is new, and refused).
    """
    server = serve(
        "serve_models:SlowAdmitted", "--workers", "2", "--max-batch-size", "64",
        env={"SERVE_TEST_DELAY": "1.0"}, new_session=True,
    )  # fmt: skip
    server.wait_until(
        lambda: len(_started_workers(server)) == 2, timeout=20, what="both workers to start"
    )
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        replies = [pool.submit(server.predict, i, timeout=30) for i in range(40)]
        server.wait_until(
            lambda: sum(line.startswith("admitted ") for line in server.log_lines()) == 40,
            timeout=20,
            what="the workers to admit all 40 requests",
        )
        os.killpg(server.process.pid, signal.SIGINT)
        unanswered_when_signalled = sum(not r.done() for r in replies)
        results = [r.result(30) for r in replies]
    # batches take 1 s each: the drain has requests left to finish
    assert unanswered_when_signalled >= 1
    assert [r.status for r in results] == [200] * 40
    assert sorted(r.json() for r in results) == list(range(40))
    assert server.process.wait(20) == 0


@pytest.mark.slow
@pytest.mark.parametrize("started", ["first", "last"])
def test_a_worker_that_exits_stops_the_supervisor_with_an_error(serve, started):
    """Whichever worker exits (the supervisor once noticed only the first it started)."""
    server = serve("serve_models:WhoAmI", "--workers", "2")
    server.wait_until(
        lambda: len([x for x in server.log_lines() if x.startswith("setup")]) == 2,
        what="both workers' setup()",
    )
    workers = _children_in_start_order(server.process.pid)
    assert set(workers) == {int(x.split()[1]) for x in server.log_lines() if x.startswith("setup")}
    os.kill(workers[0] if started == "first" else workers[-1], signal.SIGKILL)
    assert server.process.wait(20) != 0
    assert server.process.stderr is not None
    assert "a worker exited" in server.process.stderr.read().decode()


@pytest.mark.slow
def test_workers_exit_when_the_supervisor_is_killed(serve):
    """SIGKILL gives the supervisor no chance to drain: its workers must not serve on."""
    server = serve("serve_models:WhoAmI", "--workers", "2")
    server.wait_until(
        lambda: len([x for x in server.log_lines() if x.startswith("setup")]) == 2,
        what="both workers' setup()",
    )
    workers = [int(x.split()[1]) for x in server.log_lines() if x.startswith("setup")]
    server.process.kill()
    server.process.wait(10)
    server.wait_until(
        lambda: not any(_alive(pid) for pid in workers), timeout=10, what="the workers to exit"
    )
    assert _refuses_connections(server.port)


@pytest.mark.slow
def test_a_half_sent_body_holds_the_drain_only_until_its_deadline(serve):
    """The client sends headers and half its body, then nothing: the drain closes it."""
    server = serve("serve_models:double", "--timeout", "1")  # drain deadline: 1 + 5 s
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n[1, 2,")
        server.wait_until(
            lambda: server.stats()["in_flight"] == 1, what="the request to reach the app"
        )
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(6 + 20)  # hang guard: the deadline plus generous slack
        drained_for = time.monotonic() - signalled
    assert code == 0
    assert drained_for >= 5.5  # the client had its deadline, not less
    assert server.process.stderr is not None
    stderr = server.process.stderr.read().decode()
    assert "drain deadline (6 s) passed: closing 1 connection(s) still open, 1 request(s)" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_during_a_long_setup_exits_at_once(serve, workers):
    server = serve(
        "serve_models:SlowSetup", "--workers", workers,
        env={"SERVE_TEST_DELAY": "600"}, wait_for="/health",
    )  # fmt: skip
    server.wait_until(
        lambda: sum(x.startswith("setup ") for x in server.log_lines()) == int(workers),
        timeout=30,
        what="every worker's setup() to start",
    )
    assert server.terminate(timeout=30) == 0  # setup() would take 10 minutes


@pytest.mark.slow
@pytest.mark.parametrize("target", ["serve_models:slow", "serve_models:slow_in_thread"])
def test_a_second_ctrl_c_exits_at_once_without_a_traceback(serve, target):
    server = serve(target, env={"SERVE_TEST_DELAY": "600"})
    client = threading.Thread(target=_ignore_errors, args=(server.predict, 7), daemon=True)
    client.start()
    server.wait_until(lambda: "run 7" in server.log_lines(), what="the batch to start")
    server.process.send_signal(signal.SIGINT)  # the drain now waits for a 10-minute batch
    server.wait_until(
        lambda: _refuses_connections(server.port), timeout=10, what="the drain to begin"
    )
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(30) == 130
    assert server.process.stderr is not None
    stderr = server.process.stderr.read().decode()
    assert "Traceback" not in stderr and "exiting at once" in stderr


@pytest.mark.slow
def test_workers_exit_when_the_supervisor_is_killed_while_they_start(serve):
    """The supervisor dies before its workers reach the code that watches it.

    Each worker is stopped (SIGSTOP) as soon as it is spawned, and continued only
    once the supervisor is dead: it starts with its parent already gone.
    """
    server = serve(
        "serve_models:SlowSetup", "--workers", "2",
        env={"SERVE_TEST_DELAY": "600"}, wait_for=None,
    )  # fmt: skip
    supervisor = psutil.Process(server.process.pid)
    server.wait_until(lambda: len(supervisor.children()) == 2, what="two workers to be spawned")
    workers = supervisor.children()
    for worker in workers:
        worker.suspend()
    server.process.kill()
    server.process.wait(10)
    for worker in workers:
        worker.resume()
    try:
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
    finally:
        for worker in workers:
            if _alive(worker.pid):
                worker.kill()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_0_prints_the_address_once_listening(serve, workers):
    server = serve("serve_models:double", "--port", "0", "--workers", workers, wait_for=None)
    line = _first_line(server.process, timeout=30)
    found = re.fullmatch(r"batchpilot serve: listening on http://127\.0\.0\.1:(\d+)", line)
    assert found, line
    server.port = int(found[1])
    assert server.get("/health").status == 200
    assert server.terminate() == 0


@pytest.mark.slow
def test_sigterm_while_workers_still_import_exits_0(serve):
    """The workers are spawned as the address is printed; SIGTERM then finds them
    before they have any handler: each ends by the signal, with nothing in flight."""
    server = serve("serve_models:double", "--port", "0", "--workers", "2", wait_for=None)
    _first_line(server.process, timeout=30)
    assert server.terminate() == 0


def _first_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line the process writes on stderr (a thread reads it: bounded wait)."""
    lines: list[bytes] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: lines.append(process.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"nothing on stderr within {timeout} s"
    return lines[0].decode().rstrip("\n")


def _ignore_errors(call, *args) -> None:
    with contextlib.suppress(OSError):  # the server went away: what the test wants
        call(*args, timeout=60)


def _started_workers(server) -> set[int]:
    """Pids of the workers that built their model (the supervisor's CLI builds one too)."""
    started = {int(x.split()[1]) for x in server.log_lines() if x.startswith("started ")}
    return started - {server.process.pid}


def _children_in_start_order(pid: int) -> list[int]:
    children = psutil.Process(pid).children()
    return [child.pid for child in sorted(children, key=lambda c: (c.create_time(), c.pid))]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
