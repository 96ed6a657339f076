"""The migrations give the schema the code expects, and the hot queries use their indexes."""

from __future__ import annotations

from botq.db.database import Database
from botq.db.migrate import migrations
from botq.queue.model import TASK_COLUMNS, Priority, Status
from botq.queue.taskqueue import Q


def test_migrations_give_the_schema_the_code_expects(db: Database) -> None:
    with db.connection() as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'botq_tasks'"
            )
        }
        enums = {
            name: list(labels)
            for name, labels in conn.execute(
                "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) "
                "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname"
            )
        }
        versions = [r[0] for r in conn.execute("SELECT version FROM botq_migrations ORDER BY 1")]
    assert columns >= TASK_COLUMNS, TASK_COLUMNS - columns
    assert enums["botq_task_status"] == [s.value for s in Status]
    assert enums["botq_priority"] == [p.value for p in Priority]
    assert versions == [m.version for m in migrations()]


def test_claim_and_counts_stay_on_indexes_with_many_finished_tasks(db: Database) -> None:
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO botq_tasks (type, status, finished_at) "
            "SELECT 'Old', 'completed', now() FROM generate_series(1, 200000)"
        )
        conn.execute("ANALYZE botq_tasks")
    db.queue.enqueue_many([("New", {}) for _ in range(10)])
    with db.connection() as conn:
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN " + Q["claim"],
                {"types": None, "limit": 10, "lease_s": 30.0, "worker_id": "x"},
            )
        )
    assert "botq_tasks_claim" in plan, plan
    assert "Seq Scan on botq_tasks" not in plan, plan
    counts = db.queue.counts()
    assert counts["completed"] == 200000 and counts["pending"] == 10
