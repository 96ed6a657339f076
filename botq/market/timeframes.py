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
    bucket_ns: int,
    offset_ns: int,
    step_ns: int,
    horizon_ns: int,
) -> tuple[np.ndarray, ...]:
    """OHLCV aggregation into buckets [offset + k·bucket_ns, offset + (k+1)·bucket_ns).

    As pandas' resample().agg(open first, high max, low min, close last, volume and trades
    sum), each ignoring NaN; vwap weighted by volume. offset 0 aligns to the epoch, so UTC
    hours and days. Only buckets holding a candle exist. Returns (bucket_start, open, high,
    low, close, volume, trades, vwap, complete, visible):
    - complete[k]: bucket k ends at or before `horizon_ns` (the data covers its whole period);
    - visible[i]: the last bucket complete when row i's candle closes (at time[i] + step_ns):
      row i's own bucket if that reaches its end, else the one before; -1 if none. So an
      hourly bucket of 1-minute candles is visible from its 59th minute on, never earlier;
      step_ns <= 0 makes a bucket visible only from the first row of a later bucket.
    """
    n = time.shape[0]
    nb = 0
    cur = np.int64(0)
    for i in range(n):
        b = (time[i] - offset_ns) // bucket_ns
        if i == 0 or b != cur:
            nb += 1
            cur = b
    bt = np.empty(nb, np.int64)
    bo = np.full(nb, np.nan)
    bh = np.full(nb, np.nan)
    bl = np.full(nb, np.nan)
    bc = np.full(nb, np.nan)
    bv = np.full(nb, np.nan)
    btr = np.zeros(nb, np.int64)
    bvw = np.full(nb, np.nan)
    complete = np.empty(nb, np.bool_)
    visible = np.empty(n, np.int64)
    pv = 0.0
    pv_vol = 0.0
    k = -1
    for i in range(n):
        b = (time[i] - offset_ns) // bucket_ns
        if k < 0 or b != cur:
            if k >= 0 and pv_vol > 0:
                bvw[k] = pv / pv_vol
            k += 1
            cur = b
            bt[k] = b * bucket_ns + offset_ns
            complete[k] = bt[k] + bucket_ns <= horizon_ns
            pv = 0.0
            pv_vol = 0.0
        if not np.isnan(open_[i]) and np.isnan(bo[k]):
            bo[k] = open_[i]
        if not np.isnan(high[i]) and (np.isnan(bh[k]) or high[i] > bh[k]):
            bh[k] = high[i]
        if not np.isnan(low[i]) and (np.isnan(bl[k]) or low[i] < bl[k]):
            bl[k] = low[i]
        if not np.isnan(close[i]):
            bc[k] = close[i]
        if not np.isnan(volume[i]):
            bv[k] = volume[i] if np.isnan(bv[k]) else bv[k] + volume[i]
            if not np.isnan(vwap[i]) and volume[i] > 0:
                pv += vwap[i] * volume[i]
                pv_vol += volume[i]
        btr[k] += trades[i]
        visible[i] = k if (step_ns > 0 and time[i] + step_ns >= bt[k] + bucket_ns) else k - 1
    if k >= 0 and pv_vol > 0:
        bvw[k] = pv / pv_vol
    return bt, bo, bh, bl, bc, bv, btr, bvw, complete, visible


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
        0,
        NS_PER_MINUTE,
        int(horizon_ns),
    )
    names = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "complete")
    return dict(zip(names, out[:9], strict=True))
