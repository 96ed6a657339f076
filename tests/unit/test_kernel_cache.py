"""The numba cache of botq's kernels is dropped as a whole when any kernel module changes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from botq import _kernel_cache


def test_every_module_with_numba_kernels_is_listed() -> None:
    package = _kernel_cache.PACKAGE
    using = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if re.search(r"^(from numba import|import numba)", p.read_text(), re.M)
    )
    assert using == sorted(_kernel_cache.KERNEL_MODULES)


def test_a_changed_module_drops_the_cached_kernels_of_all(tmp_path: Path) -> None:
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    kept = cache / "a.cpython-311.pyc"
    files = [cache / "a.f-3.py311.nbi", cache / "a.f-3.py311.1.nbc", cache / "b.g-1.py311.nbi"]

    def fill() -> None:
        for f in [kept, *files]:
            f.write_bytes(b"")

    fill()
    modules = ("a.py", "b.py")
    assert _kernel_cache.refresh(tmp_path, modules)  # no stamp yet: whatever is there goes
    assert kept.exists() and not any(f.exists() for f in files)
    fill()
    assert not _kernel_cache.refresh(tmp_path, modules)  # nothing changed: all kept
    assert all(f.exists() for f in files)
    st = (tmp_path / "b.py").stat()
    os.utime(tmp_path / "b.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _kernel_cache.refresh(tmp_path, modules)  # b changed: a's kernels go too
    assert kept.exists() and not any(f.exists() for f in files)


def test_a_read_only_package_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    cached = cache / "a.f-3.py311.nbi"
    cached.write_bytes(b"")
    (cache / _kernel_cache.STAMP).mkdir()  # the stamp cannot be written
    assert not _kernel_cache.refresh(tmp_path, ("a.py",))
    assert cached.exists()
