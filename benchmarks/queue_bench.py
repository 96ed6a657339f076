"""Queue benchmark: botq vs procrastinate vs pgqueuer, side by side on one PostgreSQL.

    python benchmarks/queue_bench.py                 # full run, median of 3 (several minutes)
    python benchmarks/queue_bench.py --quick         # smoke test, under a minute, 1 run
    python benchmarks/queue_bench.py --only botq --repeat 5 --url postgresql://...
    python benchmarks/queue_bench.py --figures drain_2p,latency --only botq,pgqueuer

Needs the bench extra (`pip install -e '.[bench]'`: procrastinate, pgqueuer) and asyncpg
for pgqueuer's main driver (`--pgqueuer-driver psycopg` uses its psycopg driver instead).

Without --url, botq's own local PostgreSQL is started in a temporary BOTQ_HOME and deleted at
the end. Every measurement runs in a subprocess of its own (with a timeout) on a fresh database
(botq applies its migrations, procrastinate its schema, pgqueuer its install), so a library
that fails or hangs shows "error: ..." in its cell and the run goes on.

Figures (each library does the same work, through its own public API and its own worker):

- single enqueue: N calls one after another, one task per call (after 20 untimed calls).
- batch enqueue: N tasks through the batch API, BATCH tasks per call: botq
  `db.queue.enqueue_many`, procrastinate `Task.batch_defer_async`, pgqueuer
  `Queries.enqueue` with lists.
- drain: N no-op tasks are enqueued (untimed), then P worker processes start; the figure is
  N / (time from starting the first worker process until the database shows all N done),
  polled every 20 ms. Process start-up, imports and connecting count: nothing is subtracted
  (`first_done_s` and `rate_after_first` in the JSON show how much start-up cost).
  Workers: botq `python -m botq worker --import <this file>`; procrastinate
  `App.run_worker`; pgqueuer `QueueManager.run`. Defaults unless the row says otherwise
  (botq concurrency 1, procrastinate concurrency 1, pgqueuer batch 10 and no concurrency cap).
- idle pickup latency: one idle worker; a task is enqueued every 50 ms; latency = wall-clock
  time at handler start minus wall-clock time just before the enqueue call (carried in the
  payload). p50 and p95 over the run.

Handlers are no-ops: botq's are sync functions run on its executor threads, procrastinate's
and pgqueuer's are `async def` (their native, fastest kind). pgqueuer runs on asyncpg when it
is installed: its psycopg driver shares one connection between queries and a notifies()
reader that holds the connection lock for up to 1 s when no notification comes, which makes
its worker several times slower and its pickup latency erratic.

Results: a table on stdout (median of --repeat runs) and benchmarks/results/queue.json with
every run's raw numbers, the machine, the PostgreSQL version and settings, and the library
versions (--quick writes benchmarks/results/queue-quick.json instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):  # run as a file, or imported by path by `botq worker --import`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

import botq  # noqa: E402
from benchmarks._pg import (
    BenchServer,
    asyncpg_kwargs,
    describe,
    machine_info,
    version_of,
)  # noqa: E402

THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parent.parent
RESULTS_DIR = THIS_FILE.parent / "results"

LIBS = ("botq", "procrastinate", "pgqueuer")
NOOP = "bench_noop"
LAT = "bench_lat"
LAT_ENV = "BOTQ_BENCH_LATENCY_FILE"
PGQ_DRIVER_ENV = "BOTQ_BENCH_PGQ_DRIVER"
POLL_S = 0.02
WARMUP_CALLS = 20

# What the issue asks of botq (issue 2, "Benchmark"); shown next to the figures.
GOALS = {
    "enqueue_single": ">= 2,000/s",
    "enqueue_batch": ">= 60,000/s",
    "drain_2p": ">= 15,000/s",
    "latency_p50": "<= 2.5 ms",
    "latency_p95": "<= 5 ms",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    single_n: int = 2_000
    batch_n: int = 20_000
    batch_size: int = 1_000
    drain_n: int = 20_000
    latency_n: int = 200
    latency_interval_s: float = 0.05
    fill_batch: int = 5_000
    enqueue_timeout_s: float = 180.0
    drain_timeout_s: float = 600.0
    latency_timeout_s: float = 120.0


QUICK = Config(
    single_n=200,
    batch_n=5_000,
    drain_n=1_000,
    latency_n=20,
    enqueue_timeout_s=60.0,
    drain_timeout_s=60.0,
    latency_timeout_s=60.0,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str
    kind: str  # single | batch | drain | latency
    processes: int = 0
    # Worker concurrency per library (None: the library's default); a library missing from
    # the mapping does not run this figure (shown as "n/a").
    concurrency: dict[str, int | None] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(LIBS)
    )


FIGURES = [
    Figure("enqueue_single", "single enqueue", "single"),
    Figure("enqueue_batch", "batch enqueue", "batch"),
    Figure("drain_1p", "drain, 1 worker process", "drain", 1),
    Figure("drain_2p", "drain, 2 worker processes", "drain", 2),
    Figure(
        "drain_2p_conc",
        "drain, 2 procs (botq c=4, procr. c=10)",
        "drain",
        2,
        {"botq": 4, "procrastinate": 10},
    ),
    Figure("latency", "idle pickup latency", "latency", 1),
]
FIGURES_BY_KEY = {f.key: f for f in FIGURES}


# -- handlers ----------------------------------------------------------------------------


def _record_latency(sent_at: float, i: int) -> None:
    """Called first thing in a latency handler: append `i latency_s` to the shared file."""
    latency = time.time() - sent_at
    with open(os.environ[LAT_ENV], "a") as fh:
        fh.write(f"{i} {latency:.6f}\n")


@botq.handler(NOOP)
def _botq_noop(ctx: botq.Context, payload: dict[str, Any]) -> None:
    return None


@botq.handler(LAT)
def _botq_latency(ctx: botq.Context, payload: dict[str, Any]) -> None:
    _record_latency(payload["t"], payload["i"])


def _procrastinate_app(conninfo: str) -> tuple[Any, Any, Any]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name=NOOP)
    async def noop(i: int = 0) -> None:
        return None

    @app.task(name=LAT)
    async def latency(t: float = 0.0, i: int = 0) -> None:
        _record_latency(t, i)

    return app, noop, latency


def pgqueuer_driver() -> str:
    """pgqueuer's database driver for this run: $BOTQ_BENCH_PGQ_DRIVER, else asyncpg if present.

    asyncpg is pgqueuer's main driver. Its psycopg driver shares one connection between
    queries and a notifies() reader that holds the connection lock for up to a second when no
    notification comes, which makes a busy worker wait on it (far slower; see the report).
    """
    chosen = os.environ.get(PGQ_DRIVER_ENV)
    if chosen:
        return chosen
    return "asyncpg" if importlib.util.find_spec("asyncpg") is not None else "psycopg"


async def _pgqueuer_connect(conninfo: str) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """pgqueuer `Queries` on one connection with the chosen driver, and how to close it."""
    from pgqueuer.queries import Queries

    if pgqueuer_driver() == "asyncpg":
        import asyncpg

        aconn = await asyncpg.connect(**asyncpg_kwargs(conninfo))
        return Queries.from_asyncpg_connection(aconn), aconn.close
    pconn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    return Queries.from_psycopg_connection(pconn), pconn.close


async def _pgqueuer_worker(conninfo: str) -> None:
    from pgqueuer import QueueManager
    from pgqueuer.models import Job

    queries, close = await _pgqueuer_connect(conninfo)
    try:
        qm = QueueManager(queries)

        @qm.entrypoint(NOOP)
        async def noop(job: Job) -> None:
            return None

        @qm.entrypoint(LAT)
        async def latency(job: Job) -> None:
            body = json.loads(job.payload or b"{}")
            _record_latency(body["t"], body["i"])

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, qm.shutdown.set)
        await qm.run()
    finally:
        await close()


# -- one library, seen from the benchmark -------------------------------------------------


class Lib:
    """Enqueueing, counting and starting workers for one library, on one database."""

    name = ""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def install(self) -> None:
        """Create the library's schema in the (empty) database."""

    def fill(self, n: int, batch: int) -> None:
        """Enqueue n no-op tasks, untimed."""
        raise NotImplementedError

    def enqueue_single(self, n: int) -> float:
        """Seconds for n one-task enqueue calls (after WARMUP_CALLS untimed ones)."""
        raise NotImplementedError

    def enqueue_batch(self, n: int, size: int) -> float:
        """Seconds to enqueue n tasks, `size` per call (after one untimed call)."""
        raise NotImplementedError

    def enqueue_paced(self, start: int, n: int, interval_s: float) -> None:
        """Enqueue n latency tasks numbered from `start`, one every interval_s."""
        raise NotImplementedError

    done_sql = ""  # one integer: the no-op tasks finished successfully
    failed_sql = ""  # one integer: tasks that failed (a drain with failures is an error)

    def worker_command(self, concurrency: int | None) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, str(THIS_FILE), "_worker", "--lib", self.name, "--db"]
        argv.append(self.conninfo)
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        return argv, {}

    def close(self) -> None:
        pass


