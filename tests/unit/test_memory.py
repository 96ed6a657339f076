"""keep_freed_memory: freed arrays are reused instead of faulted in again (glibc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from botq import _memory
from botq._memory import ENV, keep_freed_memory, prefault, take_prefaulted
from botq.errors import ConfigError

# Allocate, fill and drop three 8 MB arrays ten times; report the page faults of rounds 2-10.
_ROUNDS = """
import json, resource, sys
import numpy as np
from botq._memory import keep_freed_memory
took = keep_freed_memory(float(sys.argv[1])) if sys.argv[1] != "off" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_():
    arrays = [np.empty(1_000_000) for _ in range(3)]
    for a in arrays:
        a.fill(1.0)
round_()
before = faults()
for _ in range(9):
    round_()
print(json.dumps({"took": took, "faults": faults() - before}))
"""


def _rounds(arg: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _ROUNDS, arg], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_arrays_are_reused_instead_of_faulted_in_again() -> None:
    default = _rounds("off")
    kept = _rounds("256")
    assert kept["took"] is True
    # default glibc hands 24 MB back at each round's end and faults it in at the next
    assert default["faults"] >= 9 * 3
    assert kept["faults"] < 9


def test_zero_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keep_freed_memory(0) is False
    monkeypatch.setenv(ENV, "0")
    assert keep_freed_memory() is False


@pytest.mark.parametrize("bad", ["lots", "-1", "nan", ""])
def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(ENV, bad)
    with pytest.raises(ConfigError, match=f"{ENV} must be a number of megabytes >= 0"):
        keep_freed_memory()


def test_the_worker_command_keeps_freed_memory() -> None:
    # `botq worker` calls it before it connects: a bad setting stops it with the message
    env = dict(os.environ, **{ENV: "lots"})
    res = subprocess.run(
        [sys.executable, "-m", "botq", "worker"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 1
    assert f"{ENV} must be a number of megabytes" in res.stderr + res.stdout


def test_the_worker_command_checks_the_column_cache_setting_at_start() -> None:
    env = dict(os.environ, BOTQ_COLUMN_CACHE_MB="lots")
    res = subprocess.run(
        [sys.executable, "-m", "botq", "worker"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 1
    assert "BOTQ_COLUMN_CACHE_MB must be a number of megabytes" in res.stderr + res.stdout


def test_prefaulted_memory_is_written_and_given_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memory, "_taken", False)
    monkeypatch.setattr(_memory, "_spare", [])
    assert prefault(1 << 20)
    buf = take_prefaulted(1 << 19)
    assert buf is not None and buf.nbytes == 1 << 20 and not buf.any()  # zeros: pages exist
    assert take_prefaulted(1 << 19) is None
    # once someone has asked, a late prefault would only be kept for nobody
    assert not prefault(1 << 20) and not _memory._spare


def test_a_prefault_too_small_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memory, "_taken", False)
    monkeypatch.setattr(_memory, "_spare", [])
    assert prefault(1 << 16)
    assert take_prefaulted(1 << 20) is None
