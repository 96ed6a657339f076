"""`botq demo`: the queue end to end on the local database, in a few seconds.

It registers two demo handlers, starts a worker in this process, enqueues a mix of priorities
(one task that fails once and succeeds on retry, one that is cancelled), shows live status,
and prints the resulting task table and activity log.
"""

from __future__ import annotations

import math
import time
from typing import Any

from botq.db.database import connect, redact
from botq.queue.handlers import Context, RetryPolicy, handler
from botq.queue.model import Status
from botq.queue.worker import Worker


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


def run_demo(tasks: int = 40) -> int:
    """Run the demo; return the process exit code."""
    print("botq demo: connecting (starts the local PostgreSQL on first use) ...", flush=True)
    t0 = time.monotonic()
    with connect() as db:
        print(f"  database: {redact(db.url)}  ({time.monotonic() - t0:.1f} s)")
        worker = Worker(db, concurrency=2, schedule=False).start()
        try:
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
                if all(db.queue.get(i).finished for i in ids[-3:]) and not (
                    counts["pending"] or counts["running"]
                ):
                    break
                time.sleep(0.5)
        finally:
            worker.stop(timeout=10)
        from botq.cli import format_tasks

        special = [db.queue.get(i) for i in ids[-3:]]
        shown = (
            special
            + [t for t in db.queue.list(type="DemoCompute", limit=7) if t.id not in ids[-3:]][:4]
        )
        print("\nSome of the tasks:")
        print(format_tasks(shown))
        print("\nActivity log:")
        for line in reversed(db.activity.list(limit=6)):
            print(
                f"  {line.at.astimezone():%H:%M:%S} {line.level:<7} {line.category:<7} {line.event}"
            )
        finished = [db.queue.get(i) for i in ids]
        bad = [t for t in finished if t.status not in (Status.COMPLETED, Status.CANCELLED)]
        print(
            f"\n{len(finished) - len(bad)}/{len(finished)} tasks finished as expected "
            f"in {time.monotonic() - t0:.1f} s."
        )
        print("Next: `botq tasks`, `botq worker --import yourmodule`, or open notebooks/.")
        return 0 if not bad else 1