def _pace(start: float, i: int, interval_s: float) -> float:
    return max(0.0, start + i * interval_s - time.perf_counter())


class BotqLib(Lib):
    name = "botq"
    done_sql = "SELECT coalesce(sum(n), 0)::bigint FROM botq_task_counts WHERE status = 'completed'"
    failed_sql = "SELECT count(*) FROM botq_tasks WHERE status = 'failed' OR attempts > 1"

    def __init__(self, conninfo: str) -> None:
        super().__init__(conninfo)
        self.db = botq.connect(conninfo)  # applies the migrations

    def fill(self, n: int, batch: int) -> None:
        for lo in range(0, n, batch):
            self.db.queue.enqueue_many([(NOOP, {"i": i}) for i in range(lo, min(n, lo + batch))])

    def enqueue_single(self, n: int) -> float:
        enqueue = self.db.queue.enqueue
        for i in range(WARMUP_CALLS):
            enqueue(NOOP, {"i": -i})
        t0 = time.perf_counter()
        for i in range(n):
            enqueue(NOOP, {"i": i})
        return time.perf_counter() - t0

    def enqueue_batch(self, n: int, size: int) -> float:
        enqueue_many = self.db.queue.enqueue_many
        enqueue_many([(NOOP, {"i": -1})] * min(size, 100))
        t0 = time.perf_counter()
        for lo in range(0, n, size):
            enqueue_many([(NOOP, {"i": i}) for i in range(lo, min(n, lo + size))])
        return time.perf_counter() - t0

    def enqueue_paced(self, start: int, n: int, interval_s: float) -> None:
        t0 = time.perf_counter()
        for k in range(n):
            time.sleep(_pace(t0, k, interval_s))
            self.db.queue.enqueue(LAT, {"t": time.time(), "i": start + k})

    def worker_command(self, concurrency: int | None) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "botq", "worker", "--import", str(THIS_FILE)]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        return argv, {"BOTQ_DATABASE_URL": self.conninfo}

    def close(self) -> None:
        self.db.close()


