"""Test fixtures: a real PostgreSQL, started by the suite itself.

The suite starts botq's own local server in a temporary BOTQ_HOME (the same code path a user's
first `botq demo` takes), builds one migrated template database, and clones it for every test
that needs a database. Set BOTQ_TEST_DATABASE_URL to run against a server of your own instead
(its user must be allowed to create databases).
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from botq.db.database import Database
from botq.db.local import LocalServer, find_bin_dir
from botq.db.migrate import migrate

TEMPLATE = f"botq_template_{os.getpid()}"
_counter = itertools.count()


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in paths if p.exists()}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The test PostgreSQL: {'url': admin URL, 'local': LocalServer | None, 'modes_before': ...}."""
    url = os.environ.get("BOTQ_TEST_DATABASE_URL")
    if url:
        yield {"url": url, "local": None, "modes_before": {}, "home": None}
        return
    home = tmp_path_factory.mktemp("botq-home")
    watched = [*home.parents, *find_bin_dir().parents, Path.home()]
    before = _modes(watched)
    local = LocalServer(home)
    url = local.ensure_running()
    yield {"url": url, "local": local, "modes_before": before, "home": home, "watched": watched}
    local.stop()


def url_for(admin_url: str, dbname: str) -> str:
    return make_conninfo(admin_url, dbname=dbname)


@pytest.fixture(scope="session")
def template_url(server: dict[str, object]) -> Iterator[str]:
    admin = str(server["url"])
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = url_for(admin, TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


def fresh_database(admin_url: str, template: str | None = TEMPLATE) -> str:
    """Create an empty (or template-cloned) database; return its URL."""
    name = f"botq_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return url_for(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(server: dict[str, object], template_url: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    admin = str(server["url"])
    url = fresh_database(admin)
    yield url
    drop_database(admin, url)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()
