"""Backtest benchmark: botq's engine vs vectorbt (from_signals) and backtesting.py, same data.

    python benchmarks/backtest_bench.py                  # 1,000,000 bars, 1,000 variants
    python benchmarks/backtest_bench.py --quick          # 100,000 bars, 100 variants

Figures (each measured in a fresh subprocess, so peak memory is the measurement's own):
1. one EMA 12/26 crossover on 1M 1-minute bars, indicators included: median of 21 runs after a
   warm-up (and of the first 5), plus the first call in a fresh process (import + compile from
   cache + run);
2. a sweep of EMA crossovers over a fast x slow grid: botq `run_many` (all variants),
   vectorbt `from_signals` on `--vbt-variants` of them in one broadcast call (it needs ~75 GB
   for 1,000 unchunked): backtests per second and peak RSS;
3. a DCA strategy with 5 actions (which from_signals cannot express): botq alone;
4. the same sweep as a BulkBacktest through the queue with 2 `botq worker` processes, against
   `run_many` in one process: the queue's overhead.
backtesting.py is measured on the single run when it is installed (`pip install backtesting`).
Results go to benchmarks/results/backtest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from botq.backtest.templates import ema_cross  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


DCA = """
[meta]
name = "DCA ladder"
max_open_positions = 1
[[actions]]
type = "open_long"
amount = "20%"
  [[actions.triggers]]
  indicator = "rsi_14"
  operator = "<"
  target = 30
[[actions]]
type = "buy"
amount = "25%"
average_price = true
  [[actions.triggers]]
  type = "pos_price_change"
  value = "-2%"
  max_count = 1
[[actions]]
type = "buy"
amount = "33%"
average_price = true
  [[actions.triggers]]
  type = "pos_price_change"
  value = "-4%"
  max_count = 1
[[actions]]
type = "sell"
amount = "50%"
  [[actions.triggers]]
  type = "pos_price_change"
  value = "+1.5%"
  max_count = 1
[[actions]]
type = "sell"
amount = "100%"
  [[actions.triggers]]
  type = "trailing_stop"
  value = "-1%"
