"""A real ``batchpilot serve`` process on 127.0.0.1 (a free port) and a small HTTP client.

Every wait is bounded: startup, requests (``timeout``) and shutdown; a server still
running at teardown is killed.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("orjson")

HERE = Path(__file__).parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            data,
            time.monotonic() - started,
        )
    finally:
        conn.close()


def predict(port: int, payload: Any, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    return request(port, "POST", "/predict", json.dumps(payload), headers, **kw)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str, **kw: Any) -> Reply:
        return request(self.port, "GET", path, **kw)

    def post(self, path: str, body: bytes, **kw: Any) -> Reply:
        return request(self.port, "POST", path, body, **kw)

    def predict(self, payload: Any, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        return predict(self.port, payload, headers, **kw)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/stats").json()
        return result

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_until(self, condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit code (killed and failed if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"the server did not exit within {timeout} s of SIGTERM") from None


def start_server(
    tmp_path: Path,
    target: str,
    *args: str,
    env: dict[str, str] | None = None,
    wait_for: str | None = "/ready",
    new_session: bool = False,
) -> Server:
    port = free_port()
    log = tmp_path / "model.log"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "SERVE_TEST_LOG": str(log),
        **(env or {}),
    }
    command = [sys.executable, "-m", "batchpilot", "serve", target, "--port", str(port), *args]
    process = subprocess.Popen(
        command,
        env=environment,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        start_new_session=new_session,  # its own process group, as under a terminal
    )
    server = Server(process, port, log)
    deadline = time.monotonic() + 30
    while wait_for is not None:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"the server exited with {process.returncode}: {stderr}")
        try:
            if request(port, "GET", wait_for, timeout=1).status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the server did not answer {wait_for} within 30 s")
        time.sleep(0.05)
    return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(target, *cli_args, env=, wait_for="/ready", new_session=False) -> Server``.

    Every server still running at teardown is killed.
    """
    servers: list[Server] = []

    def start(target: str, *args: str, **kw: Any) -> Server:
        server = start_server(tmp_path, target, *args, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(5)
        if server.process.stderr:
            server.process.stderr.close()
