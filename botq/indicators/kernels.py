"""Every indicator kernel botq has, as numba ``@njit(cache=True, nogil=True)`` functions.

This module is the import surface: the classic (TA-Lib-defined) kernels live in
``_classic_nb``, the statistical ones in ``_stats_nb``; the two time kernels used for
higher-timeframe evaluation are defined here, and so are thin Python wrappers for the
kernels that would otherwise allocate a large array with numba (skew, kurtosis,
autocorrelation and Parkinson without an ``out``), which allocate it with NumPy
(see ``_numpy_out``). All kernels take and return float64 arrays
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
    bbands_nb,
    ema_nb,
    ema_offset_nb,
    ema_pair_nb,
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
from botq.indicators._stats_nb import autocorr_nb as _autocorr_nb
from botq.indicators._stats_nb import (
    garman_klass_nb,
    half_life_nb,
    hurst_nb,
    log_returns_nb,
    percentile_rank_nb,
    rolling_mean_nb,
    tercile_regime_nb,
    vol_regime_nb,
    vwap_dev_nb,
    vwap_nb,
    yang_zhang_nb,
    zscore_from_nb,
    zscore_nb,
)
from botq.indicators._stats_nb import kurt_nb as _kurt_nb
from botq.indicators._stats_nb import parkinson_nb as _parkinson_nb
from botq.indicators._stats_nb import skew_nb as _skew_nb


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


def _numpy_out(out: np.ndarray | None, n: int) -> np.ndarray:
    """out, or a new NumPy array: NumPy puts large arrays on huge pages, numba's allocator
    does not, and first touching a fresh 8 MB array page by page cost ~4 ms (measured, 10^6
    bars) - as much as the autocorrelation itself."""
    return np.empty(n, dtype=np.float64) if out is None else out


def skew_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling sample skewness (see ``_stats_nb.skew_nb``) into a NumPy-allocated array."""
    return _skew_nb(x, period, _numpy_out(out, x.shape[0]))


def kurt_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling sample excess kurtosis (see ``_stats_nb.kurt_nb``) into a NumPy array."""
    return _kurt_nb(x, period, _numpy_out(out, x.shape[0]))


def parkinson_nb(
    high: np.ndarray, low: np.ndarray, period: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Parkinson range volatility (see ``_stats_nb.parkinson_nb``) into a NumPy array."""
    return _parkinson_nb(high, low, period, _numpy_out(out, high.shape[0]))


def autocorr_nb(x: np.ndarray, lag: int, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling autocorrelation (see ``_stats_nb.autocorr_nb``) into a NumPy array."""
    return _autocorr_nb(x, lag, window, _numpy_out(out, x.shape[0]))


__all__ = [
    "atr_nb",
    "autocorr_nb",
    "bbands_nb",
    "ema_nb",
    "ema_offset_nb",
    "ema_pair_nb",
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
