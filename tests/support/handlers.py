"""Task handlers used by the tests, importable by worker subprocesses
(`botq worker --import tests.support.handlers`)."""

from __future__ import annotations

import os
import time
from typing import Any

import botq

SEEN_DDL = """
CREATE TABLE IF NOT EXISTS test_seen (
    task_id bigint NOT NULL, worker_pid int NOT NULL, at timestamptz NOT NULL DEFAULT now()
)"""


@botq.handler("Record")
def record(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Leave a trace of each execution, to count how often a task ran."""
    with ctx.db.connection() as conn:
        conn.execute(
            "INSERT INTO test_seen (task_id, worker_pid) VALUES (%s, %s)",
            (ctx.task.id, os.getpid()),
        )
    if payload.get("sleep_s"):
        time.sleep(float(payload["sleep_s"]))
    return {"pid": os.getpid()}


@botq.handler("Sleep")
def sleep(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep in small steps, reporting progress; stop early when cancelled."""
    total = float(payload.get("seconds", 1.0))
    steps = max(int(total / 0.05), 1)
    for i in range(steps):
        if ctx.cancelled and payload.get("cooperative", True):
            return {"stopped_at": i}
        time.sleep(total / steps)
        ctx.progress((i + 1) / steps, f"slept {i + 1}/{steps}")
    return {"pid": os.getpid(), "attempt": ctx.task.attempts}


@botq.handler("Noop")
def noop(ctx: botq.Context, payload: dict[str, Any]) -> None:
    return None
