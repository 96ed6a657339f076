"""The activity log: what a user wants to read later (task failed, stale task recovered, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from botq.errors import QueueError

if TYPE_CHECKING:
    from botq.db.database import Database

LEVELS = ("debug", "info", "warning", "error")

INSERT = """
INSERT INTO botq_activity (category, level, event, details)
VALUES (%(category)s, %(level)s, %(event)s, %(details)s)
"""
SELECT = """
SELECT id, at, category, level::text AS level, event, details FROM botq_activity
WHERE (%(category)s::text IS NULL OR category = %(category)s)
  AND (%(level)s::botq_log_level IS NULL OR level >= %(level)s::botq_log_level)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
ORDER BY at DESC, id DESC LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    at: datetime
    category: str
    level: str
    event: str
    details: dict[str, Any]


class ActivityLog:
    """Append and read activity lines."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def log(
        self, category: str, level: str, event: str, details: dict[str, Any] | None = None
    ) -> None:
        """Append a line; `level` is debug, info, warning or error."""
        if level not in LEVELS:
            raise QueueError(f"activity level {level!r} is not one of {', '.join(LEVELS)}")
        with self.db.connection() as conn:
            conn.execute(
                INSERT,
                {
                    "category": category,
                    "level": level,
                    "event": event,
                    "details": Jsonb(details or {}),
                },
            )

    def list(
        self,
        category: str | None = None,
        level: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Activity]:
        """Lines newest first; `level` keeps that level and the more severe ones."""
        if level is not None and level not in LEVELS:
            raise QueueError(f"activity level {level!r} is not one of {', '.join(LEVELS)}")
        params = {"category": category, "level": level, "since": since, "limit": int(limit)}
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return [Activity(**row) for row in cur.execute(SELECT, params)]