class ProcrastinateLib(Lib):
    name = "procrastinate"
    done_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
    failed_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed' OR attempts > 1"

    def __init__(self, conninfo: str) -> None:
        super().__init__(conninfo)
        self.runner = asyncio.Runner()
        self.app, self.noop, self.latency = _procrastinate_app(conninfo)
        self.runner.run(self._open())

    async def _open(self) -> None:
        await self.app.open_async()

    def install(self) -> None:
        self.runner.run(self.app.schema_manager.apply_schema_async())

    def fill(self, n: int, batch: int) -> None:
        async def go() -> None:
            for lo in range(0, n, batch):
                await self.noop.batch_defer_async(
                    *({"i": i} for i in range(lo, min(n, lo + batch)))
                )

        self.runner.run(go())

    def enqueue_single(self, n: int) -> float:
        async def go() -> float:
            defer = self.noop.defer_async
            for i in range(WARMUP_CALLS):
                await defer(i=-i)
            t0 = time.perf_counter()
            for i in range(n):
                await defer(i=i)
            return time.perf_counter() - t0

        return self.runner.run(go())

    def enqueue_batch(self, n: int, size: int) -> float:
        async def go() -> float:
            batch_defer = self.noop.batch_defer_async
            await batch_defer(*([{"i": -1}] * min(size, 100)))
            t0 = time.perf_counter()
            for lo in range(0, n, size):
                await batch_defer(*({"i": i} for i in range(lo, min(n, lo + size))))
            return time.perf_counter() - t0

        return self.runner.run(go())

    def enqueue_paced(self, start: int, n: int, interval_s: float) -> None:
        async def go() -> None:
            t0 = time.perf_counter()
            for k in range(n):
                await asyncio.sleep(_pace(t0, k, interval_s))
                await self.latency.defer_async(t=time.time(), i=start + k)

        self.runner.run(go())

    async def _close(self) -> None:
        await self.app.close_async()

    def close(self) -> None:
        try:
            self.runner.run(self._close())
        finally:
            self.runner.close()


