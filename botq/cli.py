"""The `botq` command: local database, workers, tasks, and the demo.

Exit codes: 0 success, 1 an error botq explains, 2 bad usage, 3 `db status` when the local
server is not running.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from botq._env import column_cache_mb
from botq._memory import keep_freed_memory, prefault
from botq.db.database import URL_ENV, connect, redact
from botq.db.local import LocalServer
from botq.db.migrate import migrate
from botq.errors import BotqError, ConfigError
from botq.queue.model import Priority, Status, Task

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3


def _local_server() -> LocalServer:
    if os.environ.get(URL_ENV):
        raise ConfigError(
            f"{URL_ENV} is set, so botq does not manage a local server; "
            f"unset {URL_ENV} to use botq's own, or manage your server yourself"
        )
    return LocalServer()


def cmd_db(args: argparse.Namespace) -> int:
    if args.action == "url":
        print(os.environ.get(URL_ENV) or LocalServer().ensure_running())
        return 0
    if args.action == "migrate":
        with connect() as db, db.connection() as conn:
            applied = migrate(conn)
        print(f"applied migrations: {applied}" if applied else "schema is up to date")
        return 0
    server = _local_server()
    if args.action == "start":
        was_running = server.is_running()
        url = server.ensure_running()
        print(f"{'already running' if was_running else 'started'}: {url}")
        return 0
    if args.action == "stop":
        print("stopped" if server.stop() else "not running")
        return 0
    st = server.status()
    print(f"running:  {f'yes (pid {st.pid})' if st.running else 'no'}")
    print(f"url:      {st.url}")
    print(f"data:     {st.data_dir}")
    print(f"binaries: {st.bin_dir}")
    print(f"log:      {st.log_file}")
    return 0 if st.running else EXIT_NOT_RUNNING


def import_handler_modules(names: Sequence[str]) -> None:
    """Import the user's handler modules (dotted names, or paths to .py files)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            if name.endswith(".py"):
                path = Path(name).resolve()
                sys.path.insert(0, str(path.parent))
                importlib.import_module(path.stem)
            else:
                importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"--import {name}: {exc}. Give a module importable from the current directory "
                "or PYTHONPATH (e.g. mypkg.handlers), or a path to a .py file"
            ) from exc


def _prefault(nbytes: int) -> None:
    """Ready a sweep's column store while the worker waits for its first task."""
    log = logging.getLogger("botq.worker")
    started = time.perf_counter()
    try:
        done = prefault(nbytes)
    except MemoryError:
        log.warning("no memory to ready a sweep's column store ahead (%d MB)", nbytes >> 20)
        return
    if done:
        log.info("column store ready: %d MB in %.1f s", nbytes >> 20, time.perf_counter() - started)


def cmd_worker(args: argparse.Namespace) -> int:
    from botq.queue.handlers import registered
    from botq.queue.worker import Worker

    import_handler_modules(args.imports)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    keep_freed_memory()  # a worker allocates and drops the same column sizes chunk after chunk
    cache_mb = column_cache_mb()  # a bad value stops the worker here, with its fix
    if cache_mb > 0 and (not args.types or "BacktestChunk" in args.types):
        threading.Thread(
            target=_prefault, args=(int(cache_mb * 2**20),), name="botq-prefault", daemon=True
        ).start()
    with connect() as db:
        worker = Worker(
            db,
            concurrency=args.concurrency,
            types=args.types,
            lease_seconds=args.lease_seconds,
            poll_interval=args.poll_interval,
        )
        print(
            f"botq worker {worker.worker_id} on {redact(db.url)}: concurrency {args.concurrency}, "
            f"handlers {', '.join(registered()) or 'none'}"
            + (f", types {', '.join(args.types)}" if args.types else ""),
            flush=True,
        )
        worker.run()
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--payload is not valid JSON ({exc}); e.g. --payload '{{\"n\": 1}}'"
        ) from None
    with connect() as db:
        task_id = db.queue.enqueue(
            args.type, payload, priority=args.priority, max_retries=args.max_retries
        )
        print(task_id)
        if args.wait is not None:
            task = db.queue.wait(task_id, timeout=args.wait or None)
            print(json.dumps(task.result if task.status == Status.COMPLETED else task.error))
            return 0 if task.status == Status.COMPLETED else EXIT_ERROR
    return 0


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%m-%d %H:%M:%S") if value else "-"


def format_tasks(tasks: Sequence[Task]) -> str:
    """A readable table of tasks, for the terminal."""
    head = f"{'ID':>7}  {'TYPE':<16} {'STATUS':<10} {'PRIO':<6} {'TRY':>5} {'PROG':>5}  "
    head += f"{'CREATED':<14}  {'TOOK':>7}  DETAIL"
    lines = [head]
    for t in tasks:
        took = "-"
        if t.started_at and t.finished_at:
            took = f"{(t.finished_at - t.started_at).total_seconds():.2f}s"
        detail = (
            t.error
            if t.status == Status.FAILED
            else (json.dumps(t.result) if t.result else t.progress_message)
        )
        lines.append(
            f"{t.id:>7}  {_short(t.type, 16):<16} {t.status.value:<10} {t.priority.value:<6} "
            f"{t.attempts:>2}/{t.max_retries + 1:<2} {t.progress * 100:>4.0f}%  "
            f"{_when(t.created_at):<14}  {took:>7}  {_short(detail, 60)}"
        )
    return "\n".join(lines)


def cmd_tasks(args: argparse.Namespace) -> int:
    with connect() as db:
        tasks = db.queue.list(status=args.status, type=args.type, limit=args.limit)
        print(format_tasks(tasks))
        counts = db.queue.counts()
        print("\n" + "  ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with connect() as db:
        task = db.queue.cancel(args.id)
        asked = " (asked to stop)" if task.status == Status.RUNNING else ""
        print(f"task {task.id}: {task.status.value}{asked}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with connect() as db:
        task = db.queue.retry(args.id)
        print(f"task {task.id}: {task.status.value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from botq.demo import run_demo

    keep_freed_memory()
    return run_demo(tasks=args.tasks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="the local PostgreSQL: start, stop, status, url, migrate")
    p.add_argument("action", choices=["start", "stop", "status", "url", "migrate"])
    p.set_defaults(fn=cmd_db)

    p = sub.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    p.add_argument("--concurrency", type=int, default=1, help="handler threads (default 1)")
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module (or .py file) that registers handlers; repeatable",
    )
    p.add_argument("--types", nargs="+", default=None, help="claim only these task types")
    p.add_argument("--lease-seconds", type=float, default=30.0)
    p.add_argument("--poll-interval", type=float, default=1.0)
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("enqueue", help="add a task")
    p.add_argument("type")
    p.add_argument("--payload", default="{}", help="a JSON object")
    p.add_argument("--priority", default="normal", choices=[x.value for x in Priority])
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=0,
        default=None,
        metavar="SECONDS",
        help="wait for the task to finish and print its result (exit 1 if it failed)",
    )
    p.set_defaults(fn=cmd_enqueue)

    p = sub.add_parser("tasks", help="list tasks, newest first")
    p.add_argument("--status", choices=[s.value for s in Status])
    p.add_argument("--type")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(fn=cmd_tasks)

    p = sub.add_parser("cancel", help="cancel a task (a running one is asked to stop)")
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_cancel)

    p = sub.add_parser("retry", help="put a failed or cancelled task back to pending")
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_retry)

    p = sub.add_parser("demo", help="run a small end-to-end demo on the local database")
    p.add_argument("--tasks", type=int, default=40, help="how many demo tasks (default 40)")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except BotqError as exc:
        print(f"botq: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
