"""`Worker`: claims tasks, runs their handlers in threads, and reports back.

Threads of one worker:
- the dispatcher (`run()`'s thread) claims tasks in batches with one `FOR UPDATE SKIP LOCKED`
  statement and writes finished attempts back in batches;
- `concurrency` executor threads run handlers;
- a listener holds a dedicated connection on LISTEN botq_tasks / botq_cancel and wakes the
  dispatcher (a poll every `poll_interval` covers a lost notification);
- a heartbeat thread extends leases, writes progress, sees cancel requests, hands back the
  tasks of dead workers, and enqueues periodic jobs. It only waits on the database, so a
  CPU-bound handler cannot starve it.

The worker claims ahead of its executors only as much as it expects to finish within
`prefetch_window_s` (measured from recent handler durations): many tiny tasks travel in big
batches, long tasks one at a time, so an idle worker elsewhere is never left without work.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import PoolTimeout

from botq.db.database import redact
from botq.db.sql import load_queries
from botq.errors import PayloadError
from botq.queue.handlers import Context, Handler, RetryPolicy, lookup, registered
from botq.queue.model import Priority, Status, Task
from botq.queue.scheduler import due_jobs
from botq.queue.taskqueue import check_payload, finished_parents, settle_parents
from botq.secrets import scrub

if TYPE_CHECKING:
    from botq.db.database import Database

Q = load_queries("botq.queue")
log = logging.getLogger("botq.worker")

_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


@dataclass(slots=True)
class _Claimed:
    task: Task
    token: str
    claimed_at: float
    ctx: Context | None = None


@dataclass(slots=True)
class _Outcome:
    id: int
    token: str
    status: str  # completed | failed | cancelled | pending (retry)
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    delay_s: float = 0.0


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    db_errors: int = 0


class Worker:
    """Runs tasks from the queue: `start()` in background threads, or `run()` to block."""

    def __init__(
        self,
        db: Database,
        concurrency: int = 1,
        types: list[str] | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        *,
        retry: RetryPolicy | None = None,
        stale_after: timedelta | float = timedelta(hours=1),
        handlers: dict[str, Handler] | None = None,
        schedule: bool = True,
        stop_timeout: float = 30.0,
        progress_interval: float = 0.5,
        prefetch_window_s: float = 0.05,
        max_batch: int = 100,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_seconds <= 2 * progress_interval:
            raise ValueError("lease_seconds must be more than twice progress_interval")
        self.db = db
        self.concurrency = concurrency
        self.types = list(types) if types else None
        self.lease_seconds = float(lease_seconds)
        self.poll_interval = float(poll_interval)
        self.retry = retry or RetryPolicy()
        self.stale_after_s = (
            stale_after.total_seconds() if isinstance(stale_after, timedelta) else stale_after
        )
        self._fixed_handlers = handlers
        self.schedule = schedule
        self.stop_timeout = stop_timeout
        self.progress_interval = progress_interval
        self.prefetch_window_s = prefetch_window_s
        self.max_batch = max_batch
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = WorkerStats()

        self._cv = threading.Condition()
        self._buffer: deque[_Claimed] = deque()  # claimed, not started
        self._active: dict[int, _Claimed] = {}  # handler running
        self._done: list[_Outcome] = []  # finished, not yet written
        self._held: dict[int, str] = {}  # every claimed task not yet written back
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._runner: threading.Thread | None = None
        self._avg_duration_s: float | None = None
        self._refill_at = concurrency
        self._cycle_lock = threading.Lock()
        self._last_periodic: dict[str, int] = {}

    # -- public ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._runner is not None and self._runner.is_alive()

    def start(self) -> Worker:
        """Run in background threads and return at once (the notebook way)."""
        if self.running:
            return self
        self._stopping.clear()
        self._stopped.clear()
        self._runner = threading.Thread(
            target=self._run, name=f"botq-worker-{self.worker_id}", daemon=True
        )
        self._runner.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; let running tasks finish within `timeout` s, then hand back the rest."""
        if timeout is not None:
            self.stop_timeout = timeout
        self._stopping.set()
        self._wake.set()
        with self._cv:
            self._cv.notify_all()
        if self._runner is not None and self._runner is not threading.current_thread():
            self._runner.join()

    def run(self) -> None:
        """Run until SIGTERM/SIGINT or `stop()` (what `botq worker` does)."""
        if threading.current_thread() is threading.main_thread():
            previous = {
                sig: signal.signal(sig, lambda *_: self._request_stop())
                for sig in (signal.SIGTERM, signal.SIGINT)
            }
            try:
                self._run()
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
        else:
            self._run()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------
    def _request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _lookup(self, task_type: str) -> Handler | None:
        if self._fixed_handlers is not None:
            return self._fixed_handlers.get(task_type)
        return lookup(task_type)

    def _known_types(self) -> list[str]:
        return sorted(self._fixed_handlers) if self._fixed_handlers is not None else registered()

    def _run(self) -> None:
        self._retrying_db(self._startup)
        threads = [
            threading.Thread(target=self._execute_loop, name=f"botq-exec-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        threads.append(threading.Thread(target=self._listen_loop, name="botq-listen", daemon=True))
        threads.append(threading.Thread(target=self._heartbeat_loop, name="botq-beat", daemon=True))
        self._threads = threads
        for t in threads:
            t.start()
        try:
            self._dispatch_loop()
        finally:
            self._shutdown()

    def _startup(self) -> None:
        recovered = self.db.queue.recover_stale(self.stale_after_s)
        self.db.activity.log(
            "worker",
            "info",
            "worker started",
            {
                "worker_id": self.worker_id,
                "concurrency": self.concurrency,
                "types": self.types,
                "handlers": self._known_types(),
                "recovered_stale": recovered,
            },
        )
        log.info("worker %s started (concurrency %d)", self.worker_id, self.concurrency)

    def _shutdown(self) -> None:
        # Not started yet: hand back at once, without counting an attempt. Holding the cycle
        # lock waits for a claim in flight; later cycles see _stopping and claim nothing.
        with self._cycle_lock, self._cv:
            unstarted = list(self._buffer)
            self._buffer.clear()
            self._cv.notify_all()
        self._release(unstarted, started=False)
        deadline = time.monotonic() + max(self.stop_timeout, 0.0)
        while time.monotonic() < deadline:
            with self._cv:
                if not self._active:
                    break
            try:
                self._flush()
            except _DB_ERRORS as exc:
                self._db_trouble(exc, 0.1)
            time.sleep(0.01)
        self._retrying_db(self._flush, attempts=20)
        with self._cv:
            leftover = list(self._active.values())
        for item in leftover:
            if item.ctx is not None:
                item.ctx._cancel.set()
        self._release(leftover, started=True)
        self._stopped.set()
        for t in self._threads:
            t.join(timeout=2.0)
        try:
            self.db.activity.log(
                "worker",
                "info",
                "worker stopped",
                {
                    "worker_id": self.worker_id,
                    "released": len(unstarted) + len(leftover),
                    "completed": self.stats.completed,
                    "failed": self.stats.failed,
                },
            )
        except _DB_ERRORS:
            log.warning("worker %s stopped; could not write the activity line", self.worker_id)
        log.info("worker %s stopped", self.worker_id)

    # -- dispatcher --------------------------------------------------------------------
    def _capacity(self) -> int:
        avg = self._avg_duration_s
        if avg is None:
            prefetch = 0
        else:
            prefetch = int(self.prefetch_window_s / max(avg, 1e-6)) * self.concurrency
        prefetch = min(prefetch, self.max_batch)
        want = self.concurrency + prefetch
        # Claim the next batch while half of this one is still queued, so executors never idle.
        self._refill_at = max(self.concurrency, prefetch // 2)
        with self._cv:
            return want - len(self._buffer) - len(self._active)

    def _dispatch_loop(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                free = self._capacity()
                claimed = self._cycle(free)
                backoff = 0.05
            except _DB_ERRORS as exc:
                self._db_trouble(exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed:
                continue
            if free > 0:
                timeout = self._idle_timeout()
            else:
                timeout = 0.05 if self._done else self.poll_interval
            self._wake.wait(timeout)
            self._wake.clear()

    def _idle_timeout(self) -> float:
        """Sleep until the next delayed task is due, a notification, or the poll interval."""
        if self._done:
            return 0.0
        try:
            with self.db.worker_connection() as conn:
                row = conn.execute(Q["next_due"]).fetchone()
        except _DB_ERRORS:
            return self.poll_interval
        due = row[0] if row else None
        if due is None:
            return self.poll_interval
        return min(max(float(due), 0.001), self.poll_interval)

    def _take_done(self) -> list[_Outcome]:
        with self._cv:
            batch, self._done = self._done, []
        return batch

    def _cycle(self, limit: int) -> int:
        """Write finished attempts back and claim up to `limit` tasks: one round trip."""
        with self._cycle_lock:
            return self._cycle_locked(limit)

    def _claim_now(self) -> None:
        """On a new-task notification: claim from the listener thread, one hop fewer than
        waking the dispatcher (which is woken instead when busy or full)."""
        free = self._capacity()
        if free <= 0 or self._stopping.is_set() or not self._cycle_lock.acquire(blocking=False):
            self._wake.set()
            return
        try:
            self._cycle_locked(free)
        except _DB_ERRORS:
            self._wake.set()
        finally:
            self._cycle_lock.release()

    def _cycle_locked(self, limit: int) -> int:
        if self._stopping.is_set():
            limit = 0
        batch = self._take_done()
        if not batch and limit <= 0:
            return 0
        try:
            with self.db.worker_connection() as conn:
                with conn.pipeline():
                    finished = conn.execute(Q["finish"], _finish_params(batch)) if batch else None
                    claimed = None
                    if limit > 0:
                        params = {
                            "types": self.types,
                            "limit": limit,
                            "lease_s": self.lease_seconds,
                            "worker_id": self.worker_id,
                        }
                        claimed = conn.execute(Q["claim"], params)
                finished_rows = finished.fetchall() if finished is not None else []
                claimed_rows = claimed.fetchall() if claimed is not None else []
        except BaseException:
            with self._cv:
                self._done[:0] = batch  # keep them for the next try: nothing is lost
            raise
        if batch:
            self._after_finish(batch, finished_rows)
        if claimed_rows:
            self._accept(claimed_rows)
        return len(claimed_rows)

    def _flush(self) -> None:
        """Write finished attempts back (without claiming)."""
        self._cycle(0)

    def _accept(self, rows: list[tuple[Any, ...]]) -> None:
        now = time.monotonic()
        rows.sort(key=lambda r: (_PRIORITY_RANK[r[2]], r[0]))
        items = [_Claimed(_claimed_task(r, self.worker_id), r[-1], now) for r in rows]
        with self._cv:
            for item in items:
                self._held[item.task.id] = item.token
            self._buffer.extend(items)
            self._cv.notify(len(items))
        self.stats.claimed += len(items)

    def _after_finish(self, batch: list[_Outcome], rows: list[tuple[Any, ...]]) -> None:
        with self._cv:
            for o in batch:
                self._held.pop(o.id, None)
        parents = finished_parents((status, parent_id) for _, status, *_, parent_id, _ in rows)
        parents += [task_id for task_id, *_, waiting in rows if waiting]
        if parents:
            with self.db.worker_connection() as conn:
                settle_parents(conn, parents)
        for task_id, status, task_type, error, attempts, _, waiting in rows:
            if status == "failed":
                self.stats.failed += 1
                self.db.activity.log(
                    "queue",
                    "error",
                    "task failed",
                    {
                        "task_id": task_id,
                        "type": task_type,
                        "attempts": attempts,
                        "error": error,
                        "worker_id": self.worker_id,
                    },
                )
            elif status == "completed" or waiting:
                self.stats.completed += 1
            elif status == "cancelled":
                self.stats.cancelled += 1
            else:
                self.stats.retried += 1
        if len(rows) < len(batch):
            log.warning(
                "%d finished task(s) had lost their lease; their results were not written",
                len(batch) - len(rows),
            )

    def _release(self, items: list[_Claimed], *, started: bool) -> None:
        if not items:
            return
        params = {"ids": [i.task.id for i in items], "tokens": [i.token for i in items]}
        query = Q["release_started"] if started else Q["release"]

        parents: list[int] = []  # kept across retries: a second release returns no rows

        def go() -> None:
            with self.db.worker_connection() as conn:
                rows = conn.execute(query, params).fetchall()
                # tasks asked to stop are cancelled, not handed back: their parents may be done
                parents.extend(finished_parents((r[1], r[2]) for r in rows))
                settle_parents(conn, parents)

        self._retrying_db(go, attempts=20)
        with self._cv:
            for i in items:
                self._held.pop(i.task.id, None)
                self._active.pop(i.task.id, None)
        self.stats.released += len(items)

    # -- executors ---------------------------------------------------------------------
    def _take(self) -> _Claimed | None:
        with self._cv:
            while not self._buffer:
                if self._stopping.is_set():
                    return None
                self._cv.wait(0.5)
            item = self._buffer.popleft()
            item.ctx = Context(item.task, self.db)
            self._active[item.task.id] = item
            return item

    def _execute_loop(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            started = time.perf_counter()
            outcome = self._execute(item)
            elapsed = time.perf_counter() - started
            avg = self._avg_duration_s
            self._avg_duration_s = elapsed if avg is None else 0.8 * avg + 0.2 * elapsed
            with self._cv:
                if self._active.pop(item.task.id, None) is None:
                    continue  # handed back at stop: its token is void anyway
                self._done.append(outcome)
                low = len(self._buffer) <= self._refill_at or len(self._done) >= self.max_batch
            if low:
                self._wake.set()

    def _execute(self, item: _Claimed) -> _Outcome:
        task, ctx = item.task, item.ctx
        assert ctx is not None
        handler = self._lookup(task.type)
        policy = (handler.retry if handler and handler.retry else None) or self.retry
        try:
            if handler is None:
                known = ", ".join(self._known_types()) or "none"
                raise LookupError(
                    f"no handler for task type {task.type!r} in worker {self.worker_id} "
                    f"(registered: {known}). Register one with @botq.handler({task.type!r}) in "
                    "a module and start the worker with `botq worker --import MODULE`, or route "
                    "types to workers with --types."
                )
            result = handler.fn(ctx, task.payload)
            if result is not None and not isinstance(result, dict):
                raise PayloadError(
                    "result", f"handler returned {type(result).__name__}; return a dict or None"
                )
            if result:
                try:
                    result = check_payload(result, where="result")
                except Exception as exc:
                    raise PayloadError("result", str(exc)) from None
            status = "cancelled" if ctx.cancelled else "waiting" if ctx._wait else "completed"
            return _Outcome(task.id, item.token, status, result or None)
        except BaseException as exc:  # noqa: BLE001 - a handler's failure is the task's, not ours
            message = scrub(f"{type(exc).__name__}: {exc}")
            tb = scrub("".join(traceback.format_exception(exc)))
            if ctx.cancelled:
                return _Outcome(task.id, item.token, "cancelled", None, message, tb)
            final = getattr(exc, "retryable", True) is False or task.attempts > task.max_retries
            if final:
                return _Outcome(task.id, item.token, "failed", None, message, tb)
            delay = policy.delay_s(task.attempts)
            return _Outcome(task.id, item.token, "pending", None, message, tb, delay)

    # -- listener ----------------------------------------------------------------------
    def _listen_loop(self) -> None:
        backoff = 0.1
        while not self._stopped.is_set() and not self._stopping.is_set():
            try:
                with psycopg.connect(self.db.url, autocommit=True) as conn:
                    conn.execute("LISTEN botq_tasks")
                    conn.execute("LISTEN botq_cancel")
                    self._wake.set()  # catch up on whatever arrived while we were away
                    backoff = 0.1
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=64):
                            if note.channel == "botq_cancel":
                                self._mark_cancelled(int(note.payload))
                            else:
                                self._claim_now()
            except _DB_ERRORS as exc:
                self._db_trouble(exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _mark_cancelled(self, task_id: int) -> None:
        with self._cv:
            item = self._active.get(task_id)
            if item is not None and item.ctx is not None:
                item.ctx._cancel.set()

    # -- heartbeat ---------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        last_beat = last_expire = 0.0
        while not self._stopped.wait(self.progress_interval):
            now = time.monotonic()
            try:
                full = now - last_beat >= self.lease_seconds / 4
                self._beat(full)
                if full:
                    last_beat = now
                if now - last_expire >= min(self.lease_seconds / 2, 5.0):
                    last_expire = now
                    if self.db.queue.expire_leases():
                        self._wake.set()
                self._release_stuck_prefetch(now)
                if self.schedule and not self._stopping.is_set():
                    self._enqueue_periodic()
            except _DB_ERRORS as exc:
                self._db_trouble(exc, self.progress_interval)

    def _beat(self, full: bool) -> None:
        with self._cv:
            rows: list[tuple[int, str, float | None, str | None]] = []
            for task_id, item in self._active.items():
                update = item.ctx._take_progress() if item.ctx is not None else None
                if update is not None:
                    rows.append((task_id, item.token, update[0], update[1]))
                elif full:
                    rows.append((task_id, item.token, None, None))
            if full:
                active = self._active.keys()
                rows.extend((i, t, None, None) for i, t in self._held.items() if i not in active)
        if not rows:
            return
        with self.db.worker_connection() as conn:
            alive = conn.execute(
                Q["heartbeat"],
                {
                    "ids": [r[0] for r in rows],
                    "tokens": [r[1] for r in rows],
                    "progress": [r[2] for r in rows],
                    "messages": [r[3] for r in rows],
                    "lease_s": self.lease_seconds,
                },
            ).fetchall()
        cancel = {task_id for task_id, requested in alive if requested}
        lost = {r[0] for r in rows} - {task_id for task_id, _ in alive}
        with self._cv:
            for task_id in cancel | lost:
                running = self._active.get(task_id)
                if running is not None and running.ctx is not None:
                    running.ctx._cancel.set()
                    if task_id in lost:  # not merely finished in the meantime: our lease is gone
                        log.warning("task %d: lease lost; its result will not be written", task_id)

    def _release_stuck_prefetch(self, now: float) -> None:
        """Hand back claimed tasks that have waited over a second behind a slow handler."""
        with self._cv:
            if not self._buffer or now - self._buffer[0].claimed_at < 1.0:
                return
            stuck = list(self._buffer)
            self._buffer.clear()
        self._avg_duration_s = max(self._avg_duration_s or 0.0, 1.0)
        self._release(stuck, started=False)

    def _enqueue_periodic(self) -> None:
        for job, slot, run_at in due_jobs(time.time(), self._last_periodic):
            self.db.queue.enqueue(
                job.type,
                job.payload,
                priority=job.priority,
                run_after=run_at,
                dedupe_key=f"botq:every:{job.name}:{slot}",
            )
            self._last_periodic[job.name] = slot

    # -- database trouble --------------------------------------------------------------
    def _db_trouble(self, exc: BaseException, wait_s: float) -> None:
        self.stats.db_errors += 1
        log.warning(
            "database unavailable at %s (%s); retrying in %.2f s",
            redact(self.db.url),
            type(exc).__name__,
            wait_s,
        )

    def _retrying_db(self, fn: Any, attempts: int | None = None) -> None:
        backoff = 0.05
        n = 0
        while True:
            try:
                fn()
                return
            except _DB_ERRORS as exc:
                n += 1
                if (attempts is not None and n >= attempts) or (
                    attempts is None and self._stopping.is_set()
                ):
                    log.error("giving up after %d database errors: %s", n, exc)
                    return
                self._db_trouble(exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


_PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}


def _claimed_task(row: tuple[Any, ...], worker_id: str) -> Task:
    """A Task from the claim's narrow RETURNING (see queries.sql, claim)."""
    (task_id, task_type, priority, payload, attempts, max_retries, run_after, created_at,
     started_at, parent_id, dedupe_key, _token) = row  # fmt: skip
    return Task(
        id=task_id,
        type=task_type,
        status=Status.RUNNING,
        priority=Priority(priority),
        payload=payload,
        result=None,
        error=None,
        traceback=None,
        progress=0.0,
        progress_message="",
        attempts=attempts,
        max_retries=max_retries,
        run_after=run_after,
        created_at=created_at,
        started_at=started_at,
        finished_at=None,
        worker_id=worker_id,
        parent_id=parent_id,
        dedupe_key=dedupe_key,
        heartbeat_at=started_at,
    )


def _finish_params(batch: list[_Outcome]) -> dict[str, str]:
    """The batch as one JSON document (see queries.sql, finish): one C-level encode."""
    outcomes = [
        {
            "id": o.id,
            "token": o.token,
            "status": o.status,
            "result": o.result,
            "error": o.error,
            "traceback": o.traceback,
            "delay_s": o.delay_s,
        }
        for o in batch
    ]
    return {"outcomes": json.dumps(outcomes)}
