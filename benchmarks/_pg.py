"""PostgreSQL helpers shared by the benchmarks: a throwaway server, fresh databases, facts.

`BenchServer` either wraps a server the user points at (`--url`) or starts botq's own local
PostgreSQL under a temporary BOTQ_HOME, and removes that cluster again on `close()`. Every
measurement gets a database of its own (`create_database` / `drop_database`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database (a key=value conninfo string)."""
    return make_conninfo(conninfo, dbname=dbname)


def describe(conninfo: str) -> str:
    """Where a conninfo points, without any password: for messages."""
    params = conninfo_to_dict(conninfo)
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def asyncpg_kwargs(conninfo: str) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments for a libpq conninfo (a Unix-socket dir as host)."""
    params = conninfo_to_dict(conninfo)
    out: dict[str, Any] = {}
    for libpq, ours in (("host", "host"), ("user", "user"), ("password", "password")):
        if params.get(libpq):
            out[ours] = params[libpq]
    if params.get("dbname"):
        out["database"] = params["dbname"]
    if params.get("port"):
        out["port"] = int(params["port"])  # type: ignore[arg-type]
    return out


class BenchServer:
    """The PostgreSQL every library runs against in one benchmark run."""

    def __init__(self, url: str | None = None) -> None:
        self._home: Path | None = None
        self._local: Any = None
        if url:
            self.url = url
            self.owned = False
        else:
            from botq.db.local import LocalServer

            self._home = Path(tempfile.mkdtemp(prefix="botq-bench-"))
            self._local = LocalServer(self._home)
            self.url = self._local.ensure_running()
            self.owned = True

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        """Create an empty database and return a conninfo string for it."""
        if not _NAME.match(name):
            raise ValueError(f"bad database name {name!r}")
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_dbname(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop a benchmark database, closing whatever connections still use it."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def facts(self) -> dict[str, Any]:
        """Server version and the settings that move queue figures the most."""
        out: dict[str, Any] = {"owned_local_server": self.owned}
        with self.admin() as conn:
            out["version"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            for name in (
                "synchronous_commit",
                "fsync",
                "shared_buffers",
                "max_connections",
                "wal_level",
                "autovacuum",
            ):
                with contextlib.suppress(psycopg.Error):
                    out[name] = conn.execute(
                        sql.SQL("SHOW {}").format(sql.Identifier(name))
                    ).fetchone()[0]  # type: ignore[index]
        return out

    def close(self) -> None:
        """Stop and delete the local server this object started (nothing for `--url`)."""
        if self._local is None:
            return
        try:
            self._local.stop()
        finally:
            cluster = Path(self._local.cluster_dir)
            shutil.rmtree(cluster, ignore_errors=True)
            with contextlib.suppress(OSError):
                (cluster.parent / f".{cluster.name}.lock").unlink()
            if self._home is not None:
                shutil.rmtree(self._home, ignore_errors=True)
            self._local = None

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Cores, load, CPU model, Python, and the repository commit the figures belong to."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    repo = Path(__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            info["git_commit"] = head.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--", "botq"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["botq_tree_dirty"] = bool(dirty.stdout.strip())
    return info
