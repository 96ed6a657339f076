"""Indicator benchmark: botq's numba kernels vs TA-Lib (C), pandas and vectorbt, same run.

    python benchmarks/indicator_bench.py                   # 1,000,000 bars, median of 7
    python benchmarks/indicator_bench.py --bars 200000 --repeat 3
    python benchmarks/indicator_bench.py --skip-cold --json results.json
    python benchmarks/indicator_bench.py --quick           # no vectorbt, no cold start, 5 runs

Every indicator runs on the same random walk at ~60,000 (1-minute-like bars). Per indicator:
botq as ``compute()`` runs it (kernels writing into NumPy-allocated arrays), TA-Lib's Python
wrapper, an idiomatic pandas formulation (rolling / ewm) and vectorbt where it has the
indicator and is installed. Each figure is the median of ``--repeat`` runs after one warm-up
call, so numba's compile time is not in it (the minimum is reported too: on a shared machine
the median also measures the neighbours); compile time is reported separately:

* "JIT compile, empty cache": a fresh process with an empty NUMBA_CACHE_DIR, import plus the
  first ``compute()`` of 10 indicators on a small frame (what the very first use costs);
* "cold first call, cached": a second fresh process on the now populated cache, import plus
  the first ``compute()`` of the same 10 indicators on the full frame (what a notebook user
  feels on every kernel restart).

Then ``compute()`` of those 10 indicators with 1 thread and with every core. TA-Lib is needed
(``pip install TA-Lib``); vectorbt is optional. Timings depend on the machine and its load:
run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEN = [
    "sma_20",
    "ema_20",
    "rsi_14",
    "macd_hist",
    "bb_upper",
    "atr_14",
    "stoch_rsi_14",
    "rstd_20",
    "obv",
    "roc_10",
]


def candles(n: int, seed: int = 0) -> pd.DataFrame:
    """A random walk at ~60,000 with consistent OHLCV, 1-minute UTC index."""
    rng = np.random.default_rng(seed)
    c = 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * (1.0 + np.abs(rng.normal(0.0, 5e-4, n)))
    lo = np.minimum(o, c) * (1.0 - np.abs(rng.normal(0.0, 5e-4, n)))
    v = rng.uniform(0.1, 10.0, n)
    idx = pd.date_range("2020-01-01", periods=n, freq="min", tz="UTC")
    return pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": v}, index=idx)


def timings_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm-up (and JIT compile where there is one)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    return statistics.median(timings_ms(fn, repeat))


# ----------------------------------------------------------------------------- contenders


def botq_cases(d: dict[str, np.ndarray], t: np.ndarray) -> dict[str, Callable[[], object]]:
    from botq.indicators import kernels as K

    n = d["close"].shape[0]
    c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]

    def e() -> np.ndarray:
        return np.empty(n)

    def stochrsi() -> object:
        return K.stochf_nb(K.rsi_nb(c, 14, e()), 5, 3, e(), e())

    session = t // (86_400 * 10**9)
    r = K.log_returns_nb(c)
    return {
        "SMA 20": lambda: K.sma_nb(c, 20, e()),
        "EMA 20": lambda: K.ema_nb(c, 20, e()),
        "RSI 14": lambda: K.rsi_nb(c, 14, e()),
        # compute() skips the slow EMA (the empty 4th output) unless an ema_26 is requested
        "MACD 12/26/9": lambda: K.macd_slow_nb(c, 12, 26, 9, e(), e(), e(), np.empty(0)),
        "Bollinger 20/2": lambda: K.bbands_nb(c, 20, 2.0, e(), e(), e()),
        "ATR 14": lambda: K.atr_nb(h, lo, c, 14, e()),
        "StochRSI 14/5/3": stochrsi,
        "STDDEV 20": lambda: K.rolling_std_nb(c, 20, e()),
        "OBV": lambda: K.obv_nb(c, v, e()),
        "ROC 10": lambda: K.roc_nb(c, 10, e()),
        "z-score 20": lambda: K.zscore_nb(c, 20, e()),
        "percentile rank 50": lambda: K.percentile_rank_nb(c, 50),
        "skew 60 (returns)": lambda: K.skew_nb(r, 60),
        "kurt 60 (returns)": lambda: K.kurt_nb(r, 60),
        "autocorr lag 1 / 100": lambda: K.autocorr_nb(r, 1, 100),
        "Parkinson 20": lambda: K.parkinson_nb(h, lo, 20, e()),
        "VWAP (UTC day)": lambda: K.vwap_nb(h, lo, c, v, session, e()),
        "Hurst 200 (R/S)": lambda: K.hurst_nb(r, 200),
    }


def talib_cases(d: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    try:
        import talib
    except ImportError:
        return {}
    c, h, lo, v = d["close"], d["high"], d["low"], d["volume"]
    return {
        "SMA 20": lambda: talib.SMA(c, 20),
        "EMA 20": lambda: talib.EMA(c, 20),
        "RSI 14": lambda: talib.RSI(c, 14),
        "MACD 12/26/9": lambda: talib.MACD(c, 12, 26, 9),
        "Bollinger 20/2": lambda: talib.BBANDS(c, 20, 2.0, 2.0, 0),
        "ATR 14": lambda: talib.ATR(h, lo, c, 14),
        "StochRSI 14/5/3": lambda: talib.STOCHRSI(c, 14, 5, 3, 0),
        "STDDEV 20": lambda: talib.STDDEV(c, 20, 1.0),
        "OBV": lambda: talib.OBV(c, v),
        "ROC 10": lambda: talib.ROC(c, 10),
    }


def pandas_cases(df: pd.DataFrame) -> dict[str, Callable[[], object]]:
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]

    def rsi(s: pd.Series, p: int) -> pd.Series:
        d = s.diff()
        up = d.clip(lower=0).ewm(alpha=1 / p, adjust=False).mean()
        dn = (-d).clip(lower=0).ewm(alpha=1 / p, adjust=False).mean()
        return 100 * up / (up + dn)

    def macd() -> object:
        line = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
        sig = line.ewm(span=9, adjust=False).mean()
        return line, sig, line - sig

    def bb() -> object:
        m = c.rolling(20).mean()
        sd = c.rolling(20).std(ddof=0)
        return m + 2 * sd, m, m - 2 * sd

    def atr() -> object:
        pc = c.shift()
        tr = pd.concat([h - lo, (h - pc).abs(), (lo - pc).abs()], axis=1).max(axis=1)
        return tr.ewm(alpha=1 / 14, adjust=False).mean()

    def stochrsi() -> object:
        r = rsi(c, 14)
        mn, mx = r.rolling(5).min(), r.rolling(5).max()
        k = 100 * (r - mn) / (mx - mn)
        return k, k.rolling(3).mean()

    r = np.log(c).diff()
    day = c.index.floor("1D")

    def vwap() -> object:
        tp = (h + lo + c) / 3 * v
        return tp.groupby(day).cumsum() / v.groupby(day).cumsum()

    return {
        "SMA 20": lambda: c.rolling(20).mean(),
        "EMA 20": lambda: c.ewm(span=20, adjust=False).mean(),
        "RSI 14": lambda: rsi(c, 14),
        "MACD 12/26/9": macd,
        "Bollinger 20/2": bb,
        "ATR 14": atr,
        "StochRSI 14/5/3": stochrsi,
        "STDDEV 20": lambda: c.rolling(20).std(ddof=0),
        "OBV": lambda: (np.sign(c.diff()).fillna(0) * v).cumsum(),
        "ROC 10": lambda: c.pct_change(10) * 100,
        "z-score 20": lambda: (c - c.rolling(20).mean()) / c.rolling(20).std(ddof=0),
        "percentile rank 50": lambda: c.rolling(50).rank(pct=True),
        "skew 60 (returns)": lambda: r.rolling(60).skew(),
        "kurt 60 (returns)": lambda: r.rolling(60).kurt(),
        "autocorr lag 1 / 100": lambda: r.rolling(100).corr(r.shift(1)),
        "Parkinson 20": lambda: np.sqrt((np.log(h / lo) ** 2).rolling(20).mean() / (4 * np.log(2))),
        "VWAP (UTC day)": vwap,
    }


def vectorbt_cases(df: pd.DataFrame) -> dict[str, Callable[[], object]]:
    try:
        import vectorbt as vbt
    except Exception:  # noqa: BLE001 - optional: missing, or broken with this pandas/numpy
        return {}
    # a tz-naive index: with a tz-aware one every vectorbt 1.2 call under pandas 3 spends
    # ~2.5 s on the index alone (measured), which is not what its kernels cost
    df = df.set_axis(df.index.tz_localize(None))
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    return {
        "SMA 20": lambda: vbt.MA.run(c, 20).ma,
        "EMA 20": lambda: vbt.MA.run(c, 20, ewm=True).ma,
        "RSI 14": lambda: vbt.RSI.run(c, 14).rsi,
        "MACD 12/26/9": lambda: vbt.MACD.run(c, 12, 26, 9).hist,
        "Bollinger 20/2": lambda: vbt.BBANDS.run(c, 20, alpha=2.0).upper,
        "ATR 14": lambda: vbt.ATR.run(h, lo, c, 14).atr,
        "STDDEV 20": lambda: vbt.MSTD.run(c, 20).mstd,
        "OBV": lambda: vbt.OBV.run(c, v).obv,
    }


# ----------------------------------------------------------------------------- cold start

_COLD = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd
from botq.indicators import compute
t1 = time.perf_counter()
n = {n}
rng = np.random.default_rng(0)
c = 60000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
df = pd.DataFrame(dict(open=c, high=c * 1.001, low=c * 0.999, close=c,
                       volume=rng.uniform(0, 10, n)),
                  index=pd.date_range("2020-01-01", periods=n, freq="min", tz="UTC"))
t2 = time.perf_counter()
compute(df, {names!r})
t3 = time.perf_counter()
print((t1 - t0) + (t3 - t2), t1 - t0, t3 - t2)
"""


