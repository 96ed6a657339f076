"""Periodic jobs: `botq.every(interval, type, payload)`.

Time is cut into slots `offset + k·interval` since the Unix epoch, the same in every process.
Each running worker (with `schedule=True`) enqueues the current slot's task with the dedupe key
`botq:every:<name>:<k>`, so however many workers run, each slot yields exactly one task.
Slots that passed while no worker ran are not caught up: the next worker enqueues the
current slot only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botq.errors import QueueError
from botq.queue.model import parse_priority
from botq.queue.taskqueue import check_payload


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    interval_s: float
    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: str = "normal"
    offset_s: float = 0.0

    def slot(self, now_s: float) -> int:
        """The index of the slot that contains `now_s` (Unix seconds)."""
        return int((now_s - self.offset_s) // self.interval_s)

    def slot_start(self, slot: int) -> datetime:
        return datetime.fromtimestamp(self.offset_s + slot * self.interval_s, tz=UTC)


_lock = threading.Lock()
_jobs: dict[str, PeriodicJob] = {}


def every(
    interval: timedelta | float,
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    priority: str = "normal",
    offset: timedelta | float = 0.0,
    name: str | None = None,
) -> PeriodicJob:
    """Enqueue a `type` task once per `interval` (e.g. `every(timedelta(hours=1), ...)`).

    `offset` shifts the slots (hourly at :05 is `offset=timedelta(minutes=5)`); `name`
    identifies the job (default: the type), so two jobs of one type need two names.
    Registering a name again replaces the job. Workers started with `schedule=True`
    (the default) enqueue due slots.
    """
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
    offset_s = offset.total_seconds() if isinstance(offset, timedelta) else float(offset)
    if seconds < 1:
        raise QueueError(f"every(): interval must be at least 1 second, got {seconds}")
    job = PeriodicJob(
        name=name or type,
        interval_s=seconds,
        type=type,
        payload=check_payload(payload or {}),
        priority=parse_priority(priority).value,
        offset_s=offset_s % seconds,
    )
    with _lock:
        _jobs[job.name] = job
    return job


def unschedule(name: str) -> None:
    """Forget the periodic job `name` (tasks already enqueued stay)."""
    with _lock:
        _jobs.pop(name, None)


def periodic_jobs() -> list[PeriodicJob]:
    with _lock:
        return list(_jobs.values())


def due_jobs(now_s: float, last: dict[str, int]) -> list[tuple[PeriodicJob, int, datetime]]:
    """Jobs whose current slot this process has not enqueued yet, with slot and start time."""
    out = []
    for job in periodic_jobs():
        slot = job.slot(now_s)
        if last.get(job.name) != slot:
            out.append((job, slot, job.slot_start(slot)))
    return out
