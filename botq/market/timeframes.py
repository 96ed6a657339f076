"""Timeframes (1m 5m 15m 1h 4h 1d) and the kernel that aggregates 1-minute candles into them."""

from __future__ import annotations

import numpy as np
from numba import njit

from botq.errors import MarketDataError

NS_PER_MINUTE = 60_000_000_000
TIMEFRAMES: dict[str, int] = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}


def timeframe_minutes(timeframe: str) -> int:
    """Minutes in a timeframe; a clear error for anything else."""
    try:
        return TIMEFRAMES[timeframe]
    except (KeyError, TypeError):
        raise MarketDataError(
            f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}"
        ) from None


@njit(cache=True, nogil=True)
def resample_nb(
    time: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    trades: np.ndarray,
    vwap: np.ndarray,
    width_ns: int,
    horizon_ns: int,
) -> tuple[np.ndarray, ...]:
    """OHLCV aggregation into UTC-aligned buckets of `width_ns` (pandas' resample().agg with
    first/max/min/last/sum; vwap weighted by volume). A bucket is complete when its end is
    at or before `horizon_ns`. Empty buckets are left out."""
    n = time.shape[0]
    count = 0
    last_bucket = np.int64(-(2**62))
    for i in range(n):
        b = time[i] - time[i] % width_ns
        if b != last_bucket:
            count += 1
            last_bucket = b
    t_out = np.empty(count, np.int64)
    o = np.empty(count)
    h = np.empty(count)
    lo = np.empty(count)
    c = np.empty(count)
    v = np.zeros(count)
    tr = np.zeros(count, np.int64)
    vw = np.empty(count)
    done = np.empty(count, np.bool_)
    pv = 0.0
    pv_vol = 0.0
    j = -1
    last_bucket = np.int64(-(2**62))
    for i in range(n):
        b = time[i] - time[i] % width_ns
        if b != last_bucket:
            if j >= 0:
                vw[j] = pv / pv_vol if pv_vol > 0 else np.nan
            j += 1
            last_bucket = b
            t_out[j] = b
            o[j] = open_[i]
            h[j] = high[i]
            lo[j] = low[i]
            pv = 0.0
            pv_vol = 0.0
            done[j] = b + width_ns <= horizon_ns
        else:
            if high[i] > h[j]:
                h[j] = high[i]
            if low[i] < lo[j]:
                lo[j] = low[i]
        c[j] = close[i]
        v[j] += volume[i]
        tr[j] += trades[i]
        if not np.isnan(vwap[i]) and volume[i] > 0:
            pv += vwap[i] * volume[i]
            pv_vol += volume[i]
    if j >= 0:
        vw[j] = pv / pv_vol if pv_vol > 0 else np.nan
    return t_out, o, h, lo, c, v, tr, vw, done


def resample_arrays(
    arrays: dict[str, np.ndarray], width_ns: int, horizon_ns: int
) -> dict[str, np.ndarray]:
    """`resample_nb` over a dict of candle columns; returns columns plus `complete`."""
    out = resample_nb(
        arrays["time"],
        arrays["open"],
        arrays["high"],
        arrays["low"],
        arrays["close"],
        arrays["volume"],
        arrays["trades"],
        arrays["vwap"],
        int(width_ns),
        int(horizon_ns),
    )
    names = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "complete")
    return dict(zip(names, out, strict=True))
