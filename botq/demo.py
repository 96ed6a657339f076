"""`botq demo`: the queue and a small research run end to end on the local database.

Part 1, the queue: two demo handlers, a worker in this process, a mix of priorities (one task
fails once and succeeds on retry, one is cancelled while running), live counts, the task
table and the activity log. Part 2, research through the queue: a HistorySync of synthetic
BTC/USD candles, an IndicatorCalc, a Backtest of an EMA crossover and a BulkBacktest of a
small parameter grid, ranked.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from botq.backtest.templates import ema_cross
from botq.db.database import Database, connect, redact
from botq.queue.handlers import Context, RetryPolicy, handler
from botq.queue.model import Status, Task
from botq.queue.worker import Worker

EMA_CROSS = ema_cross("15m")


@handler("DemoCompute")
def demo_compute(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Sum of sin(i) for i < n, in steps that report progress and honour cancellation."""
    n = int(payload["n"])
    total, steps = 0.0, 5
    for step in range(steps):
        if ctx.cancelled:
            return {"stopped_at_step": step}
        total += sum(math.sin(i) for i in range(step * n // steps, (step + 1) * n // steps))
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        time.sleep(float(payload.get("sleep_s", 0.0)))
    return {"n": n, "sum": round(total, 6)}


@handler("DemoFlaky", retry=RetryPolicy(base_s=0.2, cap_s=1.0))
def demo_flaky(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails on its first attempt (a stand-in for a network blip), succeeds on the retry."""
    if ctx.task.attempts == 1:
        raise ConnectionError("simulated network blip (the queue retries with backoff)")
    return {"succeeded_on_attempt": ctx.task.attempts}


def _queue_part(db: Database, tasks: int) -> list[Task]:
    items = [("DemoCompute", {"n": 20_000 + 1_000 * i}) for i in range(tasks)]
    ids = db.queue.enqueue_many(items, priority="low")
    ids.append(db.queue.enqueue("DemoCompute", {"n": 50_000}, priority="high"))
    ids.append(db.queue.enqueue("DemoFlaky", {}, priority="normal"))
    slow = db.queue.enqueue("DemoCompute", {"n": 10, "sleep_s": 0.5}, priority="low")
    ids.append(slow)
    print(f"  enqueued {len(ids)} tasks (high, normal and low priority)")
    time.sleep(0.2)
    db.queue.cancel(slow)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = db.queue.counts()
        print("  " + "  ".join(f"{k}: {v:>3}" for k, v in counts.items()), flush=True)
        if all(db.queue.get(i).finished for i in ids):
            break
        time.sleep(0.5)
    from botq.cli import format_tasks

    special = [db.queue.get(i) for i in ids[-3:]]
    others = [t for t in db.queue.list(type="DemoCompute", limit=7) if t.id not in ids[-3:]]
    print("\nSome of the tasks:")
    print(format_tasks(special + others[:4]))
    return [db.queue.get(i) for i in ids]


def _research_part(db: Database) -> list[Task]:
    """HistorySync → IndicatorCalc → Backtest and BulkBacktest, all through the queue."""
    from botq.backtest.storage import results

    until = datetime.now(UTC).replace(second=0, microsecond=0)
    since = until - timedelta(days=7)
    print("\nResearch through the queue (first run compiles numba kernels, then they are cached):")
    sync = db.queue.enqueue(
        "HistorySync",
        {"pair": "BTC/USD", "source": "synthetic", "since": since.isoformat(),
         "until": until.isoformat()},
        priority="high",
    )  # fmt: skip
    done = [db.queue.wait(sync, timeout=300)]
    r = done[-1].result or {}
    print(
        f"  HistorySync: {done[-1].status.value}, {r.get('candles_added', 0):,} candles added, "
        f"{r.get('first')} to {r.get('last')}"
        if r
        else f"  HistorySync: {done[-1].error}"
    )
    calc = db.queue.enqueue(
        "IndicatorCalc", {"pair": "BTC/USD", "timeframe": "1h", "indicators": ["rsi_14", "ema_20"]}
    )
    spec = EMA_CROSS.replace("{fast}", "12").replace("{slow}", "26")
    backtest = db.queue.enqueue("Backtest", {"strategy": spec, "pair": "BTC/USD"}, priority="high")
    bulk = db.queue.enqueue(
        "BulkBacktest",
        {"template": EMA_CROSS, "grid": {"fast": [5, 8, 12], "slow": [21, 34]},
         "pair": "BTC/USD", "chunk_size": 2},
    )  # fmt: skip
    for task_id, label in ((calc, "IndicatorCalc"), (backtest, "Backtest"), (bulk, "BulkBacktest")):
        task = db.queue.wait(task_id, timeout=600)
        done.append(task)
        summary: Any = task.error
        if task.status == Status.COMPLETED and task.result:
            keep = ("rows", "run_id", "final_result_pct", "trades", "variants", "children")
            summary = {k: v for k, v in task.result.items() if k in keep}
        print(f"  {label}: {task.status.value}, {summary}")
    table = results(db, bulk)
    if not table.empty:
        print("\nBulkBacktest ranked by final result (%):")
        for row in table.head(6).itertuples():
            print(f"  {row.name:<32} {row.final_result_pct:+8.2f}%  trades {row.trades}")
    return done


def run_demo(tasks: int = 40) -> int:
    """Run the demo; return the process exit code."""
    print("botq demo: connecting (starts the local PostgreSQL on first use) ...", flush=True)
    t0 = time.monotonic()
    with connect() as db:
        print(f"  database: {redact(db.url)}  ({time.monotonic() - t0:.1f} s)")
        worker = Worker(db, concurrency=2, schedule=False).start()
        try:
            finished = _queue_part(db, tasks)
            finished += _research_part(db)
        finally:
            worker.stop(timeout=10)
        print("\nActivity log:")
        for line in reversed(db.activity.list(limit=6)):
            print(
                f"  {line.at.astimezone():%H:%M:%S} {line.level:<7} {line.category:<7} {line.event}"
            )
        bad = [t for t in finished if t.status not in (Status.COMPLETED, Status.CANCELLED)]
        print(
            f"\n{len(finished) - len(bad)}/{len(finished)} tasks finished as expected "
            f"in {time.monotonic() - t0:.1f} s."
        )
        print("Next: `botq tasks`, `botq worker --import yourmodule`, or open notebooks/.")
        return 0 if not bad else 1
