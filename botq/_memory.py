"""Keep freed memory in the process for reuse instead of handing it back to the OS.

glibc serves large blocks (a 1M-bar float64 column is 8 MB) with mmap and unmaps them when
they are freed, so a loop that computes and drops columns faults every page in again. On
virtual machines a fresh page costs far more than a reused one: allocating, filling and
dropping an 80 MB array took 42 ms per round here, 6.4 ms with its memory kept. This raises
glibc's mmap and trim thresholds so freed blocks stay in the heap for the next allocation.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from botq._env import megabytes

ENV = "BOTQ_KEEP_FREED_MB"
DEFAULT_MB = 1024.0
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(limit_mb: float | None = None) -> bool:
    """Let this process keep up to limit_mb of freed memory (default: $BOTQ_KEEP_FREED_MB, else
    1024) and serve blocks below that size from its heap; 0 leaves the allocator alone.

    Process-wide and glibc only (Linux); returns whether the allocator took the setting.
    `botq worker` and `botq demo` call it; call it in a notebook that recomputes large
    arrays in a loop. The cost: the process does not shrink below what it has freed, up to
    the limit.
    """
    mb = (
        megabytes(ENV, DEFAULT_MB, "0 leaves the allocator alone") if limit_mb is None else limit_mb
    )
    if not mb > 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded in this process
    except (OSError, AttributeError):
        return False  # no mallopt here (not glibc)
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    size = int(min(mb, 2047.0) * 2**20)
    return bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, size))


# Memory written ahead of its first use (prefault), handed to the next take_prefaulted: once.
_spare: list[np.ndarray] = []
_spare_lock = threading.Lock()  # held while the spare is written: a taker waits for it
_taken = False  # someone asked already: a prefault that comes later is wasted, so skipped


def prefault(nbytes: int) -> bool:
    """Write nbytes of fresh memory now and keep it for the next `take_prefaulted` in this
    process. A fresh page costs a fault at its first write (on the virtual machines measured,
    0.5-3 ms per MB, against 0.07 ms to write it again): a worker does this while it waits for
    its first sweep, whose column store would otherwise fault page by page. Returns False
    when a taker came first (nothing is kept)."""
    with _spare_lock:
        if _taken:
            return False
        buf = np.empty(nbytes // 8)
        buf.fill(0.0)
        _spare[:] = [buf]
        return True


def take_prefaulted(nbytes: int) -> np.ndarray | None:
    """The prefaulted block (float64, at least nbytes) if there is one, else None; waits for
    a prefault in progress."""
    global _taken
    with _spare_lock:
        _taken = True
        if _spare and _spare[0].nbytes >= nbytes:
            return _spare.pop()
        return None
