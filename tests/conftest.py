"""Shared fixtures: real databases for the DB tests, and small generic helpers.

PostgreSQL: a throwaway server is started once per session, only when a test asks
for it: ``initdb`` into a temp dir, listening on a unix socket in that dir only (no
TCP port, so parallel runs never collide), fsync off, stopped and deleted at the
end. As root it runs as the ``postgres`` user (initdb refuses root). Set
``BATCHPILOT_TEST_POSTGRES_URL`` to use an existing server instead. Without server
binaries the PostgreSQL tests are skipped with the reason shown, except under CI
(``CI`` set), where that is a failure.

S3: ``s3`` is a real S3 endpoint on 127.0.0.1 (moto's server, one per session, on a
free port) with a fresh bucket per test; ``s3.storage_options`` is what
``batchpilot.sources``/``sinks`` and s3fs take to reach it.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_PG_PORT = 5432  # only names the socket file inside our private directory


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server reachable with ``url`` (SQLAlchemy, psycopg driver)."""

    url: str
    conninfo: str

    def url_with_schema(self, schema: str) -> str:
        """The server URL with ``search_path`` set to ``schema`` for every connection."""
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options=-csearch_path%3D{schema}"


def _find_pg_bin() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the PostgreSQL tests to run: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(command: list[str], as_postgres: bool) -> None:
    if as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session (see the module docstring)."""
    external = os.environ.get("BATCHPILOT_TEST_POSTGRES_URL")
    if external:
        conninfo = external.replace("postgresql+psycopg://", "postgresql://", 1)
        yield PostgresServer(url=external, conninfo=conninfo)
        return
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries (pg_ctl, initdb) not found; install postgresql")
    assert bin_dir is not None
    as_postgres = os.geteuid() == 0
    if as_postgres:
        if shutil.which("runuser") is None:
            _unavailable("running as root needs runuser to start PostgreSQL as user postgres")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root needs a 'postgres' user to start PostgreSQL as")
    base = Path(tempfile.mkdtemp(prefix="bp-pg-"))  # short: unix socket paths are limited
    data, log = base / "data", base / "log"
    pg_ctl = str(bin_dir / "pg_ctl")
    options = (
        f"-k {base} -p {_PG_PORT} -c listen_addresses='' -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        if as_postgres:
            shutil.chown(base, user="postgres", group="postgres")
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        _run([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"], as_postgres)
        _run([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], as_postgres)
    except RuntimeError as failure:
        server_log = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {failure}\n{server_log}") from None
    try:
        yield PostgresServer(
            url=f"postgresql+psycopg://postgres@/postgres?host={base}&port={_PG_PORT}",
            conninfo=f"host={base} port={_PG_PORT} user=postgres dbname=postgres",
        )
    finally:
        _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], as_postgres)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards."""
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield postgres_server.url_with_schema(schema)
    with psycopg.connect(postgres_server.conninfo, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a new SQLite database file in this test's temp dir."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once against a real SQLite file and once against real PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on the test S3 endpoint: ``url`` is ``s3://<bucket>``."""

    url: str
    endpoint: str
    storage_options: dict[str, object]

    def filesystem(self) -> object:
        """A fresh s3fs filesystem on the endpoint (no listing cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint (moto's threaded server) on 127.0.0.1, on a free port."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never probe a cloud
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3Bucket:
    """A new, empty bucket on the test S3 endpoint."""
    options: dict[str, object] = {
        "endpoint_url": s3_endpoint,
        "key": "testing",
        "secret": "testing",
        "use_listings_cache": False,
    }
    bucket = S3Bucket(f"s3://test-{uuid.uuid4().hex[:12]}", s3_endpoint, options)
    bucket.filesystem().mkdir(bucket.url)  # type: ignore[attr-defined]
    return bucket
