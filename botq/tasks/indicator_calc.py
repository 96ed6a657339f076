"""IndicatorCalc: compute indicators over stored candles and store the series.

Payload: {"pair": "BTC/USD", "indicators": ["rsi_14", "ema_20"], "timeframe"?: "1m",
"start"?, "end"?}. The run works on whole UTC days (start floored, end ceiled to midnight) so
that every stored day is complete. Result: pair, timeframe, rows, range, and per indicator
how many values are NaN (warm-up and gaps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from botq.errors import PayloadError, StrategyError
from botq.indicators import compute, parse
from botq.indicators.store import store_series
from botq.market import load
from botq.market.timeframes import TIMEFRAMES
from botq.queue.handlers import Context, handler
from botq.tasks._payload import choice, optional_time, required_str


def _indicator_names(payload: dict[str, Any]) -> list[str]:
    names = payload.get("indicators")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PayloadError("indicators", "required, a list of names such as ['rsi_14', 'ema_20']")
    names = list(dict.fromkeys(names))
    problems = []
    for name in names:
        try:
            parse(name)
        except StrategyError as exc:
            problems.extend(exc.problems)
    if problems:  # every bad name at once, each with the registry's code and fix
        raise StrategyError(problems)
    return names


def _whole_days(value: Any, *, ceil: bool) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.ceil("1D") if ceil else ts.floor("1D")


@handler("IndicatorCalc", builtin=True)
def indicator_calc(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    pair = required_str(payload, "pair", "BTC/USD")
    timeframe = choice(payload, "timeframe", tuple(TIMEFRAMES), "1m")
    names = _indicator_names(payload)
    start = _whole_days(optional_time(payload, "start"), ceil=False)
    end = _whole_days(optional_time(payload, "end"), ceil=True)
    candles = load(ctx.db, pair, start, end, timeframe=timeframe)
    candles = candles.closed()  # a forming bucket is not final: its values would change
    ctx.progress(0.05, f"computing {len(names)} indicators on {len(candles):,} candles")
    frame = compute(candles, names)
    nan_counts: dict[str, int] = {}
    for i, name in enumerate(names):
        if ctx.cancelled:
            break
        values = frame[name].to_numpy(dtype=np.float64)
        store_series(ctx.db, pair, timeframe, name, candles.time, values)
        nan_counts[name] = int(np.isnan(values).sum())
        ctx.progress(0.05 + 0.95 * (i + 1) / len(names), f"stored {name}")
    first = pd.Timestamp(int(candles.time[0]), tz="UTC").isoformat() if len(candles) else None
    last = pd.Timestamp(int(candles.time[-1]), tz="UTC").isoformat() if len(candles) else None
    return {
        "pair": pair,
        "timeframe": timeframe,
        "indicators": list(nan_counts),
        "rows": len(candles),
        "first": first,
        "last": last,
        "nan_values": nan_counts,
    }
