"""The worker in-process against a real PostgreSQL: order, retries, leases, cancel, stop."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import botq
from botq import PayloadError, RetryPolicy, Worker
from botq.db.database import Database
from botq.queue.handlers import Handler
from botq.queue.taskqueue import Q
from botq.queue.worker import _finish_params, _Outcome
from tests.support.util import wait_until

FAST_RETRY = RetryPolicy(base_s=0.05, cap_s=0.5, jitter=0.2)


def make_worker(db: Database, handlers: dict[str, Any], **kw: Any) -> Worker:
    fns = {name: Handler(name, fn) for name, fn in handlers.items()}
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("poll_interval", 0.2)
    kw.setdefault("schedule", False)
    return Worker(db, handlers=fns, **kw)


def test_priority_first_then_oldest(db: Database) -> None:
    order: list[int] = []
    ids = {
        "low1": db.queue.enqueue("Job", {}, priority="low"),
        "normal1": db.queue.enqueue("Job", {}, priority="normal"),
        "high1": db.queue.enqueue("Job", {}, priority="high"),
        "low2": db.queue.enqueue("Job", {}, priority="low"),
        "high2": db.queue.enqueue("Job", {}, priority="high"),
        "normal2": db.queue.enqueue("Job", {}, priority="normal"),
    }
    with make_worker(db, {"Job": lambda ctx, p: order.append(ctx.task.id)}):
        wait_until(lambda: len(order) == 6)
    expected = ["high1", "high2", "normal1", "normal2", "low1", "low2"]
    assert order == [ids[k] for k in expected]


def test_run_after_in_the_future_waits(db: Database) -> None:
    ran: dict[int, float] = {}
    later = db.queue.enqueue("Job", {}, run_after=timedelta(seconds=0.6))
    now = db.queue.enqueue("Job", {})
    t0 = time.monotonic()
    with make_worker(db, {"Job": lambda ctx, p: ran.setdefault(ctx.task.id, time.monotonic())}):
        wait_until(lambda: len(ran) == 2, timeout=10)
    assert ran[now] - t0 < ran[later] - t0
    assert ran[later] - t0 >= 0.55


def test_result_progress_and_timestamps(db: Database) -> None:
    seen_progress: list[float] = []
    gate = threading.Event()

    def job(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, Any]:
        ctx.progress(0.25, "a quarter")
        gate.wait(10)
        return {"answer": payload["x"] * 2}

    task_id = db.queue.enqueue("Job", {"x": 21})
    with make_worker(db, {"Job": job}, progress_interval=0.05):
        task = wait_until(lambda: (t := db.queue.get(task_id)).progress > 0 and t)
        seen_progress.append(task.progress)
        assert task.status == "running" and task.progress_message == "a quarter"
        assert task.worker_id and task.started_at and task.heartbeat_at
        gate.set()
        task = db.queue.wait(task_id, timeout=10)
    assert seen_progress == [0.25]
    assert task.status == "completed" and task.result == {"answer": 42}
    assert task.progress == 1.0 and task.finished_at >= task.started_at
    assert task.attempts == 1


def test_retries_back_off_and_keep_each_error(db: Database) -> None:
    attempts_at: list[float] = []

    def flaky(ctx: botq.Context, payload: dict[str, Any]) -> None:
        attempts_at.append(time.monotonic())
        raise RuntimeError(f"boom {ctx.task.attempts}")

    policy = RetryPolicy(base_s=0.2, cap_s=10, jitter=0.2)
    task_id = db.queue.enqueue("Flaky", {}, max_retries=3)
    with make_worker(db, {"Flaky": flaky}, retry=policy):
        task = db.queue.wait(task_id, timeout=20)
    assert task.status == "failed"
    assert task.attempts == 4
    assert task.error == "RuntimeError: boom 4"
    assert "Traceback" in (task.traceback or "") and "flaky" in (task.traceback or "")
    assert [e["error"] for e in task.errors] == [f"RuntimeError: boom {i}" for i in range(1, 5)]
    gaps = [b - a for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert len(gaps) == 3
    for k, gap in enumerate(gaps):  # 0.2, 0.4, 0.8 s, each within +-20% (+ scheduling slack)
        assert 0.8 * 0.2 * 2**k <= gap <= 1.2 * 0.2 * 2**k + 0.25, gaps
    assert gaps == sorted(gaps)
    failed = db.activity.list(category="queue", level="error")
    assert failed and failed[0].event == "task failed"
    assert failed[0].details["task_id"] == task_id


def test_unknown_type_payload_errors_and_bad_results_fail_clearly(db: Database) -> None:
    def picky(ctx: botq.Context, payload: dict[str, Any]) -> None:
        if "pair" not in payload:
            raise PayloadError("pair", "required, e.g. {'pair': 'BTC/USD'}")

    calls: list[int] = []

    def bad_result(ctx: botq.Context, payload: dict[str, Any]) -> Any:
        calls.append(1)
        return {"when": object()}

    def final(ctx: botq.Context, payload: dict[str, Any]) -> None:
        raise botq.MarketDataError("no candles for DOGE/USD: sync them first")

    unknown = db.queue.enqueue("NoSuchType", {}, max_retries=1)
    not_retryable = db.queue.enqueue("Final", {})
    rejected = db.queue.enqueue("Picky", {})
    unserialisable = db.queue.enqueue("BadResult", {})
    fine = db.queue.enqueue("Picky", {"pair": "BTC/USD"})
    with make_worker(db, {"Picky": picky, "BadResult": bad_result, "Final": final}) as worker:
        for task_id in (unknown, rejected, unserialisable, fine, not_retryable):
            db.queue.wait(task_id, timeout=10)
        assert worker.running  # the worker keeps running
    t = db.queue.get(unknown)
    assert t.status == "failed" and t.attempts == 2
    assert "no handler for task type 'NoSuchType'" in (t.error or "")
    assert "--import" in (t.error or "")
    t = db.queue.get(rejected)
    assert t.status == "failed" and t.attempts == 1  # no retries for a rejected payload
    assert "payload field 'pair'" in (t.error or "")
    t = db.queue.get(unserialisable)
    assert t.status == "failed" and t.attempts == 1 and "result" in (t.error or "")
    assert db.queue.get(fine).status == "completed"
    t = db.queue.get(not_retryable)  # retryable = False: no point in trying again
    assert t.status == "failed" and t.attempts == 1 and "sync them first" in (t.error or "")


def test_cancel_running_task_is_seen_by_the_handler(db: Database) -> None:
    started = threading.Event()

    def long(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        for i in range(500):
            if ctx.cancelled:
                return {"stopped_at": i}
            time.sleep(0.01)
        return {"stopped_at": None}

    task_id = db.queue.enqueue("Long", {})
    with make_worker(db, {"Long": long}):
        assert started.wait(10)
        assert db.queue.cancel(task_id).status == "running"
        task = db.queue.wait(task_id, timeout=10)
    assert task.status == "cancelled"
    assert task.result and task.result["stopped_at"] is not None


def test_graceful_stop_releases_unfinished_tasks(db: Database) -> None:
    started = threading.Event()

    def stubborn(ctx: botq.Context, payload: dict[str, Any]) -> None:
        started.set()
        time.sleep(1.5)

    task_id = db.queue.enqueue("Stubborn", {})
    waiting = db.queue.enqueue("Stubborn", {})
    worker = make_worker(db, {"Stubborn": stubborn}).start()
    assert started.wait(10)
    worker.stop(timeout=0.2)
    assert not worker.running
    t = db.queue.get(task_id)
    assert t.status == "pending" and "released" in (t.error or "")
    assert db.queue.get(waiting).status == "pending"
    assert db.queue.counts()["running"] == 0
    events = [a.event for a in db.activity.list(category="worker")]
    assert events[:2] == ["worker stopped", "worker started"]
    time.sleep(1.5)  # the abandoned handler finishing late must not write anything
    assert db.queue.get(task_id).status == "pending"


def test_stale_lease_token_cannot_overwrite_the_new_attempt(db: Database) -> None:
    task_id = db.queue.enqueue("Job", {})
    params = {"types": None, "limit": 1, "lease_s": 30.0, "worker_id": "old"}
    with db.connection() as conn:
        conn.execute(Q["claim"], params).fetchall()
        old_token = conn.execute(
            "SELECT lease_token FROM botq_tasks WHERE id = %s", (task_id,)
        ).fetchone()[0]
        # the old worker is presumed dead: its lease runs out and a new worker claims the task
        conn.execute(
            "UPDATE botq_tasks SET lease_expires_at = now() - interval '1 s' WHERE id = %s",
            (task_id,),
        )
    assert db.queue.expire_leases() == 1
    with db.connection() as conn:
        conn.execute(Q["claim"], {**params, "worker_id": "new"}).fetchall()

        def finish(token: uuid.UUID, status: str) -> list[Any]:
            outcome = _Outcome(task_id, str(token), status)
            return conn.execute(Q["finish"], _finish_params([outcome])).fetchall()

        beat = conn.execute(
            Q["heartbeat"],
            {
                "ids": [task_id],
                "tokens": [old_token],
                "progress": [0.9],
                "messages": ["x"],
                "lease_s": 30.0,
            },
        ).fetchall()
        assert beat == []  # progress from the old attempt is rejected
        assert finish(old_token, "failed") == []  # and so is its outcome
        new_token = conn.execute(
            "SELECT lease_token FROM botq_tasks WHERE id = %s", (task_id,)
        ).fetchone()[0]
        assert finish(new_token, "completed")
    task = db.queue.get(task_id)
    assert task.status == "completed" and task.worker_id == "new" and task.attempts == 2
    assert "lease expired" in task.errors[0]["error"]


def test_expired_lease_returns_task_to_another_worker(db: Database) -> None:
    """A worker that stops heartbeating (frozen) loses its task to another worker."""
    frozen = threading.Event()

    def hang(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, str]:
        if ctx.task.attempts == 1:
            frozen.set()
            time.sleep(4)
            return {"by": "frozen"}
        return {"by": "rescuer"}

    task_id = db.queue.enqueue("Hang", {})
    first = make_worker(db, {"Hang": hang}, lease_seconds=1.2, progress_interval=0.1).start()
    assert frozen.wait(10)
    first._stopped.set()  # its heartbeat thread stops: as if the process were frozen
    with make_worker(db, {"Hang": hang}, lease_seconds=1.2, progress_interval=0.1):
        task = db.queue.wait(task_id, timeout=20)
    assert task.status == "completed" and task.result == {"by": "rescuer"}
    assert task.attempts == 2
    first.stop(timeout=5)
    assert db.queue.get(task_id).result == {"by": "rescuer"}  # the late finish was rejected
    assert any(a.event == "lease expired" for a in db.activity.list(category="queue"))


def test_worker_start_recovers_tasks_running_for_over_an_hour(db: Database) -> None:
    task_id = db.queue.enqueue("Job", {})
    with db.connection() as conn:
        conn.execute(
            "UPDATE botq_tasks SET status = 'running', attempts = 1, worker_id = 'crashed', "
            "started_at = now() - interval '2 hours', "
            "lease_expires_at = now() + interval '1 day', lease_token = gen_random_uuid() "
            "WHERE id = %s",
            (task_id,),
        )
    with make_worker(db, {"Job": lambda ctx, p: {"ok": True}}):
        task = db.queue.wait(task_id, timeout=10)
    assert task.status == "completed" and task.attempts == 2
    lines = db.activity.list(category="queue")
    recovered = [a for a in lines if a.event == "stale task recovered"]
    assert recovered and recovered[0].details["task_id"] == task_id
    started = db.activity.list(category="worker")[-1]
    assert started.event == "worker started" and started.details["recovered_stale"] == 1


def test_many_tasks_with_prefetch_complete_exactly_once(db: Database) -> None:
    runs: dict[int, int] = {}
    lock = threading.Lock()

    def count(ctx: botq.Context, payload: dict[str, Any]) -> None:
        with lock:
            runs[ctx.task.id] = runs.get(ctx.task.id, 0) + 1

    ids = db.queue.enqueue_many([("Count", {}) for _ in range(3000)])
    with make_worker(db, {"Count": count}, concurrency=3):
        db.queue.wait(ids[-1], timeout=60)
        wait_until(lambda: db.queue.counts()["completed"] == 3000, timeout=60)
    assert set(runs) == set(ids) and set(runs.values()) == {1}


def test_secrets_are_scrubbed_from_errors(db: Database) -> None:
    from botq.secrets import register_secret

    secret = "kraken-secret-" + uuid.uuid4().hex
    register_secret(secret)

    def leaky(ctx: botq.Context, payload: dict[str, Any]) -> None:
        raise ValueError(f"auth failed with {secret}")

    task_id = db.queue.enqueue("Leaky", {}, max_retries=0)
    with make_worker(db, {"Leaky": leaky}):
        task = db.queue.wait(task_id, timeout=10)
    assert task.status == "failed"
    assert secret not in (task.error or "") + (task.traceback or "")
    assert "***" in (task.error or "")


def test_parent_waits_for_its_children_without_holding_a_thread(db: Database) -> None:
    def bulk(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, Any]:
        items = [("Child", {"i": i}) for i in range(payload["n"])]
        ctx.db.queue.enqueue_many(items, parent_id=ctx.task.id)
        ctx.wait_for_children()
        return {"variants": payload["n"]}

    def child(ctx: botq.Context, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["i"] % 7 == 3:
            raise PayloadError("i", "unlucky")
        return {"i": payload["i"]}

    parent = db.queue.enqueue("Bulk", {"n": 20})
    empty = db.queue.enqueue("Bulk", {"n": 0})
    with make_worker(db, {"Bulk": bulk, "Child": child}, concurrency=1):  # one thread: no deadlock
        task = db.queue.wait(parent, timeout=30)
        lonely = db.queue.wait(empty, timeout=30)
    assert task.status == "completed" and task.progress == 1.0
    assert task.result == {"variants": 20, "children": 20, "children_failed": 3,
                           "children_cancelled": 0}  # fmt: skip
    assert task.finished_at >= max(t.finished_at for t in db.queue.list(type="Child"))
    assert lonely.status == "completed" and lonely.result["children"] == 0
    assert db.queue.children_counts(parent) == {
        "pending": 0, "running": 0, "completed": 17, "failed": 3, "cancelled": 0,
    }  # fmt: skip


def test_cancelling_a_waiting_parent_cancels_its_children(db: Database) -> None:
    def bulk(ctx: botq.Context, payload: dict[str, Any]) -> None:
        ctx.db.queue.enqueue_many([("Slow", {}) for _ in range(5)], parent_id=ctx.task.id)
        ctx.wait_for_children()

    def slow(ctx: botq.Context, payload: dict[str, Any]) -> None:
        for _ in range(200):
            if ctx.cancelled:
                return
            time.sleep(0.01)

    parent = db.queue.enqueue("Bulk", {})
    with make_worker(db, {"Bulk": bulk, "Slow": slow}, concurrency=1):
        wait_until(lambda: db.queue.get(parent).waiting_children)
        task = db.queue.cancel(parent)
        assert task.status == "cancelled"
        wait_until(lambda: db.queue.children_counts(parent)["running"] == 0, timeout=10)
    counts = db.queue.children_counts(parent)
    assert counts["cancelled"] == 5 - counts["completed"] and counts["pending"] == 0