"""


# timed runs of a single backtest (after a warm-up call), for botq and vectorbt alike
SINGLE_RUNS = 21


def _grid(n: int) -> tuple[list[int], list[int]]:
    """A fast x slow grid with about n cells (fast < slow)."""
    side = max(int(n**0.5), 1)
    fast = list(range(3, 3 + side))
    slow = list(range(3 + side + 5, 3 + side + 5 + (n + side - 1) // side))
    return fast, slow


def _candles(bars: int) -> Any:
    from botq.market import synthetic

    return synthetic("BTC/USD", "2024-01-01", bars, seed=7)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(kind: str, bars: int, variants: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    t0 = time.perf_counter()
    candles = _candles(bars)
    out: dict[str, Any] = {"setup_s": time.perf_counter() - t0}
    if kind == "botq_single":
        from botq.backtest import Strategy, run

        s = Strategy.from_toml(ema_cross().replace("{fast}", "12").replace("{slow}", "26"))
        t0 = time.perf_counter()
        result = run(s, candles)
        out["first_call_s"] = time.perf_counter() - t0
        times = []
        for _ in range(SINGLE_RUNS):
            t0 = time.perf_counter()
            result = run(s, candles)
            times.append(time.perf_counter() - t0)
        # the first runs of a process also fault in fresh memory for their outputs (see
        # benchmarks/README.md): the median of all is the cost per run once that has settled
        out["median_ms"] = statistics.median(times) * 1e3
        out["median_first5_ms"] = statistics.median(times[:5]) * 1e3
        out["min_ms"] = min(times) * 1e3
        out["final_value"] = result.metrics["final_value"]
        out["trades"] = result.metrics["trades"]
    elif kind == "botq_sweep":
        from botq.backtest import Template, grid, run_many

        fast, slow = _grid(variants)
        strategies = grid(Template(ema_cross()), {"fast": fast, "slow": slow})
        run_many(strategies[:2], candles)  # compile
        t0 = time.perf_counter()
        table = run_many(strategies, candles)
        out["seconds"] = time.perf_counter() - t0
        out["variants"] = len(table)
        out["runs_per_s"] = len(table) / out["seconds"]
        # again in the same process: memory the first sweep touched is reused (on this VM a
        # process's first touch of fresh memory costs ~3 s per GiB)
        t0 = time.perf_counter()
        run_many(strategies, candles)
        out["seconds_again"] = time.perf_counter() - t0
    elif kind == "botq_dca":
        from botq.backtest import Strategy, run

        s = Strategy.from_toml(DCA)
        run(s, candles)
        times = []
        for _ in range(SINGLE_RUNS):
            t0 = time.perf_counter()
            result = run(s, candles)
            times.append(time.perf_counter() - t0)
        out["median_ms"] = statistics.median(times) * 1e3
        out["trades"] = result.metrics["trades"]
    elif kind in ("vbt_single", "vbt_sweep"):
        import warnings

        import numpy as np

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import vectorbt as vbt

        import pandas as pd

        # a tz-naive index: a tz-aware one adds ~2.8 s to every from_signals call with vectorbt
        # 1.2 under pandas 3 (measured once below for the single run)
        aware = candles.to_pandas()["close"]
        close = aware.set_axis(aware.index.tz_localize(None))
        fast, slow = ([12], [26]) if kind == "vbt_single" else _grid(variants)
        pairs = [(f, s) for f in fast for s in slow][: max(variants, 1)]
        # Signals are computed outside the clock (pandas ewm, TA-Lib-style seeding aside): the
        # figure is from_signals itself, as in the anchors.
        emas = {w: close.ewm(span=w, adjust=False).mean() for p in pairs for w in p}
        entries = pd.DataFrame(
            {i: (emas[f] > emas[s]) & (emas[f].shift() <= emas[s].shift())
             for i, (f, s) in enumerate(pairs)}
        )  # fmt: skip
        exits = pd.DataFrame(
            {i: (emas[f] < emas[s]) & (emas[f].shift() >= emas[s].shift())
             for i, (f, s) in enumerate(pairs)}
        )  # fmt: skip

        def once() -> Any:
            return vbt.Portfolio.from_signals(close, entries, exits, fees=0.001, init_cash=1000)

        t0 = time.perf_counter()
        pf = once()
        out["first_call_s"] = time.perf_counter() - t0
        runs = SINGLE_RUNS if kind == "vbt_single" else 1
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            pf = once()
            times.append(time.perf_counter() - t0)
        out["median_ms"] = statistics.median(times) * 1e3
        out["variants"] = len(pairs)
        out["runs_per_s"] = len(pairs) / statistics.median(times)
        out["final_value"] = float(np.ravel(np.asarray(pf.final_value()))[0])
        if kind == "vbt_single":  # what the same call costs with the UTC index botq gives
            with_tz = [entries.set_axis(aware.index), exits.set_axis(aware.index)]
            vbt.Portfolio.from_signals(aware, *with_tz, fees=0.001, init_cash=1000)
            t0 = time.perf_counter()
            vbt.Portfolio.from_signals(aware, *with_tz, fees=0.001, init_cash=1000)
            out["tz_aware_index_ms"] = (time.perf_counter() - t0) * 1e3
    elif kind == "bt_single":
        from backtesting import Backtest
        from backtesting import Strategy as BtStrategy
        from backtesting.lib import crossover

        frame = candles.to_pandas().rename(columns=str.capitalize)

        def ema(values: Any, n: int) -> Any:
            import pandas as pd

            return pd.Series(values).ewm(span=n, adjust=False).mean()

        class Cross(BtStrategy):  # type: ignore[misc]
            def init(self) -> None:
                self.fast = self.I(ema, self.data.Close, 12)
                self.slow = self.I(ema, self.data.Close, 26)

            def next(self) -> None:
                if crossover(self.fast, self.slow):
                    self.buy()
                elif crossover(self.slow, self.fast):
                    self.position.close()

        t0 = time.perf_counter()
        stats = Backtest(frame, Cross, cash=1_000_000, commission=0.001).run()
        out["median_ms"] = (time.perf_counter() - t0) * 1e3
        out["trades"] = int(stats["# Trades"])
    out["peak_rss_mb"] = _peak_mb()
    return out


def measure(kind: str, bars: int, variants: int, timeout: float = 1800) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_child", kind, str(bars), str(variants)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def queue_sweep(bars: int, variants: int) -> dict[str, Any]:
    """The sweep as a BulkBacktest with 2 worker processes, against run_many in one process."""
    from benchmarks._pg import BenchServer
    from botq.db.database import Database
    from botq.market import write_candles

    fast, slow = _grid(variants)
    out: dict[str, Any] = {}
    with BenchServer() as server:
        url = server.create_database("botq_backtest_bench")
        db = Database(url)
        try:
            write_candles(db, _candles(bars))
            env = dict(os.environ, BOTQ_DATABASE_URL=url, PYTHONPATH=str(ROOT))
            workers = [
                subprocess.Popen([sys.executable, "-m", "botq", "worker"], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(2)
            ]  # fmt: skip
            try:
                # warm both workers (imports, cached kernels: ~1.5 s per process) with a tiny
                # sweep, as a long-running worker would be; run_many is timed warm as well
                warm = db.queue.enqueue(
                    "BulkBacktest",
                    {"template": ema_cross(), "grid": {"fast": [5, 6, 7, 8], "slow": [20]},
                     "pair": "BTC/USD", "chunk_size": 1},
                )  # fmt: skip
                db.queue.wait(warm, timeout=600)
                for key in ("seconds", "seconds_again"):  # the second on workers that ran one
                    t0 = time.perf_counter()
                    bulk = db.queue.enqueue(
                        "BulkBacktest",
                        {"template": ema_cross(), "grid": {"fast": fast, "slow": slow},
                         "pair": "BTC/USD", "chunk_size": 50},
                    )  # fmt: skip
                    task = db.queue.wait(bulk, timeout=3600)
                    out[key] = time.perf_counter() - t0
                    out["status"] = task.status.value
                    out["variants"] = (task.result or {}).get("variants")
            finally:
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.wait(60)
        finally:
            db.close()
            server.drop_database("botq_backtest_bench")
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bars", type=int, default=None)
    parser.add_argument("--variants", type=int, default=None)
    parser.add_argument("--vbt-variants", type=int, default=None)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated figures, e.g. botq_single,botq_sweep,queue_sweep",
    )
    args = parser.parse_args()
    only = {k for k in args.only.split(",") if k}
    bars = args.bars or (100_000 if args.quick else 1_000_000)
    variants = args.variants or (100 if args.quick else 1000)
    vbt_variants = args.vbt_variants or (20 if args.quick else 100)
    res: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "bars": bars}
    for key, kind, n in [
        ("botq_single", "botq_single", 1),
        ("vectorbt_single", "vbt_single", 1),
        ("backtesting_single", "bt_single", 1),
        ("botq_sweep", "botq_sweep", variants),
        ("vectorbt_sweep", "vbt_sweep", vbt_variants),
        ("botq_dca", "botq_dca", 1),
    ]:
        if only and key not in only:
            continue
        res[key] = measure(kind, bars, n)
        print(f"{key}: {res[key]}", flush=True)
    if only and "queue_sweep" not in only:
        return
    res["queue_sweep"] = queue_sweep(bars, variants)
    for key, pct in (
        ("seconds", "queue_overhead_pct"),
        ("seconds_again", "queue_overhead_again_pct"),
    ):
        sweep_s = res.get("botq_sweep", {}).get(key)
        if sweep_s and res["queue_sweep"].get(key):
            res[pct] = 100 * (res["queue_sweep"][key] / sweep_s - 1)
    print(
        f"queue_sweep: {res['queue_sweep']}  overhead: {res.get('queue_overhead_pct')}, "
        f"again: {res.get('queue_overhead_again_pct')}"
    )
    RESULTS.mkdir(exist_ok=True)
    # a quick or partial run never replaces the full figures that README quotes
    target = RESULTS / ("backtest-quick.json" if args.quick or only else "backtest.json")
    target.write_text(json.dumps(res, indent=2, default=str))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
