"""TaskQueue against a real PostgreSQL: enqueue, read, cancel, retry, counts, purge."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from botq import QueueError, Status
from botq.db.database import Database
from botq.queue.taskqueue import Q


def test_enqueue_and_get_round_trip(db: Database) -> None:
    task_id = db.queue.enqueue("Hello", {"name": "x", "n": [1, 2]}, priority="high", max_retries=5)
    task = db.queue.get(task_id)
    assert task.id == task_id
    assert task.type == "Hello"
    assert task.status == Status.PENDING == "pending"
    assert task.priority == "high"
    assert task.payload == {"name": "x", "n": [1, 2]}
    assert task.max_retries == 5
    assert task.attempts == 0
    assert task.result is None and task.error is None and task.parent_id is None
    assert task.created_at is not None and task.run_after is not None


def test_enqueue_many_keeps_input_order_in_one_statement(db: Database) -> None:
    parent = db.queue.enqueue("Bulk", {})
    items = [(f"T{i % 3}", {"i": i}) for i in range(500)]
    ids = db.queue.enqueue_many(items, priority="low", parent_id=parent)
    assert len(ids) == 500
    assert ids == sorted(ids)
    tasks = {t.id: t for t in db.queue.list(type="T1", limit=1000)}
    for i, task_id in enumerate(ids):
        if i % 3 == 1:
            assert tasks[task_id].payload == {"i": i}
            assert tasks[task_id].parent_id == parent
            assert tasks[task_id].priority == "low"
    assert db.queue.enqueue_many([]) == []


def test_dedupe_key_returns_the_existing_task(db: Database) -> None:
    a = db.queue.enqueue("Sync", {"pair": "BTC/USD"}, dedupe_key="sync:BTC/USD")
    b = db.queue.enqueue("Sync", {"pair": "BTC/USD"}, dedupe_key="sync:BTC/USD")
    c = db.queue.enqueue("Sync", {"pair": "ETH/USD"}, dedupe_key="sync:ETH/USD")
    assert a == b != c
    assert db.queue.counts()["pending"] == 2


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda q: q.enqueue("X", {}, priority="urgent"), "priority 'urgent'"),
        (lambda q: q.enqueue("X", [1, 2]), "payload must be a JSON object"),
        (lambda q: q.enqueue("X", {"when": object()}), "not JSON-serialisable"),
        (lambda q: q.enqueue("", {}), "task type"),
        (lambda q: q.enqueue("X", {}, max_retries=-1), "max_retries"),
        (lambda q: q.enqueue("X", {"api_secret": "s3cr3t"}), "payload.api_secret"),
        (lambda q: q.enqueue("X", {"acct": {"password": "p"}}), "payload.acct.password"),
        (lambda q: q.enqueue_many([("X", {}), ("Y",)]), "items[1]"),
        (lambda q: q.enqueue_many([("X", {}), ("Y", 3)]), "items[1].payload"),
        (lambda q: q.get(10**9), "no task with id"),
        (lambda q: q.list(status="done"), "status 'done'"),
    ],
)
def test_bad_input_names_the_field(db: Database, call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QueueError) as err:
        call(db.queue)
    assert fragment in str(err.value)
    assert db.queue.counts()["pending"] == 0  # nothing half-written


def test_list_filters_and_newest_first(db: Database) -> None:
    ids = [db.queue.enqueue("A" if i % 2 else "B", {"i": i}) for i in range(10)]
    db.queue.cancel(ids[0])
    assert [t.id for t in db.queue.list()] == ids[::-1]
    assert [t.id for t in db.queue.list(type="A")] == ids[1::2][::-1]
    assert [t.id for t in db.queue.list(status="cancelled")] == [ids[0]]
    assert len(db.queue.list(status=["pending", "cancelled"], limit=3)) == 3


def test_cancel_pending_task_and_its_children(db: Database) -> None:
    parent = db.queue.enqueue("Bulk", {})
    kids = db.queue.enqueue_many([("Child", {"i": i}) for i in range(3)], parent_id=parent)
    other = db.queue.enqueue("Other", {})
    task = db.queue.cancel(parent)
    assert task.status == "cancelled" and task.finished_at is not None
    assert {db.queue.get(k).status for k in kids} == {Status.CANCELLED}
    assert db.queue.get(other).status == "pending"
    assert db.queue.children_counts(parent)["cancelled"] == 3
    # cancelling a finished task changes nothing
    assert db.queue.cancel(parent).status == "cancelled"


def test_retry_puts_failed_or_cancelled_back(db: Database) -> None:
    task_id = db.queue.enqueue("X", {})
    with pytest.raises(QueueError, match="only failed or cancelled"):
        db.queue.retry(task_id)
    db.queue.cancel(task_id)
    task = db.queue.retry(task_id)
    assert task.status == "pending" and task.attempts == 0 and task.finished_at is None


def test_wait_times_out_with_a_clear_error(db: Database) -> None:
    task_id = db.queue.enqueue("Nobody", {})
    with pytest.raises(TimeoutError, match=f"task {task_id} is still pending"):
        db.queue.wait(task_id, timeout=0.1)


def test_counts_kept_by_triggers_match_a_full_count(db: Database) -> None:
    rng = random.Random(7)
    ids = db.queue.enqueue_many([("X", {"i": i}) for i in range(300)])
    for task_id in rng.sample(ids, 60):
        db.queue.cancel(task_id)
    with db.connection() as conn:
        conn.execute(
            "UPDATE botq_tasks SET status = 'completed', finished_at = now() - interval '40 days' "
            "WHERE id = ANY(%s) AND status = 'pending'",
            (rng.sample(ids, 100),),
        )
        conn.execute("UPDATE botq_tasks SET status = 'failed' WHERE id = %s", (ids[-1],))
    assert db.queue.purge(older_than=timedelta(days=30)) > 0
    with db.connection() as conn:
        exact = dict(conn.execute(Q["counts_exact"]).fetchall())
    counts = db.queue.counts()
    assert {k: v for k, v in counts.items() if v} == exact
    assert sum(counts.values()) == len(db.queue.list(limit=1000))


def test_purge_only_removes_old_finished_tasks(db: Database) -> None:
    old_done = db.queue.enqueue("X", {})
    new_done = db.queue.enqueue("X", {})
    old_pending = db.queue.enqueue("X", {})
    with db.connection() as conn:
        conn.execute(
            "UPDATE botq_tasks SET status = 'completed', finished_at = now() - interval '2 days' "
            "WHERE id = %s",
            (old_done,),
        )
        conn.execute(
            "UPDATE botq_tasks SET status = 'completed', finished_at = now() WHERE id = %s",
            (new_done,),
        )
        conn.execute(
            "UPDATE botq_tasks SET created_at = now() - interval '9 days' WHERE id = %s",
            (old_pending,),
        )
    assert db.queue.purge(older_than=timedelta(days=1)) == 1
    assert {t.id for t in db.queue.list()} == {new_done, old_pending}


def test_activity_log_filters(db: Database) -> None:
    db.activity.log("sync", "info", "sync completed", {"pair": "BTC/USD"})
    db.activity.log("queue", "error", "task failed", {"task_id": 1})
    db.activity.log("queue", "debug", "noise")
    assert [a.event for a in db.activity.list(category="queue")] == ["noise", "task failed"]
    assert [a.event for a in db.activity.list(level="warning")] == ["task failed"]
    assert db.activity.list(category="sync")[0].details == {"pair": "BTC/USD"}
    with pytest.raises(QueueError, match="activity level"):
        db.activity.log("x", "fatal", "y")