def cold_start(n: int) -> dict[str, float]:
    """Seconds for import + first compute(), with an empty and then a populated numba cache."""
    root = str(Path(__file__).resolve().parents[1])
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="botq-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label, rows in (("jit_compile_empty_cache_s", 1000), ("cold_first_call_cached_s", n)):
            code = _COLD.format(root=root, n=rows, names=TEN)
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            total, imp, first = (float(x) for x in res.stdout.split())
            out[label] = total
            out[label.replace("_s", "_import_s")] = imp
    return out


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--skip-cold", action="store_true", help="skip the fresh-process timings")
    ap.add_argument(
        "--quick", action="store_true", help="no vectorbt, no fresh processes, --repeat 5"
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.skip_cold = True
        args.repeat = min(args.repeat, 5)

    df = candles(args.bars)
    d = {k: df[k].to_numpy(dtype=np.float64).copy() for k in df.columns}
    t = df.index.as_unit("ns").asi8.copy()
    contenders = {
        "botq": botq_cases(d, t),
        "TA-Lib": talib_cases(d),
        "pandas": pandas_cases(df),
        "vectorbt": {} if args.quick else vectorbt_cases(df),
    }
    rows: dict[str, dict[str, float | None]] = {}
    mins: dict[str, dict[str, float | None]] = {}
    for name in contenders["botq"]:
        rows[name] = {}
        mins[name] = {}
        for who, cases in contenders.items():
            fn = cases.get(name)
            try:
                ts = timings_ms(fn, args.repeat) if fn else None
            except Exception as exc:  # noqa: BLE001 - a contender that fails is reported, not fatal
                print(f"# {who} {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                ts = None
            rows[name][who] = statistics.median(ts) if ts else None
            mins[name][who] = min(ts) if ts else None

    from botq.indicators import compute

    ncores = os.cpu_count() or 1
    comp: dict[str, float] = {}
    for label, workers in (("serial", 1), (f"{ncores}_threads", ncores)):
        ts = timings_ms(lambda w=workers: compute(df, TEN, workers=w), args.repeat)
        comp[f"compute_10_{label}_ms"] = statistics.median(ts)
        comp[f"compute_10_{label}_ms_min"] = min(ts)
    cold = {} if args.skip_cold else cold_start(args.bars)

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:8.2f}"

    print(
        f"# {args.bars:,} bars, median of {args.repeat}, ms; {platform.processor() or '?'} "
        f"{ncores} cores, Python {platform.python_version()}"
    )
    print(
        "| indicator | botq | TA-Lib | pandas | vectorbt | botq/TA-Lib | pandas/botq "
        "| min: botq/TA-Lib | min: pandas/botq |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        cells = []
        for stat in (r, mins[name]):
            b, ta, pdm = stat["botq"], stat["TA-Lib"], stat["pandas"]
            cells.append(f"{b / ta:.2f}" if b and ta else "-")
            cells.append(f"{pdm / b:.1f}x" if b and pdm else "-")
        print(
            f"| {name} | {fmt(r['botq'])} | {fmt(r['TA-Lib'])} | {fmt(r['pandas'])} | "
            f"{fmt(r['vectorbt'])} | {' | '.join(cells)} |"
        )
    for k, val in {**comp, **cold}.items():
        print(f"{k}: {val:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "bars": args.bars,
                    "repeat": args.repeat,
                    "ms": rows,
                    "ms_min": mins,
                    **comp,
                    **cold,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
