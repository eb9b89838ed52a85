"""The pooled engine behind a `Database`: URL checks, SQLite's write lock, begin and roll back."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

__all__ = ["connect_and_begin", "open_engine", "rollback_quietly"]

_log = logging.getLogger("batchpilot.db")

#: Execution option marking our own write transactions (SQLite begins them IMMEDIATE).
_WRITER = "batchpilot_writer"


def open_engine(
    url: str,
    *,
    pool_size: int,
    max_overflow: int,
    pool_timeout: float,
    pool_pre_ping: bool,
    sqlite_busy_timeout: float,
    engine_options: Mapping[str, Any] | None,
) -> sa.Engine:
    """A SQLAlchemy engine for ``url`` with its pool; SQLite writers take the lock at once."""
    parsed = _parse_url(url)
    options = dict(engine_options or {})
    if parsed.get_backend_name() == "sqlite":
        # The driver's own wait for a lock, made explicit (the caller's
        # connect_args win): each attempt waits up to this long.
        connect_args = dict(options.get("connect_args", {}))
        connect_args.setdefault("timeout", sqlite_busy_timeout)
        options["connect_args"] = connect_args
    engine = sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=pool_pre_ping,
        **options,
    )
    if engine.dialect.name == "sqlite":
        _begin_sqlite_transactions_immediately(engine)
    return engine


def connect_and_begin(engine: sa.Engine) -> sa.Connection:
    """A pooled connection with a write transaction begun on it."""
    connection = engine.connect().execution_options(**{_WRITER: True})
    try:
        connection.begin()
    except BaseException:
        connection.close()
        raise
    return connection


def rollback_quietly(connection: sa.Connection) -> None:
    """Roll back; a connection that cannot roll back is invalidated, never reused."""
    try:
        connection.rollback()
    except Exception:
        _log.warning("rollback failed; the connection is discarded", exc_info=True)
        with contextlib.suppress(Exception):
            connection.invalidate()


def _parse_url(url: str) -> sa.URL:
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError:
        raise ValueError(
            f"expected a database URL such as 'sqlite:///path/to/file.db' or "
            f"'postgresql+psycopg://user@host/dbname', got {url!r}"
        ) from None
    if parsed.drivername == "postgresql":
        # The [db] extra installs psycopg 3; SQLAlchemy 2.0 would look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    ):
        raise ValueError(
            "an in-memory SQLite database is private to one connection and cannot be "
            "pooled; use a file URL such as 'sqlite:///path/to/file.db'"
        )
    return parsed


def _begin_sqlite_transactions_immediately(engine: sa.Engine) -> None:
    # SQLAlchemy's documented recipe: stop pysqlite from starting transactions on its
    # own, and start them ourselves; our writers take the write lock at once, other
    # users of the engine (readers) begin deferred as usual.
    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        writer = connection.get_execution_options().get(_WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")
