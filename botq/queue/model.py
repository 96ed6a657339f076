"""The task model: statuses, priorities, and the frozen `Task` record."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from botq.errors import QueueError


class Status(StrEnum):
    """Mirrors the PostgreSQL enum botq_task_status."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class Priority(StrEnum):
    """Mirrors botq_priority: high (user actions), normal (scheduled), low (maintenance)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


def parse_priority(value: str | Priority) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise QueueError(
            f"priority {value!r} is not one of: high, normal, low (high is for user actions, "
            "normal for scheduled jobs, low for maintenance)"
        ) from None


def parse_status(value: str | Status) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise QueueError(
            f"status {value!r} is not one of: {', '.join(s.value for s in Status)}"
        ) from None


@dataclass(frozen=True, slots=True)
class Task:
    """A task row as it was when read."""

    id: int
    type: str
    status: Status
    priority: Priority
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    traceback: str | None
    progress: float
    progress_message: str
    attempts: int
    max_retries: int
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    parent_id: int | None
    dedupe_key: str | None = None
    errors: tuple[dict[str, Any], ...] = ()
    heartbeat_at: datetime | None = None
    cancel_requested: bool = False
    waiting_children: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        return cls(
            id=row["id"],
            type=row["type"],
            status=Status(row["status"]),
            priority=Priority(row["priority"]),
            payload=row["payload"],
            result=row["result"],
            error=row["error"],
            traceback=row["traceback"],
            progress=float(row["progress"]),
            progress_message=row["progress_message"],
            attempts=row["attempts"],
            max_retries=row["max_retries"],
            run_after=row["run_after"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            worker_id=row["worker_id"],
            parent_id=row["parent_id"],
            dedupe_key=row["dedupe_key"],
            errors=tuple(row["errors"] or ()),
            heartbeat_at=row["heartbeat_at"],
            cancel_requested=row["cancel_requested"],
            waiting_children=row["waiting_children"],
        )


TASK_COLUMNS = frozenset(f.name for f in fields(Task))