class PgqueuerLib(Lib):
    name = "pgqueuer"
    # Finished jobs leave the queue table (moved to pgqueuer_log); the drain counts the rest.
    done_sql = "SELECT %(n)s - count(*) FROM pgqueuer WHERE entrypoint = 'bench_noop'"
    failed_sql = (
        "SELECT count(*) FROM pgqueuer_log WHERE status NOT IN ('queued', 'picked', 'successful')"
    )

    def __init__(self, conninfo: str) -> None:
        super().__init__(conninfo)
        self.runner = asyncio.Runner()
        self.queries, self._close = self.runner.run(_pgqueuer_connect(conninfo))

    def install(self) -> None:
        self.runner.run(self.queries.install())

    @staticmethod
    def _payload(body: dict[str, Any]) -> bytes:
        return json.dumps(body).encode()

    def _many(self, lo: int, hi: int) -> Any:
        k = hi - lo
        payloads: list[bytes | None] = [self._payload({"i": i}) for i in range(lo, hi)]
        return self.queries.enqueue([NOOP] * k, payloads, [0] * k)

    def fill(self, n: int, batch: int) -> None:
        async def go() -> None:
            for lo in range(0, n, batch):
                await self._many(lo, min(n, lo + batch))

        self.runner.run(go())

    def enqueue_single(self, n: int) -> float:
        async def go() -> float:
            enqueue = self.queries.enqueue
            for i in range(WARMUP_CALLS):
                await enqueue(NOOP, self._payload({"i": -i}), 0)
            t0 = time.perf_counter()
            for i in range(n):
                await enqueue(NOOP, self._payload({"i": i}), 0)
            return time.perf_counter() - t0

        return self.runner.run(go())

    def enqueue_batch(self, n: int, size: int) -> float:
        async def go() -> float:
            await self._many(-min(size, 100), 0)
            t0 = time.perf_counter()
            for lo in range(0, n, size):
                await self._many(lo, min(n, lo + size))
            return time.perf_counter() - t0

        return self.runner.run(go())

    def enqueue_paced(self, start: int, n: int, interval_s: float) -> None:
        async def go() -> None:
            t0 = time.perf_counter()
            for k in range(n):
                await asyncio.sleep(_pace(t0, k, interval_s))
                body = self._payload({"t": time.time(), "i": start + k})
                await self.queries.enqueue(LAT, body, 0)

        self.runner.run(go())

    def close(self) -> None:
        async def go() -> None:
            await self._close()

        try:
            self.runner.run(go())
        finally:
            self.runner.close()


LIB_CLASSES: dict[str, type[Lib]] = {
    "botq": BotqLib,
    "procrastinate": ProcrastinateLib,
    "pgqueuer": PgqueuerLib,
}


