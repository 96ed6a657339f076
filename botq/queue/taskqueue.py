"""`TaskQueue`: enqueue, inspect, cancel and retry tasks (the user-facing side of the queue)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from botq.db.sql import load_queries
from botq.errors import QueueError
from botq.queue.model import FINISHED, Status, Task, parse_priority, parse_status

if TYPE_CHECKING:
    import psycopg

    from botq.db.database import Database

Q = load_queries("botq.queue")

_SECRET_KEY = re.compile(r"secret|api[_-]?key|password|passphrase|private[_-]?key", re.I)
PURGE_BATCH = 10_000


def encode_payload(payload: Any, *, where: str = "payload") -> str:
    """A payload must be a JSON object without secrets; return its JSON text."""
    if not isinstance(payload, Mapping):
        raise QueueError(f"{where} must be a JSON object (a dict), got {type(payload).__name__}")
    _refuse_secrets(payload, where)
    try:
        return json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise QueueError(
            f"{where} is not JSON-serialisable ({exc}); pass numbers, strings, lists and dicts "
            "(dates as ISO strings)"
        ) from None


def check_payload(payload: Any, *, where: str = "payload") -> dict[str, Any]:
    """Like `encode_payload`, returning the payload as a plain dict."""
    encode_payload(payload, where=where)
    return dict(payload)


def settle_parents(conn: psycopg.Connection[Any], parent_ids: Iterable[int]) -> None:
    """Let parents waiting for their children see the children that just finished: they
    complete (or end cancelled) once the last one has."""
    ids = sorted(set(parent_ids))
    if ids:
        conn.execute(Q["settle_parents"], {"ids": ids}).fetchall()


def finished_parents(rows: Iterable[tuple[str, int | None]]) -> list[int]:
    """Parents of the (status, parent_id) rows whose task has finished."""
    return [parent for status, parent in rows if parent is not None and status in FINISHED]


def _refuse_secrets(value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _SECRET_KEY.search(key):
                raise QueueError(
                    f"{path}.{key}: task payloads are stored in plain text and shown in the "
                    "dashboard, so secrets may not go in them; keep exchange keys in the "
                    "environment or in $BOTQ_HOME/kraken.toml"
                )
            _refuse_secrets(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_secrets(item, f"{path}[{i}]")


def _check_type(task_type: Any) -> str:
    if not isinstance(task_type, str) or not task_type.strip():
        raise QueueError(f"task type must be a non-empty string, got {task_type!r}")
    return task_type


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TaskQueue:
    """Enqueue and manage tasks in botq_tasks; workers claim them (see `botq.Worker`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- adding work -------------------------------------------------------------------
    def enqueue(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: str = "normal",
        max_retries: int = 3,
        run_after: datetime | timedelta | None = None,
        dedupe_key: str | None = None,
        parent_id: int | None = None,
    ) -> int:
        """Add one task; return its id.

        `run_after` delays it (a datetime, or a timedelta from now). A `dedupe_key` names the
        task: enqueueing the same key again returns the existing task's id and adds nothing.
        """
        if isinstance(run_after, timedelta):
            run_after = datetime.now().astimezone() + run_after
        params = {
            "type": _check_type(type),
            "payload": encode_payload(payload or {}),
            "priority": parse_priority(priority).value,
            "max_retries": _check_retries(max_retries),
            "run_after": run_after,
            "dedupe_key": dedupe_key,
            "parent_id": parent_id,
        }
        with self.db.connection() as conn:
            row = conn.execute(Q["enqueue"], params).fetchone()
            if row is None:  # dedupe_key already taken
                row = conn.execute(Q["id_by_dedupe_key"], params).fetchone()
                if row is None:  # the holder was purged between the two statements
                    row = conn.execute(Q["enqueue"], params).fetchone()
        assert row is not None
        return int(row[0])

    def enqueue_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        priority: str = "normal",
        max_retries: int = 3,
        parent_id: int | None = None,
    ) -> list[int]:
        """Add many `(type, payload)` tasks in one round trip; ids in input order."""
        pairs: list[tuple[str, Mapping[str, Any]]] = []
        for i, item in enumerate(items):
            try:
                task_type, payload = item
            except (TypeError, ValueError):
                raise QueueError(f"items[{i}] must be a (type, payload) pair") from None
            if not isinstance(payload, Mapping):
                encode_payload(payload, where=f"items[{i}].payload")  # raises with the reason
            _refuse_secrets(payload, f"items[{i}].payload")
            pairs.append((_check_type(task_type), payload))
        if not pairs:
            return []
        try:
            document = json.dumps(pairs, allow_nan=False)
        except (TypeError, ValueError):
            for i, (_, payload) in enumerate(pairs):  # find the culprit for the message
                encode_payload(payload, where=f"items[{i}].payload")
            raise
        params = {
            "items": document,
            "priority": parse_priority(priority).value,
            "max_retries": _check_retries(max_retries),
            "parent_id": parent_id,
        }
        with self.db.connection() as conn:
            return [row[0] for row in conn.execute(Q["enqueue_many"], params)]

    # -- reading -----------------------------------------------------------------------
    def get(self, id: int) -> Task:
        """The task with this id (raises QueueError when there is none)."""
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(Q["get"], {"id": id}).fetchone()
        if row is None:
            raise QueueError(f"no task with id {id}")
        return Task.from_row(row)

    def list(
        self,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        """Tasks newest first, optionally only those with a status (or statuses) and type."""
        params: dict[str, Any] = {"type": type, "limit": int(limit)}
        if status is None:
            query = Q["list_all"]
        else:
            statuses = [status] if isinstance(status, str) else list(status)
            params["statuses"] = [parse_status(s).value for s in statuses]
            query = Q["list_by_status"]
        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return [Task.from_row(r) for r in cur.execute(query, params)]

    def counts(self) -> dict[str, int]:
        """Number of tasks in each status (every status present, zeros included)."""
        out = {s.value: 0 for s in Status}
        with self.db.connection() as conn:
            for status, n in conn.execute(Q["counts"]):
                out[status] = int(n)
        return out

    def children_counts(self, parent_id: int) -> dict[str, int]:
        """Counts by status of a parent's child tasks (bulk runs)."""
        out = {s.value: 0 for s in Status}
        with self.db.connection() as conn:
            for status, n in conn.execute(Q["children_counts"], {"id": parent_id}):
                out[status] = int(n)
        return out

    # -- changing ----------------------------------------------------------------------
    def cancel(self, id: int) -> Task:
        """Cancel a pending task now, or ask a running one to stop; children go with it.

        Cancelling a finished task changes nothing. Returns the task as it is afterwards.
        """
        with self.db.connection() as conn:
            conn.execute(Q["cancel"], {"id": id}).fetchall()
        return self.get(id)

    def retry(self, id: int) -> Task:
        """Put a failed or cancelled task back to pending, with a fresh retry budget."""
        with self.db.connection() as conn:
            row = conn.execute(Q["retry"], {"id": id}).fetchone()
        task = self.get(id)
        if row is None:
            raise QueueError(
                f"task {id} is {task.status.value}: only failed or cancelled tasks can be retried"
            )
        return task

    def wait(self, id: int, timeout: float | None = None) -> Task:
        """Block until the task is finished (completed, failed or cancelled); return it.

        Raises TimeoutError when `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            task = self.get(id)
            if task.finished:
                return task
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {id} is still {task.status.value} after {timeout} s")
            time.sleep(
                delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
            )
            delay = min(delay * 1.5, 0.1)  # a finished task is seen within 0.1 s

    def recover_stale(self, running_for: timedelta | float = timedelta(hours=1)) -> int:
        """Reset tasks `running` for longer than `running_for` to pending (cancelled, if they
        were asked to stop); return how many."""
        seconds = _seconds(running_for)
        with self.db.connection() as conn:
            rows = conn.execute(Q["recover_stale"], {"running_for_s": seconds}).fetchall()
            settle_parents(conn, finished_parents((r[3], r[4]) for r in rows))
        for task_id, task_type, worker_id, _, _ in rows:
            self.db.activity.log(
                "queue",
                "warning",
                "stale task recovered",
                {
                    "task_id": task_id,
                    "type": task_type,
                    "worker_id": worker_id,
                    "running_for_s": seconds,
                },
            )
        return len(rows)

    def expire_leases(self) -> int:
        """Hand back tasks whose worker stopped heartbeating; return how many."""
        with self.db.connection() as conn:
            rows = conn.execute(Q["expire_leases"]).fetchall()
            settle_parents(conn, finished_parents((r[2], r[4]) for r in rows))
        for task_id, task_type, status, worker_id, _ in rows:
            final = status != Status.PENDING
            self.db.activity.log(
                "queue",
                "error" if final else "warning",
                f"task {status}" if final else "lease expired",
                {
                    "task_id": task_id,
                    "type": task_type,
                    "worker_id": worker_id,
                    "error": "lease expired: the worker stopped heartbeating",
                },
            )
        return len(rows)

    def purge(self, older_than: timedelta | float = timedelta(days=30)) -> int:
        """Delete finished tasks that finished more than `older_than` ago; return how many."""
        seconds = _seconds(older_than)
        total = 0
        with self.db.connection() as conn:
            while True:
                n = conn.execute(Q["purge"], {"older_than_s": seconds, "batch": PURGE_BATCH})
                deleted = int(n.fetchone()[0])  # type: ignore[index]
                total += deleted
                if deleted < PURGE_BATCH:
                    return total


def _check_retries(max_retries: int) -> int:
    if not isinstance(max_retries, int) or max_retries < 0:
        raise QueueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    return max_retries
