"""Every indicator kernel botq has, as numba ``@njit(cache=True, nogil=True)`` functions.

This module is the import surface: the classic (TA-Lib-defined) kernels live in
``_classic_nb``, the statistical ones in ``_stats_nb``; the two time kernels used for
higher-timeframe evaluation are defined here. All kernels take and return float64 arrays
(times are int64 nanoseconds since the Unix epoch, UTC), return NaN during warm-up, and
compute each NaN-free run of bars as its own series. Because they release the GIL, independent
kernels run in parallel from a thread pool (see ``registry.compute``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from botq.indicators._classic_nb import (
    _alloc,
    atr_nb,
    bands_nb,
    bbands_nb,
    ema_nb,
    ema_offset_nb,
    macd_nb,
    macd_slow_nb,
    obv_nb,
    roc_nb,
    rolling_std_nb,
    rolling_var_nb,
    rsi_nb,
    sma_nb,
    stoch_rsi_nb,
    stochf_nb,
    trange_nb,
    ttm_trend_nb,
)
from botq.indicators._stats_nb import (
    autocorr_nb,
    garman_klass_nb,
    half_life_nb,
    hurst_nb,
    kurt_nb,
    log_returns_nb,
    parkinson_nb,
    percentile_rank_nb,
    rolling_mean_nb,
    skew_nb,
    tercile_regime_nb,
    vol_regime_nb,
    vwap_dev_nb,
    vwap_nb,
    yang_zhang_nb,
    zscore_from_nb,
    zscore_nb,
)


@njit(cache=True, nogil=True)
def resample_closed_nb(
    t: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    bucket_ns: int,
    offset_ns: int,
    step_ns: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate candles into higher-timeframe buckets and say which bucket each row may see.

    t: candle open times (int64 ns, strictly increasing). A bucket is
    [offset + k * bucket_ns, offset + (k + 1) * bucket_ns) (offset 0 = aligned to the epoch,
    so UTC hours and days); open = first, high = max, low = min, close = last, volume = sum,
    each ignoring NaN (all-NaN -> NaN). Only buckets holding at least one candle exist.

    Returns (bucket_start, open, high, low, close, volume, closed) where closed[i] is the
    index of the last bucket that is complete when row i's candle closes (at t[i] + step_ns):
    row i's own bucket if t[i] + step_ns reaches its end (row i is its last candle), else the
    previous bucket; -1 if none. So a bucket [10:00, 11:00) of 1-minute candles is visible
    from the 10:59 row on, and never earlier. step_ns <= 0 makes a bucket visible only from
    the first row of a later bucket.
    """
    n = t.shape[0]
    nb = 0
    cur = 0
    for i in range(n):
        b = (t[i] - offset_ns) // bucket_ns
        if i == 0 or b != cur:
            nb += 1
            cur = b
    bt = np.empty(nb, dtype=np.int64)
    bo = np.full(nb, np.nan)
    bh = np.full(nb, np.nan)
    bl = np.full(nb, np.nan)
    bc = np.full(nb, np.nan)
    bv = np.full(nb, np.nan)
    closed = np.empty(n, dtype=np.int64)
    k = -1
    for i in range(n):
        b = (t[i] - offset_ns) // bucket_ns
        if k < 0 or b != cur:
            k += 1
            cur = b
            bt[k] = b * bucket_ns + offset_ns
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
        closed[i] = k if (step_ns > 0 and t[i] + step_ns >= bt[k] + bucket_ns) else k - 1
    return bt, bo, bh, bl, bc, bv, closed


@njit(cache=True, nogil=True)
def take_closed_nb(
    values: np.ndarray, closed: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Map a higher-timeframe series back to rows: out[i] = values[closed[i]], NaN if < 0."""
    n = closed.shape[0]
    res = _alloc(out, n)
    for i in range(n):
        j = closed[i]
        res[i] = values[j] if j >= 0 else np.nan
    return res


__all__ = [
    "atr_nb",
    "autocorr_nb",
    "bands_nb",
    "bbands_nb",
    "ema_nb",
    "ema_offset_nb",
    "garman_klass_nb",
    "half_life_nb",
    "hurst_nb",
    "kurt_nb",
    "log_returns_nb",
    "macd_nb",
    "macd_slow_nb",
    "obv_nb",
    "parkinson_nb",
    "percentile_rank_nb",
    "resample_closed_nb",
    "roc_nb",
    "rolling_mean_nb",
    "rolling_std_nb",
    "rolling_var_nb",
    "rsi_nb",
    "skew_nb",
    "sma_nb",
    "stoch_rsi_nb",
    "stochf_nb",
    "take_closed_nb",
    "tercile_regime_nb",
    "trange_nb",
    "ttm_trend_nb",
    "vol_regime_nb",
    "vwap_dev_nb",
    "vwap_nb",
    "yang_zhang_nb",
    "zscore_from_nb",
    "zscore_nb",
]
