"""Candle store benchmark: writing candles with COPY, and loading 1,000,000 of them into NumPy
and pandas, side by side with reading the same candles from a Parquet file with pyarrow.

    python benchmarks/market_bench.py            # 1,000,000 candles, median of 5 rounds
    python benchmarks/market_bench.py --quick    # 100,000 candles, a smoke test

Figures: write (new minutes, straight COPY), rewrite (the same candles again: staging table,
nothing differs), rewrite changed (every close moved: staging table + update), load into
NumPy (`botq.market.load`), load into pandas (`load(...).to_pandas()`),
Parquet into NumPy (`pyarrow.parquet.read_table` + `to_numpy` per column) and into pandas
(`pandas.read_parquet`); the four loads take turns in each round. Results go to
benchmarks/results/market.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._pg import BenchServer, machine_info  # noqa: E402
from botq.db.database import Database  # noqa: E402
from botq.market import Candles, load, synthetic, write_candles  # noqa: E402
from botq.market.files import write_candles_file  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions taking turns in every round, so that
    a busy moment of a shared machine hits all of them alike (compare ratios, not times)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def parquet_numpy(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="candles (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", default=None, help="PostgreSQL to use (default: a temporary one)")
    args = parser.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)
    candles = synthetic("BTC/USD", "2024-01-01", n, seed=1)
    out: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "n": n, "repeat": args.repeat}
    with BenchServer(args.url) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.create_database("botq_market_bench")
        db = Database(url)
        try:
            t0 = time.perf_counter()
            write_candles(db, candles)
            out["write_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            write_candles(db, candles)
            out["rewrite_s"] = time.perf_counter() - t0
            moved = candles.arrays()
            moved["close"] = moved["close"] * 1.0001
            moved["high"] = np.maximum(moved["high"], moved["close"])
            changed = Candles.from_arrays("BTC/USD", moved)
            t0 = time.perf_counter()
            write_candles(db, changed)
            out["rewrite_changed_s"] = time.perf_counter() - t0
            write_candles(db, candles)
            path = Path(tmp) / "btc.parquet"
            write_candles_file(candles, path)
            loads = {
                "load_numpy": lambda: load(db, "BTC/USD"),
                "parquet_numpy": lambda: parquet_numpy(path),
                "load_pandas": lambda: load(db, "BTC/USD").to_pandas(),
                "parquet_pandas": lambda: pd.read_parquet(path),
            }
            interleaved(loads, 1)  # warm caches, as a notebook's second load would find them
            for name, runs in interleaved(loads, args.repeat).items():
                out[f"{name}_s"], out[f"{name}_runs"] = statistics.median(runs), runs
            out["facts"] = server.facts()
        finally:
            db.close()
            server.drop_database("botq_market_bench")
    out["machine"] = machine_info()
    rows = [
        ("write (COPY, new minutes)", f"{n / out['write_s']:,.0f} candles/s", ""),
        ("rewrite (same candles)", f"{n / out['rewrite_s']:,.0f} candles/s", ""),
        ("rewrite (changed values)", f"{n / out['rewrite_changed_s']:,.0f} candles/s", ""),
        ("load into NumPy", f"{out['load_numpy_s'] * 1e3:,.0f} ms",
         f"{out['parquet_numpy_s'] * 1e3:,.0f} ms"),
        ("load into pandas", f"{out['load_pandas_s'] * 1e3:,.0f} ms",
         f"{out['parquet_pandas_s'] * 1e3:,.0f} ms"),
    ]  # fmt: skip
    print(f"{n:,} one-minute candles; median of {args.repeat} rounds of loads")
    print(f"{'':34} {'botq (PostgreSQL)':>20} {'Parquet (pyarrow)':>20}")
    for label, ours, theirs in rows:
        print(f"{label:34} {ours:>20} {theirs:>20}")
    ratio = out["load_numpy_s"] / out["parquet_numpy_s"]
    ratio_pandas = out["load_pandas_s"] / out["parquet_pandas_s"]
    print(f"PostgreSQL load / Parquet load: NumPy {ratio:.1f}x, pandas {ratio_pandas:.1f}x")
    out["ratio_numpy"] = ratio
    out["ratio_pandas"] = ratio_pandas
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / ("market-quick.json" if args.quick else "market.json")
    target.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
