"""Schema migrations: numbered SQL files applied in order, once, under an advisory lock.

Many processes may start at once (a notebook and several `botq worker`s): the first takes the
lock and applies what is missing, the others wait for it and then find nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

MIGRATIONS_PACKAGE = "botq.db.migrations"
# An arbitrary constant that names botq's migration lock among advisory locks.
ADVISORY_LOCK_KEY = 0x626F7471  # "botq"
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")

CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS botq_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
SELECT_APPLIED = "SELECT version FROM botq_migrations"
INSERT_APPLIED = "INSERT INTO botq_migrations (version, name) VALUES (%s, %s)"
TABLE_EXISTS = "SELECT to_regclass('botq_migrations') IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """All migrations shipped with botq, in order."""
    found = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    return found


def pending(conn: psycopg.Connection) -> list[Migration]:
    """Migrations not yet applied to the database behind `conn`."""
    if not conn.execute(TABLE_EXISTS).fetchone()[0]:  # type: ignore[index]
        return migrations()
    applied = {row[0] for row in conn.execute(SELECT_APPLIED)}
    return [m for m in migrations() if m.version not in applied]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply missing migrations; return the versions this call applied."""
    if not pending(conn):
        return []
    done: list[int] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        conn.execute(CREATE_VERSIONS)
        for mig in pending(conn):
            with conn.transaction():
                conn.execute(mig.sql)
                conn.execute(INSERT_APPLIED, (mig.version, mig.name))
            done.append(mig.version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return done
