"""`botq.connect()`: a connection pool on the configured or the local PostgreSQL."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from botq.db.local import LocalServer
from botq.db.migrate import migrate
from botq.errors import ConfigError

if TYPE_CHECKING:
    from botq.queue.activity import ActivityLog
    from botq.queue.taskqueue import TaskQueue

URL_ENV = "BOTQ_DATABASE_URL"
# A pooled connection idle for longer than this is checked before use, so that the first call
# after a server restart gets a fresh connection instead of an error.
CHECK_IDLE_AFTER_S = 1.0


# The workers' own sessions: no disk flush per commit (see worker_connection), and no plan that
# reads every pending task to sort them: a queue's statistics are always out of date, and the
# claim must walk its index in order and stop after `limit` rows.
WORKER_SESSION = "-c synchronous_commit=off -c enable_bitmapscan=off -c enable_sort=off"


def _check_if_idle(conn: psycopg.Connection) -> None:
    used_at = getattr(conn, "_botq_used_at", None)
    if used_at is None or time.monotonic() - used_at > CHECK_IDLE_AFTER_S:
        ConnectionPool.check_connection(conn)


def redact(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    return re.sub(
        r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"password=[^&\s]*", "password=***", url)
    )


def resolve_url(url: str | None = None) -> str:
    """The database URL: the argument, else $BOTQ_DATABASE_URL, else the local server's."""
    if url:
        return url
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    return LocalServer().ensure_running()


class Database:
    """A psycopg 3 connection pool plus the queue and activity log that use it."""

    def __init__(self, url: str, *, max_size: int = 16, apply_migrations: bool = True) -> None:
        self.url = url
        try:  # fail fast, with the server's own words, before a pool starts retrying
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise ConfigError(
                f"cannot connect to PostgreSQL at {redact(url)}: {str(exc).strip()}. Check that "
                f"the server runs and the URL is right (set {URL_ENV}, or unset it to use "
                "botq's local server)"
            ) from None
        self.pool = _open_pool(url, max_size=max_size, name="botq")
        self._worker_pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        if apply_migrations:
            with self.connection() as conn:
                migrate(conn)
        self._queue: TaskQueue | None = None
        self._activity: ActivityLog | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection."""
        with _using(self.pool) as conn:
            yield conn

    @contextmanager
    def worker_connection(self) -> Iterator[psycopg.Connection]:
        """A connection for the workers' own queue statements (claim, finish, heartbeat).

        Those run with synchronous_commit off: a crash of the server may forget the last
        fraction of a second of them, which the lease mechanism already covers (a forgotten
        claim or completion means the task runs again), and it takes a disk flush off the
        hot path. Handlers' own writes go through `connection()`, durable as usual.
        """
        if self._worker_pool is None:
            with self._lock:
                if self._worker_pool is None:
                    self._worker_pool = _open_pool(
                        self.url,
                        max_size=4,
                        name="botq-worker",
                        options=WORKER_SESSION,
                    )
        with _using(self._worker_pool) as conn:
            yield conn

    @property
    def queue(self) -> TaskQueue:
        if self._queue is None:
            from botq.queue.taskqueue import TaskQueue

            self._queue = TaskQueue(self)
        return self._queue

    @property
    def activity(self) -> ActivityLog:
        if self._activity is None:
            from botq.queue.activity import ActivityLog

            self._activity = ActivityLog(self)
        return self._activity

    def close(self) -> None:
        """Close every pooled connection."""
        if self._worker_pool is not None:
            self._worker_pool.close()
        self.pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({redact(self.url)!r})"


def _open_pool(url: str, *, max_size: int, name: str, options: str | None = None) -> ConnectionPool:
    kwargs: dict[str, object] = {"autocommit": True}
    if options:
        kwargs["options"] = options
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs=kwargs,
        open=False,
        name=name,
        timeout=30,
        check=_check_if_idle,
    )
    try:
        pool.open(wait=True, timeout=15)
    except PoolTimeout as exc:
        pool.close()
        raise ConfigError(
            f"cannot connect to PostgreSQL at {redact(url)}: check that the server runs and "
            f"the URL is right (set {URL_ENV}, or unset it to use botq's local server)"
        ) from exc
    return pool


@contextmanager
def _using(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    with pool.connection() as conn:
        try:
            yield conn
        finally:
            conn._botq_used_at = time.monotonic()  # type: ignore[attr-defined]


def connect(url: str | None = None, *, max_size: int = 16) -> Database:
    """Connect to `url`, $BOTQ_DATABASE_URL, or the local server (started if needed).

    Migrations are applied on connect (under an advisory lock, so concurrent starts are safe).
    """
    return Database(resolve_url(url), max_size=max_size)
