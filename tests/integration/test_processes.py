"""Several worker processes against one PostgreSQL: exactly once, crashes, restarts, schedules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from botq.db.database import Database
from botq.db.local import LocalServer
from tests.conftest import drop_database, fresh_database
from tests.support.handlers import SEEN_DDL
from tests.support.util import REPO, botq_env, start_worker, stop_process, wait_until


def seen_counts(db: Database) -> tuple[int, int]:
    """(executions recorded, distinct tasks recorded)."""
    with db.connection() as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT task_id) FROM test_seen").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def seen_db(db: Database) -> Database:
    with db.connection() as conn:
        conn.execute(SEEN_DDL)
    return db


def test_four_processes_drain_5000_tasks_exactly_once(seen_db: Database, db_url: str) -> None:
    db = seen_db
    ids = db.queue.enqueue_many([("Record", {}) for _ in range(5000)])
    workers = [start_worker(db_url, "--concurrency", "2") for _ in range(4)]
    try:
        wait_until(lambda: db.queue.counts()["completed"] == 5000, timeout=120, interval=0.2)
    finally:
        outputs = [stop_process(w) for w in workers]
    assert seen_counts(db) == (5000, 5000), outputs
    with db.connection() as conn:
        per_worker = conn.execute(
            "SELECT count(DISTINCT worker_id) FROM botq_tasks WHERE id = ANY(%s)", (ids,)
        ).fetchone()
    assert per_worker is not None and per_worker[0] >= 2  # the work was shared
    assert all(w.returncode == 0 for w in workers), outputs
    assert db.queue.counts()["running"] == 0


def test_sigkilled_worker_task_is_finished_by_another_after_the_lease(
    seen_db: Database, db_url: str
) -> None:
    db = seen_db
    task_id = db.queue.enqueue("Sleep", {"seconds": 1.0})
    victim = start_worker(db_url, "--lease-seconds", "2")
    try:
        wait_until(lambda: db.queue.get(task_id).status == "running", timeout=30)
        victim_id = db.queue.get(task_id).worker_id
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        rescuer = start_worker(db_url, "--lease-seconds", "2")
        try:
            task = db.queue.wait(task_id, timeout=30)
        finally:
            stop_process(rescuer)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.communicate()
    assert task.status == "completed"
    assert task.attempts == 2
    assert task.worker_id != victim_id
    assert "lease expired" in task.errors[0]["error"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A local server of this test's own, to stop and start under running workers."""
    server = LocalServer(tmp_path / "home")
    server.ensure_running()
    yield server
    server.stop()


def test_workers_survive_a_postgresql_restart(own_server: LocalServer) -> None:
    url = fresh_database(own_server.url, template=None)
    db = Database(url)
    try:
        with db.connection() as conn:
            conn.execute(SEEN_DDL)
        n = 1500
        db.queue.enqueue_many([("Record", {"sleep_s": 0.004}) for _ in range(n)])
        workers = [start_worker(url) for _ in range(2)]
        try:
            wait_until(lambda: db.queue.counts()["completed"] > 100, timeout=60)
            own_server.stop()
            time.sleep(1.0)
            own_server.ensure_running()
            wait_until(lambda: db.queue.counts()["completed"] == n, timeout=120, interval=0.2)
        finally:
            outputs = [stop_process(w) for w in workers]
        executions, distinct = seen_counts(db)
        assert distinct == n
        # a handler interrupted by the restart may have run again, but no task completed twice
        # and none was lost
        assert executions - distinct <= 4, outputs
        assert db.queue.counts()["running"] == 0
        assert any("database unavailable" in out for out in outputs), outputs
    finally:
        db.close()


def test_three_workers_enqueue_each_period_once(db: Database, db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "periodic.py"
    script.write_text(
        "import botq\nbotq.every(1.0, 'Noop', {'source': 'clock'}, priority='low', name='tick')\n"
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "botq",
                "worker",
                "--import",
                "tests.support.handlers",
                "--import",
                str(script),
            ],
            env=botq_env(db_url),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        wait_until(lambda: len(db.queue.list(type="Noop")) >= 4, timeout=60, interval=0.1)
    finally:
        outputs = [stop_process(w) for w in workers]
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT dedupe_key, count(*) FROM botq_tasks WHERE type = 'Noop' GROUP BY 1"
        ).fetchall()
        slots = sorted(int(k.rsplit(":", 1)[1]) for k, _ in rows)
    assert all(count == 1 for _, count in rows), (rows, outputs)
    assert slots == list(range(slots[0], slots[0] + len(slots)))  # one task per period, no gap
    tasks = db.queue.list(type="Noop")
    assert {t.priority for t in tasks} == {"low"}
    assert {t.payload["source"] for t in tasks} == {"clock"}


def test_concurrent_migrations_are_applied_once(server: dict[str, object]) -> None:
    admin = str(server["url"])
    url = fresh_database(admin, template=None)
    try:
        code = (
            "import sys, psycopg\n"
            "from botq.db.migrate import migrate\n"
            "with psycopg.connect(sys.argv[1], autocommit=True) as c: print(migrate(c))\n"
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url],
                env=botq_env(),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), results
        applied = [out.strip() for out, _ in results]
        assert sum(a != "[]" for a in applied) == 1, applied
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM botq_migrations")]
        assert versions == sorted(set(versions)) and versions
    finally:
        drop_database(admin, url)
