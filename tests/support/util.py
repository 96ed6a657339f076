"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def wait_until(fn: Callable[[], T], timeout: float = 20.0, interval: float = 0.02) -> T:
    """Poll `fn` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def botq_env(url: str | None = None, home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("BOTQ_DATABASE_URL", None)
    if url is not None:
        env["BOTQ_DATABASE_URL"] = url
    if home is not None:
        env["BOTQ_HOME"] = str(home)
    return env


def start_worker(url: str, *args: str, home: Path | None = None) -> subprocess.Popen[str]:
    """A `botq worker` process with the test handlers, output to a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "botq", "worker", "--import", "tests.support.handlers", *args],
        env=botq_env(url, home),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_botq(
    *args: str, url: str | None = None, home: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botq", *args],
        env=botq_env(url, home),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop_process(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait, and return what the process printed."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"process did not stop within {timeout} s:\n{out}") from None
    return out