# -- worker processes ----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def tail(self, lines: int = 8) -> str:
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])


def start_workers(
    lib: Lib, count: int, concurrency: int | None, env: dict[str, str] | None = None
) -> list[WorkerProc]:
    argv, extra = lib.worker_command(concurrency)
    full_env = {**os.environ, **extra, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    workers = []
    for _ in range(count):
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_workers
        proc = subprocess.Popen(
            argv, env=full_env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        workers.append(WorkerProc(proc, log))
    return workers


def stop_workers(workers: list[WorkerProc], grace_s: float = 15.0) -> dict[str, Any]:
    """SIGTERM every worker, wait for a clean exit, SIGKILL what is left; say what happened."""
    t0 = time.perf_counter()
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    killed = 0
    for w in workers:
        try:
            w.proc.wait(max(0.1, grace_s - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
            killed += 1
    for w in workers:
        w.log.close()
    return {"stop_s": round(time.perf_counter() - t0, 3), "workers_killed": killed}


def check_alive(workers: list[WorkerProc]) -> None:
    for w in workers:
        rc = w.proc.poll()
        if rc is not None:
            raise RuntimeError(f"a worker exited with code {rc}: {w.tail()}")


# -- the measurements (run inside one `_run` subprocess) ----------------------------------


def measure_enqueue(lib: Lib, fig: Figure, cfg: Config) -> dict[str, Any]:
    lib.install()
    if fig.kind == "single":
        n = cfg.single_n
        elapsed = lib.enqueue_single(n)
        return {"value": n / elapsed, "n": n, "elapsed_s": elapsed}
    n, size = cfg.batch_n, cfg.batch_size
    elapsed = lib.enqueue_batch(n, size)
    return {"value": n / elapsed, "n": n, "batch_size": size, "elapsed_s": elapsed}


def _checkpoint(conn: psycopg.Connection) -> None:
    """Start the timed part with clean buffers (needs superuser; skipped otherwise)."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")


def measure_drain(lib: Lib, fig: Figure, cfg: Config, deadline: float) -> dict[str, Any]:
    n = cfg.drain_n
    concurrency = fig.concurrency[lib.name]
    lib.install()
    lib.fill(n, cfg.fill_batch)
    with psycopg.connect(lib.conninfo, autocommit=True) as conn:
        count = conn.cursor()
        count.execute(lib.done_sql, {"n": n})
        if count.fetchone()[0] != 0:  # type: ignore[index]
            raise RuntimeError("tasks were done before any worker started")
        _checkpoint(conn)
        t0 = time.perf_counter()
        workers = start_workers(lib, fig.processes, concurrency)
        first = None
        try:
            while True:
                done = int(count.execute(lib.done_sql, {"n": n}).fetchone()[0])  # type: ignore[index]
                now = time.perf_counter()
                if done and first is None:
                    first = now - t0
                if done >= n:
                    break
                check_alive(workers)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done}/{n} tasks done after {now - t0:.1f} s")
                time.sleep(POLL_S)
        finally:
            stopped = stop_workers(workers)
        failed = int(count.execute(lib.failed_sql).fetchone()[0])  # type: ignore[index]
    if failed:
        raise RuntimeError(f"{failed} task(s) failed or were retried: is the handler registered?")
    elapsed = now - t0
    assert first is not None
    return {
        "value": n / elapsed,
        "n": n,
        "processes": fig.processes,
        "concurrency": concurrency,
        "elapsed_s": elapsed,
        "first_done_s": first,
        "rate_after_first": n / max(elapsed - first, 1e-9),
        **stopped,
    }


def _read_latencies(path: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            i, lat = line.split()
            out[int(i)] = float(lat)
    return out


def _wait_latencies(
    path: Path, count: int, deadline: float, workers: list[WorkerProc]
) -> dict[int, float]:
    while True:
        got = _read_latencies(path)
        if len(got) >= count:
            return got
        check_alive(workers)
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(got)}/{count} latency tasks ran")
        time.sleep(POLL_S)


def measure_latency(lib: Lib, fig: Figure, cfg: Config, deadline: float) -> dict[str, Any]:
    n = cfg.latency_n
    lib.install()
    with tempfile.TemporaryDirectory(prefix="botq-bench-lat-") as tmp:
        path = Path(tmp) / "latency.txt"
        path.touch()
        workers = start_workers(lib, 1, fig.concurrency[lib.name], {LAT_ENV: str(path)})
        try:
            lib.enqueue_paced(-1, 1, 0.0)  # the worker is up once this one ran
            _wait_latencies(path, 1, deadline, workers)
            time.sleep(0.5)  # let it settle into waiting
            lib.enqueue_paced(0, n, cfg.latency_interval_s)
            got = _wait_latencies(path, n + 1, deadline, workers)
        finally:
            stopped = stop_workers(workers)
    ms = sorted(got[i] * 1000 for i in range(n))
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "value": {"p50": statistics.median(ms), "p95": q[94]},
        "n": n,
        "interval_s": cfg.latency_interval_s,
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "startup_latency_ms": got[-1] * 1000,
        **stopped,
    }


def run_one(lib_name: str, fig: Figure, conninfo: str, cfg: Config, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    lib = LIB_CLASSES[lib_name](conninfo)
    try:
        if fig.kind in ("single", "batch"):
            return measure_enqueue(lib, fig, cfg)
        if fig.kind == "drain":
            return measure_drain(lib, fig, cfg, deadline)
        return measure_latency(lib, fig, cfg, deadline)
    finally:
        lib.close()


# -- subprocess entry points ----------------------------------------------------------------


def _sigterm_exits() -> None:
    """Turn SIGTERM into SystemExit so that `finally` blocks stop the workers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main_run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="queue_bench.py _run")
    p.add_argument("--lib", required=True, choices=LIBS)
    p.add_argument("--figure", required=True, choices=list(FIGURES_BY_KEY))
    p.add_argument("--db", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--timeout", type=float, required=True)
    args = p.parse_args(argv)
    _sigterm_exits()
    cfg = Config(**json.loads(args.config))
    try:
        result = run_one(args.lib, FIGURES_BY_KEY[args.figure], args.db, cfg, args.timeout)
    except Exception as exc:  # reported in the table; the orchestrator goes on
        print("RESULT " + json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def main_worker(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="queue_bench.py _worker")
    p.add_argument("--lib", required=True, choices=["procrastinate", "pgqueuer"])
    p.add_argument("--db", required=True)
    p.add_argument("--concurrency", type=int, default=None)
    args = p.parse_args(argv)
    if args.lib == "procrastinate":
        app, _, _ = _procrastinate_app(args.db)
        options = {} if args.concurrency is None else {"concurrency": args.concurrency}
        app.run_worker(**options)  # stops gracefully on SIGTERM
    else:
        if args.concurrency is not None:
            raise SystemExit("pgqueuer's worker here runs with its defaults only")
        asyncio.run(_pgqueuer_worker(args.db))
    return 0


# -- the orchestrator --------------------------------------------------------------------


def _kill_group(pgid: int) -> bool:
    """Stop whatever is left in a process group we created; True if something was left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(50):
        time.sleep(0.1)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def run_child(lib: str, fig: Figure, conninfo: str, cfg: Config, timeout_s: float) -> dict:
    """One measurement in a subprocess of its own (and its own process group)."""
    cmd = [sys.executable, str(THIS_FILE), "_run", "--lib", lib, "--figure", fig.key]
    cmd += ["--db", conninfo, "--config", json.dumps(dataclasses.asdict(cfg))]
    cmd += ["--timeout", str(max(timeout_s - 15.0, timeout_s * 0.8))]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return {"error": f"timed out after {timeout_s:.0f} s (killed)"}
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        leftovers = _kill_group(proc.pid)  # the run's workers should all be gone already
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
        stderr = err.read().decode(errors="replace").strip().splitlines()
    found = [ln for ln in lines if ln.startswith("RESULT ")]
    if found:
        result: dict[str, Any] = json.loads(found[-1][len("RESULT ") :])
    else:
        tail = " | ".join(stderr[-5:]) or f"exit code {proc.returncode}"
        result = {"error": f"no result: {tail}"}
    if leftovers:
        result["leftover_processes_killed"] = True
    return result


def _median_value(runs: list[dict[str, Any]]) -> Any:
    values = [r["value"] for r in runs if "value" in r]
    if not values:
        return None
    if isinstance(values[0], dict):
        return {k: statistics.median(v[k] for v in values) for k in values[0]}
    return statistics.median(values)


def _short_error(message: str, width: int) -> str:
    text = "error: " + message.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(
    results: dict[str, dict[str, dict[str, Any]]], libs: list[str], repeat: int, width: int = 24
) -> str:
    rows: list[tuple[str, str, Callable[[Any], str]]] = []
    for fig in FIGURES:
        if fig.key not in results:
            continue
        if fig.kind == "latency":
            rows.append((fig.key, "idle pickup p50 (ms)", lambda v: f"{v['p50']:.2f}"))
            rows.append((fig.key, "idle pickup p95 (ms)", lambda v: f"{v['p95']:.2f}"))
        else:
            rows.append((fig.key, f"{fig.label} (tasks/s)", lambda v: f"{v:,.0f}"))
    label_w = max(len(r[1]) for r in rows) + 2
    head = f"{'':<{label_w}}" + "".join(f"{lib:>{width}}" for lib in libs) + f"{'botq goal':>14}"
    lines = [head, "-" * len(head)]
    for key, label, fmt in rows:
        cells = []
        for lib in libs:
            entry = results[key].get(lib)
            if entry is None:
                cells.append("n/a")
            elif entry["median"] is not None:
                cells.append(fmt(entry["median"]))
            else:
                cells.append(
                    _short_error(entry["errors"][0] if entry["errors"] else "?", width - 2)
                )
        goal_key = key if key != "latency" else ("latency_" + label.split()[2])
        line = f"{label:<{label_w}}" + "".join(f"{c:>{width}}" for c in cells)
        lines.append(line + f"{GOALS.get(goal_key, ''):>14}")
    lines.append(f"(median of {repeat} run{'s' if repeat != 1 else ''} per cell)")
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _describe_run(fig: Figure, result: dict[str, Any]) -> str:
    if "error" in result:
        return "error: " + result["error"]
    v = result["value"]
    if fig.kind == "latency":
        return f"p50 {v['p50']:.2f} ms, p95 {v['p95']:.2f} ms"
    extra = f", first done after {result['first_done_s']:.2f} s" if fig.kind == "drain" else ""
    return f"{v:,.0f} tasks/s ({result['elapsed_s']:.2f} s{extra})"


def _timeout_for(fig: Figure, cfg: Config) -> float:
    return {
        "single": cfg.enqueue_timeout_s,
        "batch": cfg.enqueue_timeout_s,
        "drain": cfg.drain_timeout_s,
        "latency": cfg.latency_timeout_s,
    }[fig.kind]


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[BenchServer]:
    server = BenchServer(url)
    try:
        yield server
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_run"]:
        return main_run(argv[1:])
    if argv[:1] == ["_worker"]:
        return main_worker(argv[1:])

    p = argparse.ArgumentParser(
        prog="queue_bench.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="small N, one run: a smoke test")
    p.add_argument(
        "--only",
        default=",".join(LIBS),
        help="libraries to run, comma-separated (botq,procrastinate,pgqueuer)",
    )
    p.add_argument(
        "--figures",
        default=",".join(FIGURES_BY_KEY),
        help=f"figures to run, comma-separated ({','.join(FIGURES_BY_KEY)})",
    )
    p.add_argument("--repeat", type=int, default=None, help="runs per cell, median (default 3)")
    p.add_argument("--url", default=None, help="PostgreSQL to use (default: a temporary one)")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument(
        "--timeout", type=float, default=None, help="seconds per measurement (default by figure)"
    )
    p.add_argument(
        "--pgqueuer-driver",
        choices=["asyncpg", "psycopg"],
        default=None,
        help="pgqueuer's driver (default: asyncpg when installed, else psycopg)",
    )
    args = p.parse_args(argv)
    if args.pgqueuer_driver:
        os.environ[PGQ_DRIVER_ENV] = args.pgqueuer_driver
    os.environ[PGQ_DRIVER_ENV] = pgq_driver = pgqueuer_driver()  # the same in every subprocess

    only = {x.strip() for x in args.only.split(",") if x.strip()}
    chosen = {x.strip() for x in args.figures.split(",") if x.strip()}
    bad = sorted((only - set(LIBS)) | (chosen - set(FIGURES_BY_KEY)))
    libs = [x for x in LIBS if x in only]  # columns and runs always in the same order
    figures = [x for x in FIGURES_BY_KEY if x in chosen]
    if bad or not libs or not figures:
        p.error(f"unknown library or figure: {', '.join(bad) or '(none given)'}")
    cfg = QUICK if args.quick else Config()
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        p.error("--repeat must be at least 1")
    out_path = args.out or RESULTS_DIR / ("queue-quick.json" if args.quick else "queue.json")

    versions = {lib: version_of(lib) for lib in (*LIBS, "psycopg", "psycopg-pool", "asyncpg")}
    missing = {lib for lib in libs if versions[lib] is None}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    machine = machine_info()

    with _server(args.url) as server:
        pg = server.facts()
        _progress(
            f"PostgreSQL {pg['version']} at {describe(server.url)}; "
            f"{machine['cores']} cores; libraries: "
            + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items())
        )
        for key in figures:
            fig = FIGURES_BY_KEY[key]
            cells = results.setdefault(key, {})
            for lib in libs:
                if lib in fig.concurrency:
                    cells[lib] = {
                        "concurrency": fig.concurrency[lib],
                        "runs": [],
                        "errors": [],
                        "median": None,
                    }
            for r in range(repeat):
                for lib in libs:  # libraries interleaved, so that drift hits all alike
                    if lib not in cells:
                        continue
                    if lib in missing:
                        result = {"error": f"{lib} is not installed (pip install -e '.[bench]')"}
                    else:
                        db = f"bench_{lib}_{key}_{r}"
                        try:
                            conninfo = server.create_database(db)
                            timeout = args.timeout or _timeout_for(fig, cfg)
                            result = run_child(lib, fig, conninfo, cfg, timeout)
                        except psycopg.Error as exc:
                            result = {"error": f"database: {exc}"}
                        finally:
                            with contextlib.suppress(psycopg.Error):
                                server.drop_database(db)
                    cell = cells[lib]
                    if "error" in result:
                        cell["errors"].append(result["error"])
                    else:
                        cell["runs"].append(result)
                    _progress(f"[{key}] {lib} run {r + 1}/{repeat}: {_describe_run(fig, result)}")
            for cell in cells.values():
                cell["median"] = _median_value(cell["runs"])

    table = format_table(results, libs, repeat)
    if "pgqueuer" in libs:
        table += f"; pgqueuer on its {pgq_driver} driver"
    print(table)
    report = {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "mode": "quick" if args.quick else "full",
        "repeat": repeat,
        "config": dataclasses.asdict(cfg),
        "machine": machine,
        "postgresql": pg,
        "versions": versions,
        "pgqueuer_driver": pgq_driver,
        "worker_defaults": {
            "botq": "python -m botq worker: concurrency 1 (threads), prefetch by handler time",
            "procrastinate": "App.run_worker: concurrency 1, listen_notify on",
            "pgqueuer": f"QueueManager.run: batch_size 10, no concurrency cap, {pgq_driver} driver",
        },
        "units": {"latency": "ms", "other": "tasks/s"},
        "results": results,
        "table": table,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    _progress(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
