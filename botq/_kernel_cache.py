"""numba's on-disk cache of botq's kernels, kept consistent across kernel modules.

numba checks a cached function against its own source file only. A kernel that calls a
function of another module (numba compiles the callee into it) keeps running the old code
when only that other module changed: after a `git pull` in a checkout or an editable
install, for instance. So the first import of botq after any kernel module changed removes
the cached kernels of all of them; they compile again on first use. An installed package
that is upgraded as a whole is not affected (every file changes), and a read-only install is
left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

# every botq module that defines numba kernels (tests/unit/test_kernel_cache.py checks this)
KERNEL_MODULES = (
    "_intrinsics.py",
    "backtest/engine_nb.py",
    "indicators/_classic_nb.py",
    "indicators/_stats_nb.py",
    "indicators/kernels.py",
    "market/synthetic.py",
    "market/timeframes.py",
    "market/trades_nb.py",
)
PACKAGE = Path(__file__).resolve().parent
STAMP = "botq-kernels.stamp"


def _stamp(files: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()


def _cache_dirs(py_file: Path) -> list[Path]:
    """Where numba may keep py_file's cache: beside it, under NUMBA_CACHE_DIR, or in the
    user-wide cache directory (numba's own rules, numba.core.caching)."""
    dirs = [py_file.parent / "__pycache__"]
    try:
        from numba.core import config
        from numba.core.caching import _CacheLocator
        from numba.misc.appdirs import AppDirs
    except ImportError:  # another numba layout: the in-tree cache is the usual one
        return dirs
    sub = _CacheLocator.get_suitable_cache_subpath(str(py_file))
    user_dir = getattr(config, "CACHE_DIR", "")  # NUMBA_CACHE_DIR (set at runtime: no stub)
    if user_dir:
        dirs.append(Path(user_dir) / sub)
    dirs.append(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir) / sub)
    return dirs


def refresh(package: Path = PACKAGE, modules: Sequence[str] = KERNEL_MODULES) -> bool:
    """Remove the cached kernels of `modules` if any of them changed since the last call
    (or if no call left a stamp yet); True if it did. Costs a few stat() calls otherwise."""
    files = [package / m for m in modules]
    stamp_file = package / "__pycache__" / STAMP
    try:
        stamp = _stamp(files)
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return False
        stamp_file.parent.mkdir(exist_ok=True)
        stamp_file.write_text("")  # fails early where the package is read-only
    except OSError:
        return False
    for f in files:
        prefix = f.stem + "."
        for d in _cache_dirs(f):
            if not d.is_dir():
                continue
            for cached in d.iterdir():
                if cached.name.startswith(prefix) and cached.suffix in (".nbi", ".nbc"):
                    cached.unlink(missing_ok=True)
    stamp_file.write_text(stamp)
    return True
