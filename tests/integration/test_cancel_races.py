"""Cancelling while other work touches the same tasks: no deadlock, nothing left pending.

Found by a flaky bulk-backtest test: a chunk saving its run (a foreign key to its task and to
the bulk task) deadlocked with the bulk's cancel, failed with DeadlockDetected before its
worker had seen the cancel, and was put back to pending for a retry, under a cancelled parent.
The races are timing windows, so these tests set up the state each one leaves directly.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from botq.db.database import Database
from botq.queue.taskqueue import Q, finished_parents, settle_parents
from botq.queue.worker import _finish_params, _Outcome

CLAIM = {"types": None, "limit": 1, "lease_s": 30.0, "worker_id": "w1"}


def claim(db: Database, task_id: int) -> str:
    """Claim `task_id` as worker w1 (it must be the oldest pending task); return its token."""
    with db.connection() as conn:
        rows = conn.execute(Q["claim"], CLAIM).fetchall()
        assert [r[0] for r in rows] == [task_id]
        return str(rows[0][-1])


def finish(db: Database, *outcomes: _Outcome) -> list[tuple[Any, ...]]:
    with db.connection() as conn:
        return conn.execute(Q["finish"], _finish_params(list(outcomes))).fetchall()


def status(db: Database, task_id: int) -> str:
    return db.queue.get(task_id).status.value


def test_cancel_does_not_wait_for_an_insert_that_references_the_task(db: Database) -> None:
    """An insert referencing a task (a child enqueued, a run saved) key-share-locks it until
    it commits; cancel must not queue behind that lock (FOR UPDATE did, and deadlocked)."""
    parent = db.queue.enqueue("Bulk", {})
    with psycopg.connect(db.url) as other:
        other.execute(
            "INSERT INTO botq_tasks (type, payload, parent_id) VALUES ('Child', '{}', %s)",
            (parent,),
        )
        done = threading.Event()

        def cancel() -> None:
            db.queue.cancel(parent)
            done.set()

        worker = threading.Thread(target=cancel, daemon=True)
        worker.start()
        try:
            assert done.wait(10), "cancel waited for the lock of an uncommitted insert"
        finally:
            other.rollback()
            worker.join(10)
    assert status(db, parent) == "cancelled"


def test_an_attempt_that_fails_after_a_cancel_ends_cancelled_not_retried(db: Database) -> None:
    task_id = db.queue.enqueue("Job", {})
    token = claim(db, task_id)
    assert db.queue.cancel(task_id).status == "running"  # asked to stop
    # the handler failed before its worker saw the request: the worker asks for a retry
    error = "DeadlockDetected: deadlock detected"
    rows = finish(db, _Outcome(task_id, token, "pending", None, error, "tb", 0.05))
    assert [(r[0], r[1]) for r in rows] == [(task_id, "cancelled")]
    task = db.queue.get(task_id)
    assert task.status == "cancelled" and task.finished_at is not None
    assert task.error == error and task.errors[-1]["error"] == error
    assert db.queue.counts()["pending"] == 0


def test_tasks_asked_to_stop_are_cancelled_when_handed_back(db: Database) -> None:
    """Released at a worker's stop, lease expired, or recovered as stale: a task asked to
    stop ends cancelled, and a parent waiting for it completes."""
    parent = db.queue.enqueue("Bulk", {})
    finish(db, _Outcome(parent, claim(db, parent), "waiting"))
    kids = db.queue.enqueue_many([("Chunk", {"i": i}) for i in range(3)], parent_id=parent)
    tokens = [claim(db, k) for k in kids]
    for k in kids:
        db.queue.cancel(k)  # each child alone: running, asked to stop
    with db.connection() as conn:
        released = conn.execute(Q["release"], {"ids": [kids[0]], "tokens": [tokens[0]]})
        assert [(r[0], r[1]) for r in released.fetchall()] == [(kids[0], "cancelled")]
        conn.execute(
            "UPDATE botq_tasks SET lease_expires_at = now() - interval '1 s' WHERE id = %s",
            (kids[1],),
        )
        conn.execute(
            "UPDATE botq_tasks SET started_at = now() - interval '2 hours' WHERE id = %s",
            (kids[2],),
        )
    assert db.queue.expire_leases() == 1
    assert db.queue.recover_stale() == 1
    assert [status(db, k) for k in kids] == ["cancelled"] * 3
    done = db.queue.get(parent)
    assert done.status == "completed" and done.result
    assert done.result["children_cancelled"] == 3
    lines = [a.event for a in db.activity.list(category="queue")]
    assert "task cancelled" in lines


def test_a_released_task_not_asked_to_stop_still_goes_back_to_pending(db: Database) -> None:
    task_id = db.queue.enqueue("Job", {})
    token = claim(db, task_id)
    with db.connection() as conn:
        conn.execute(Q["release_started"], {"ids": [task_id], "tokens": [token]}).fetchall()
    task = db.queue.get(task_id)
    assert task.status == "pending" and task.finished_at is None


def test_a_cancelled_parent_cancels_children_its_cancel_did_not_see(db: Database) -> None:
    """Children enqueued by the parent's handler while the cancel ran are not in the cancel's
    snapshot; the parent's own end cancels them (pending) or asks them to stop (running)."""
    for end in ("cancelled", "waiting"):
        parent = db.queue.enqueue("Bulk", {})
        token = claim(db, parent)
        late = db.queue.enqueue_many([("Chunk", {"i": i}) for i in range(3)], parent_id=parent)
        running = late[0]
        child_token = claim(db, running)
        with db.connection() as conn:  # the cancel that committed before the children did
            conn.execute("UPDATE botq_tasks SET cancel_requested = true WHERE id = %s", (parent,))
        rows = finish(db, _Outcome(parent, token, end))
        assert [(r[0], r[1]) for r in rows] == [
            (parent, "cancelled" if end == "cancelled" else "running")
        ]
        assert [status(db, k) for k in late[1:]] == ["cancelled", "cancelled"]
        with db.connection() as conn:
            asked = conn.execute(
                "SELECT status::text, cancel_requested FROM botq_tasks WHERE id = %s", (running,)
            ).fetchone()
        assert asked == ("running", True)
        # the running child stops as its worker sees the request; the worker then settles
        # the parent, which ends cancelled either way
        done = finish(db, _Outcome(running, child_token, "cancelled"))
        with db.connection() as conn:
            settle_parents(conn, finished_parents((r[1], r[5]) for r in done))
        assert status(db, parent) == "cancelled"
