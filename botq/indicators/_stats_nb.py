"""Numba kernels for the statistical indicators (volatility estimators, moments, regimes).

Conventions shared with ``_classic_nb``: float64 in, float64 out, warm-up is NaN, and each
NaN-free run of bars is computed as its own series (a window never spans a NaN, so a gap
costs one warm-up). Means, variances, skewness, kurtosis and autocorrelation use O(1)
updates of sums about a centre near the window mean, re-summed exactly (two-pass) whenever a
rounding-error bound says so (skewness and kurtosis bound the sums of 3rd and 4th powers too,
and re-centre every block of 512 bars, as does autocorrelation); a window of equal values is
exactly flat.
Percentile rank, regimes and half-life are O(period) per bar, Hurst O(2 period), exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from botq.indicators._classic_nb import (
    _CHUNK,
    _TOL,
    _ZSCORE,
    _abs_total,
    _alloc,
    _centre,
    _exact_centred,
    _mean_m2,
    _nan_like,
    _run1,
    _scan1,
    _scan2,
    _warm,
    rolling_std_nb,
    rolling_var_nb,
    sma_nb,
)

_LN2 = math.log(2.0)


@njit(cache=True, nogil=True, error_model="numpy")
def log_returns_nb(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Log returns ln(x[t] / x[t-1]); NaN at the first bar of each NaN-free run (and where a
    price is not positive)."""
    n = x.shape[0]
    res = _alloc(out, n)
    if n:
        res[0] = np.nan
    for t in range(1, n):
        res[t] = math.log(x[t] / x[t - 1]) if x[t] > 0.0 and x[t - 1] > 0.0 else np.nan
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def rolling_mean_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling mean (same definition as TA-Lib SMA; name used for non-price series)."""
    return sma_nb(x, period, out)


@njit(cache=True, nogil=True, error_model="numpy")
def zscore_from_nb(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """(x - mean) / std elementwise; NaN where std is 0 (a flat window has no z-score)."""
    n = x.shape[0]
    res = _alloc(out, n)
    for i in range(n):
        sd = std[i]
        res[i] = (x[i] - mean[i]) / sd if sd > 0.0 else np.nan
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def zscore_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling z-score: (x - SMA_p) / STDDEV_p with the population std (pandas:
    (x - x.rolling(p).mean()) / x.rolling(p).std(ddof=0)); NaN when the window is flat.
    One pass: mean, std and z-score of each window come from the same sums."""
    res = _alloc(out, x.shape[0])
    none = np.empty(0, dtype=np.float64)
    z = period - period  # int64 0, not a literal: one compilation of the engine for all modes
    _mean_m2(x, period, z, z + _ZSCORE, 1.0, res, none, none)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def _count_below(x: np.ndarray, lo: int, hi: int, v: float) -> tuple[int, int]:
    """How many of x[lo:hi] are < v and == v, counted without branches (so LLVM vectorises the
    loop; a branch per value would mispredict on half of random data)."""
    less = 0
    equal = 0
    w = x[lo:hi]
    for j in range(w.shape[0]):
        less += w[j] < v
        equal += w[j] == v
    return less, equal


@njit(cache=True, nogil=True, error_model="numpy")
def percentile_rank_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Percentile rank (0-100] of x[t] among the last `period` values including itself, ties
    averaged: 100 * (less + (equal + 1) / 2) / p - pandas rolling(p).rank(pct=True) * 100."""
    out = _nan_like(x)
    i = 0
    n = x.shape[0]
    while i < n:
        s, e = _run1(x, i)
        for t in range(s + period - 1, e):
            less, equal = _count_below(x, t - period + 1, t + 1, x[t])
            out[t] = 100.0 * (less + (equal + 1) / 2.0) / period
        i = e
    return out


# _log_near1 is used where |u| = |a - b| / (a + b) <= _U_NEAR1, i.e. a / b within 1/1.222 and
# 1.222: a bar's high / low or close / open, except for extreme moves.
_U_NEAR1 = 0.1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log_near1(u: float) -> float:
    """ln(a / b) from u = (a - b) / (a + b) as 2 atanh(u) = 2u (1 + u^2/3 + ... + u^16/17),
    for |u| <= _U_NEAR1 (the next term is below 1e-19 of the sum). A polynomial, so loops
    using it vectorise, unlike math.log (numba has no vector log here; NumPy's float64 log is
    scalar on AVX2 too); and more accurate for a ratio near 1 than log(a / b), whose rounded
    ratio costs ~1e-13 relative."""
    z = u * u
    q = 1.0 / 17.0
    q = q * z + 1.0 / 15.0
    q = q * z + 1.0 / 13.0
    q = q * z + 1.0 / 11.0
    q = q * z + 1.0 / 9.0
    q = q * z + 1.0 / 7.0
    q = q * z + 1.0 / 5.0
    q = q * z + 1.0 / 3.0
    q = q * z + 1.0
    return 2.0 * u * q


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _sq_log_range(high: np.ndarray, low: np.ndarray, v: np.ndarray) -> None:
    """v[t] = ln(high[t] / low[t])**2, NaN where a price is not positive: _log_near1 in a
    vectorised loop, and math.log in a second pass for the rare bars whose range is too wide
    for it."""
    n = v.shape[0]
    far = 0
    for t in range(n):
        h = high[t]
        lo = low[t]
        u = (h - lo) / (h + lo)
        r = _log_near1(u)
        good = (h > 0.0) & (lo > 0.0)
        near = abs(u) <= _U_NEAR1
        v[t] = r * r if good & near else np.nan
        far += good & (not near)
    if far:
        for t in range(n):
            h = high[t]
            lo = low[t]
            if h > 0.0 and lo > 0.0 and not abs((h - lo) / (h + lo)) <= _U_NEAR1:
                r = math.log(h / lo)
                v[t] = r * r


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _sqrt_scaled(m: np.ndarray, scale: float, out: np.ndarray) -> np.ndarray:
    """out = sqrt(scale * m), NaN where that is NaN or negative (out may be m), in a loop of
    its own, which LLVM vectorises."""
    for t in range(out.shape[0]):
        x = m[t] * scale
        out[t] = math.sqrt(x) if x >= 0.0 else np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def parkinson_nb(
    high: np.ndarray, low: np.ndarray, period: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Parkinson (1980) range volatility per bar: sqrt(mean(ln(h/l)^2) / (4 ln 2)) over the
    last `period` bars (not annualised).

    In blocks of 4 _CHUNK bars: the squared logs of the block and the period - 1 bars before it
    (_sq_log_range), their rolling mean (rolling_mean_nb: NaN-free runs, exact re-sums) and the
    square roots (_sqrt_scaled), all in two small buffers, so no full-length intermediate array
    is written.
    """
    n = high.shape[0]
    res = _alloc(out, n)
    back = max(period - 1, 0)
    chunk = max(4 * _CHUNK, period)
    vb = np.empty(chunk + back, dtype=np.float64)
    mb = np.empty(chunk + back, dtype=np.float64)
    scale = 1.0 / (4.0 * _LN2)
    for t0 in range(0, n, chunk):
        t1 = min(t0 + chunk, n)
        lo = max(t0 - back, 0)
        k = t1 - lo
        v = vb[:k]
        m = mb[:k]
        _sq_log_range(high[lo:t1], low[lo:t1], v)
        rolling_mean_nb(v, period, m)
        _sqrt_scaled(m[t0 - lo :], scale, res[t0:t1])
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def _sqrt_mean(v: np.ndarray, period: int, scale: float, out: np.ndarray) -> np.ndarray:
    """out = sqrt(scale * rolling mean of v), NaN where that mean is NaN or negative."""
    rolling_mean_nb(v, period, out)
    return _sqrt_scaled(out, scale, out)


@njit(cache=True, nogil=True, error_model="numpy")
def garman_klass_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    period: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Garman-Klass (1980) volatility per bar: sqrt(mean(0.5 ln(h/l)^2 - (2 ln 2 - 1)
    ln(c/o)^2)) over the last `period` bars (not annualised); NaN if the mean is negative
    (only possible with inconsistent OHLC)."""
    n = close.shape[0]
    v = np.empty(n, dtype=np.float64)
    c2 = 2.0 * _LN2 - 1.0
    for t in range(n):
        if open_[t] > 0.0 and high[t] > 0.0 and low[t] > 0.0 and close[t] > 0.0:
            hl = math.log(high[t] / low[t])
            co = math.log(close[t] / open_[t])
            v[t] = 0.5 * hl * hl - c2 * co * co
        else:
            v[t] = np.nan
    return _sqrt_mean(v, period, 1.0, _alloc(out, n))


@njit(cache=True, nogil=True, error_model="numpy")
def yang_zhang_nb(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int
) -> np.ndarray:
    """Yang-Zhang (2000) volatility per bar over `period` bars (not annualised):
    sqrt(var_o + k var_c + (1 - k) mean_rs), var_o = sample variance of ln(o/prev c),
    var_c = sample variance of ln(c/o), rs = ln(h/c) ln(h/o) + ln(l/c) ln(l/o),
    k = 0.34 / (1.34 + (p + 1) / (p - 1)); needs p >= 2, lookback p."""
    n = close.shape[0]
    ov = _nan_like(close)
    cv = _nan_like(close)
    rs = _nan_like(close)
    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        if o > 0.0 and h > 0.0 and lo > 0.0 and c > 0.0:
            cv[t] = math.log(c / o)
            rs[t] = math.log(h / c) * math.log(h / o) + math.log(lo / c) * math.log(lo / o)
            if t > 0 and close[t - 1] > 0.0:
                ov[t] = math.log(o / close[t - 1])
    var_o = rolling_var_nb(ov, period, 1)
    var_c = rolling_var_nb(cv, period, 1)
    m_rs = rolling_mean_nb(rs, period)
    k = 0.34 / (1.34 + (period + 1.0) / (period - 1.0))
    out = _nan_like(close)
    for t in range(n):
        v = var_o[t] + k * var_c[t] + (1.0 - k) * m_rs[t]
        if v >= 0.0:
            out[t] = math.sqrt(v)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _rescaled_range(r: np.ndarray, cs: np.ndarray, lo: int, hi: int) -> float:
    """R/S of r[lo:hi]: range of cumulative deviations from the mean over the population std;
    NaN when the chunk is flat (std exactly 0).

    cs is the running sum of the run (cs[k + 1] - cs[lo] = r[lo] + ... + r[k]), so the mean
    and every cumulative deviation come without a dependency chain and one pass suffices;
    sums and extremes use two accumulators each for the same reason.
    """
    m = hi - lo
    base = cs[lo]
    mu = (cs[hi] - base) / m
    cmax = 0.0
    cmin = 0.0
    s0 = 0.0
    s1 = 0.0
    cmax1 = 0.0
    cmin1 = 0.0
    rv = r[lo:hi]
    cv = cs[lo + 1 : hi + 1]
    f = 0.0  # (k + 1 - lo) as a float, counted rather than converted
    k = 0
    while k + 2 <= m:
        d0 = rv[k] - mu
        d1 = rv[k + 1] - mu
        s0 += d0 * d0
        s1 += d1 * d1
        y0 = (cv[k] - base) - (f + 1.0) * mu
        y1 = (cv[k + 1] - base) - (f + 2.0) * mu
        f += 2.0
        cmax = max(cmax, y0)
        cmin = min(cmin, y0)
        cmax1 = max(cmax1, y1)
        cmin1 = min(cmin1, y1)
        k += 2
    if k < m:
        d0 = rv[k] - mu
        s0 += d0 * d0
        y0 = (cv[k] - base) - (f + 1.0) * mu
        cmax = max(cmax, y0)
        cmin = min(cmin, y0)
    cmax = max(cmax, cmax1)
    cmin = min(cmin, cmin1)
    ss = s0 + s1
    if ss == 0.0:
        return np.nan
    return (cmax - cmin) / math.sqrt(ss / m)


@njit(cache=True, nogil=True, error_model="numpy")
def _hurst_run(
    r: np.ndarray, s: int, e: int, period: int, nscales: int, cs: np.ndarray, out: np.ndarray
) -> None:
    """hurst_nb along the NaN-free run [s, e).

    The chunk of m values ending at bar h is the same for every window that uses it, so its
    R/S is computed once, when h is reached, and kept in a ring (rs[a, h % period]) until the
    last window that needs it (period // m * m bars later) has passed.
    """
    cs[0] = 0.0
    for k in range(s, e):
        cs[k - s + 1] = cs[k - s] + r[k]
    rs = np.empty((nscales, period), dtype=np.float64)
    lx = np.empty(nscales, dtype=np.float64)
    ly = np.empty(nscales, dtype=np.float64)
    m = period
    for a in range(nscales):
        lx[a] = math.log(m)
        m //= 2
    mx = 0.0
    for a in range(nscales):
        mx += lx[a]
    mx /= nscales
    sxx = 0.0
    for a in range(nscales):
        sxx += (lx[a] - mx) * (lx[a] - mx)
    rv = r[s:e]
    for t in range(e - s):
        m = period
        for a in range(nscales):
            if t + 1 >= m:
                rs[a, (t + 1) % period] = _rescaled_range(rv, cs, t + 1 - m, t + 1)
            m //= 2
        if t < period - 1:
            continue
        m = period
        ok = True
        for a in range(nscales):
            tot = 0.0
            cnt = 0
            for c in range(period // m):
                v = rs[a, (t + 1 - c * m) % period]
                if not np.isnan(v):
                    tot += v
                    cnt += 1
            if cnt == 0 or tot <= 0.0:
                ok = False
                break
            ly[a] = math.log(tot / cnt)
            m //= 2
        if not ok:
            continue
        my = 0.0
        for a in range(nscales):
            my += ly[a]
        my /= nscales
        sxy = 0.0
        for a in range(nscales):
            sxy += (lx[a] - mx) * (ly[a] - my)
        out[s + t] = sxy / sxx


@njit(cache=True, nogil=True, error_model="numpy")
def hurst_nb(r: np.ndarray, period: int) -> np.ndarray:
    """Hurst exponent by classic rescaled-range analysis (Hurst 1951; Mandelbrot & Wallis
    1969), uncorrected, over the last `period` values of r (the registry passes log returns).

    Scales m = period, period // 2, period // 4, ... down to 8; at each scale the window's
    last (period // m) * m values are cut into chunks of m and their R/S averaged (flat chunks
    skipped); H = OLS slope of ln(mean R/S) on ln(m). Needs period >= 16 (two scales; the
    registry asks for >= 32, three scales).
    Small-sample R/S is biased upward: i.i.d. noise reads about 0.55-0.6 at period 200.
    Each chunk's R/S is computed once and shared by every window containing it (see
    _hurst_run): O(period + period/2 + ...) ~ 2 * period per bar instead of O(period * scales).
    """
    out = _nan_like(r)
    if period < 16:
        return out
    nscales = 0
    m = period
    while m >= 8:
        nscales += 1
        m //= 2
    n = r.shape[0]
    cs = np.empty(n + 1, dtype=np.float64)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        s, e = _run1(r, i)
        if e - s >= period:
            _hurst_run(r, s, e, period, nscales, cs, out)
        i = e
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def half_life_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Mean-reversion half-life in bars from an AR(1)/Ornstein-Uhlenbeck fit on price (Chan,
    "Algorithmic Trading", 2013): OLS of dx[t] = x[t] - x[t-1] on x[t-1] over the `period`
    prices of the window (period - 1 pairs), half-life = -ln 2 / slope; +inf when slope >= 0
    (no mean reversion), NaN when the window is flat."""
    out = _nan_like(x)
    i = 0
    n = x.shape[0]
    npairs = period - 1
    while i < n:
        s, e = _run1(x, i)
        for t in range(s + period - 1, e):
            mx = 0.0
            my = 0.0
            for j in range(t - npairs + 1, t + 1):
                mx += x[j - 1]
                my += x[j] - x[j - 1]
            mx /= npairs
            my /= npairs
            sxy = 0.0
            sxx = 0.0
            for j in range(t - npairs + 1, t + 1):
                dx = x[j - 1] - mx
                sxy += dx * ((x[j] - x[j - 1]) - my)
                sxx += dx * dx
            if sxx > 0.0:
                b = sxy / sxx
                out[t] = -_LN2 / b if b < 0.0 else np.inf
        i = e
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def tercile_regime_nb(v: np.ndarray, period: int) -> np.ndarray:
    """Regime 1/2/3 from the percentile rank of v[t] among its last `period` values (ties
    averaged, as percentile_rank_nb): 1 when rank <= 1/3, 3 when rank > 2/3, else 2."""
    out = _nan_like(v)
    i = 0
    n = v.shape[0]
    while i < n:
        s, e = _run1(v, i)
        for t in range(s + period - 1, e):
            less, equal = _count_below(v, t - period + 1, t + 1, v[t])
            # rank / p = (2 less + equal + 1) / (2 p), compared in integers
            r3 = 3 * (2 * less + equal + 1)
            if r3 <= 2 * period:
                out[t] = 1.0
            elif r3 > 4 * period:
                out[t] = 3.0
            else:
                out[t] = 2.0
        i = e
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def vol_regime_nb(close: np.ndarray, period: int, vol_window: int) -> np.ndarray:
    """Volatility regime 1 (low) / 2 (normal) / 3 (high): the population std of log returns
    over `vol_window` bars, placed in terciles of its own last `period` values
    (tercile_regime_nb); lookback vol_window + period - 1."""
    return tercile_regime_nb(rolling_std_nb(log_returns_nb(close), vol_window), period)


@njit(cache=True, nogil=True, error_model="numpy")
def vwap_nb(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    session: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Session VWAP: cumulative sum of typical price (h + l + c) / 3 times volume over the
    cumulative volume, restarting whenever `session` (an int64 key per bar, e.g. the UTC
    day number) changes. NaN bars are skipped (NaN out, session continues); NaN until the
    session has traded volume."""
    n = close.shape[0]
    res = _alloc(out, n)
    pv = 0.0
    vv = 0.0
    cur = 0
    for t in range(n):
        if t == 0 or session[t] != cur:
            cur = session[t]
            pv = 0.0
            vv = 0.0
        tp = (high[t] + low[t] + close[t]) * (1.0 / 3.0)
        vol = volume[t]
        if np.isnan(tp + vol):
            res[t] = np.nan
            continue
        pv += tp * vol
        vv += vol
        res[t] = pv / vv if vv > 0.0 else np.nan
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def vwap_dev_nb(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    session: np.ndarray,
    period: int,
) -> np.ndarray:
    """VWAP deviation: (close - session VWAP) / population std of close over `period` bars
    (TA-Lib STDDEV), i.e. the distance from VWAP in rolling standard deviations."""
    return zscore_from_nb(
        close, vwap_nb(high, low, close, volume, session), rolling_std_nb(close, period)
    )


@njit(cache=True, nogil=True, error_model="numpy")
def _exact_moments(x: np.ndarray, lo: int, hi: int) -> tuple[float, float, float, float, float]:
    """Two-pass centre c (see `_centre`) and sums of d, d^2, d^3, d^4 with d = x - c over
    x[lo:hi]."""
    c, flat = _centre(x, lo, hi)
    if flat:
        return c, 0.0, 0.0, 0.0, 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    for j in range(lo, hi):
        d = x[j] - c
        d2 = d * d
        s1 += d
        s2 += d2
        s3 += d2 * d
        s4 += d2 * d2
    return c, s1, s2, s3, s4


# Moments re-sum a window when a sum's rounding bound could exceed eps / _TOL_M ~ 2e-10 of
# the scale its output needs (M2 for the variance, M2 * sd for M3, M2 * var for M4), and
# re-centre when the centre is more than sqrt(_CENTRE_VARS) = 4 standard deviations from the
# window mean (the central moments from shifted sums would cancel).
_TOL_M = 1e-6
_CENTRE_VARS = 16.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _moment_steps(
    xa: np.ndarray,
    xb: np.ndarray,
    c: float,
    d1: np.ndarray,
    d2: np.ndarray,
    d3: np.ndarray,
    d4: np.ndarray,
    m: int,
    kurt: bool,
) -> tuple[float, float, float]:
    """The first m updates of the sums of d**k, d = x - c: dk[j] = a**k - b**k with a =
    xa[j] - c entering and b = xb[j] - c leaving (k = 4 only if kurt). Returns what the sums
    of squares, cubes and fourth powers absorb (sums of a**k + b**k, in absolute value);
    reassociated, vectorised."""
    e2 = 0.0
    e3 = 0.0
    e4 = 0.0
    if not kurt:
        for j in range(m):
            a = xa[j] - c
            b = xb[j] - c
            a2 = a * a
            b2 = b * b
            a3 = a2 * a
            b3 = b2 * b
            d1[j] = a - b
            d2[j] = a2 - b2
            d3[j] = a3 - b3
            e2 += a2 + b2
            e3 += abs(a3) + abs(b3)
        return e2, e3, e4
    for j in range(m):
        a = xa[j] - c
        b = xb[j] - c
        a2 = a * a
        b2 = b * b
        a3 = a2 * a
        b3 = b2 * b
        a4 = a2 * a2
        b4 = b2 * b2
        d1[j] = a - b
        d2[j] = a2 - b2
        d3[j] = a3 - b3
        d4[j] = a4 - b4
        e2 += a2 + b2
        e3 += abs(a3) + abs(b3)
        e4 += a4 + b4
    return e2, e3, e4


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _moment_base(
    p: int, s1: float, s2: float, e2: float
) -> tuple[float, float, float, float, float, bool]:
    """What skewness and kurtosis share: (n, 1/n, mean, n m2, m2, whether the variance passes
    its rounding bound e2 and the centre lies within 4 sd of the mean)."""
    nn = float(p)
    ip = 1.0 / nn
    mu = s1 * ip
    big2 = s2 - s1 * mu  # p m2
    m2 = big2 * ip
    ok = (big2 >= _TOL_M * e2) & (mu * mu <= _CENTRE_VARS * m2)
    return nn, ip, mu, big2, m2, ok


@njit(cache=True, nogil=True, error_model="numpy")
def _skew_out(
    p: int, s1: float, s2: float, s3: float, e2: float, e3: float, out: np.ndarray, j: int
) -> bool:
    """out[j] = sample skewness from the centred sums of one window (NaN when the variance is
    not positive); False if the rounding bounds e2, e3 or the centre fail their checks (see
    _TOL_M), and the window must be re-summed."""
    nn, ip, mu, big2, m2, ok = _moment_base(p, s1, s2, e2)
    sd = np.sqrt(m2)
    ok = ok & (big2 * sd >= _TOL_M * e3)
    big3 = s3 - mu * (3.0 * s2 - 2.0 * mu * s1)  # p m3, Horner form
    v = (math.sqrt(nn * (nn - 1.0)) / (nn - 2.0)) * (big3 * ip / (m2 * sd))
    out[j] = v if m2 > 0.0 and s2 != 0.0 else np.nan
    return ok


@njit(cache=True, nogil=True, error_model="numpy")
def _kurt_out(
    p: int,
    s1: float,
    s2: float,
    s3: float,
    s4: float,
    e2: float,
    e4: float,
    out: np.ndarray,
    j: int,
) -> bool:
    """out[j] = sample excess kurtosis, as _skew_out (checks e2, e4 and the centre)."""
    nn, ip, mu, big2, m2, ok = _moment_base(p, s1, s2, e2)
    ok = ok & (big2 * m2 >= _TOL_M * e4)
    big4 = s4 - mu * (4.0 * s3 - mu * (6.0 * s2 - 3.0 * mu * s1))  # p m4, Horner form
    g2 = big4 * ip / (m2 * m2) - 3.0
    k = (nn - 1.0) / ((nn - 2.0) * (nn - 3.0))  # G2 = (n+1) k g2 + 6 k: no division per bar
    out[j] = ((nn + 1.0) * k) * g2 + 6.0 * k if m2 > 0.0 and s2 != 0.0 else np.nan
    return ok


@njit(cache=True, nogil=True, error_model="numpy")
def _moment_out(
    kurt: bool,
    p: int,
    s1: float,
    s2: float,
    s3: float,
    s4: float,
    e2: float,
    e3: float,
    e4: float,
    out: np.ndarray,
    j: int,
) -> bool:
    """_kurt_out if kurt, else _skew_out."""
    if kurt:
        return _kurt_out(p, s1, s2, s3, s4, e2, e4, out, j)
    return _skew_out(p, s1, s2, s3, e2, e3, out, j)


@njit(cache=True, nogil=True, error_model="numpy")
def _moments_block(
    kurt: bool,
    p: int,
    s1: np.ndarray,
    s2: np.ndarray,
    s3: np.ndarray,
    s4: np.ndarray,
    e2: float,
    e3: float,
    e4: float,
    out: np.ndarray,
    m: int,
) -> int:
    """_moment_out for bars 0..m-1 of a block from its running sums, all checked against the
    block's final bounds; returns how many failed. Branch-free loops, which LLVM vectorises."""
    bad = 0
    if kurt:
        for j in range(m):
            bad += not _kurt_out(p, s1[j], s2[j], s3[j], s4[j], e2, e4, out, j)
    else:
        for j in range(m):
            bad += not _skew_out(p, s1[j], s2[j], s3[j], e2, e3, out, j)
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _moments_steps(
    x: np.ndarray,
    s: int,
    p: int,
    kurt: bool,
    xa: np.ndarray,
    xb: np.ndarray,
    j0: int,
    j1: int,
    c: float,
    s1: float,
    s2: float,
    s3: float,
    s4: float,
    o: np.ndarray,
) -> int:
    """Bars j0..j1-1 of _moments_run one at a time from the exact sums at j0, checking the
    bounds at every bar and re-summing exactly where they fail. Returns the bar of the first
    NaN (j1 if none)."""
    e2 = 0.0
    e3 = 0.0
    e4 = 0.0
    for j in range(j0, j1):
        a = xa[j] - c
        b = xb[j] - c
        a2 = a * a
        b2 = b * b
        s1 += a - b
        s2 += a2 - b2
        s3 += a2 * a - b2 * b
        s4 += a2 * a2 - b2 * b2
        e2 += a2 + b2 + abs(s2)
        e3 += abs(a2 * a) + abs(b2 * b) + abs(s3)
        e4 += a2 * a2 + b2 * b2 + abs(s4)
        if not _moment_out(kurt, p, s1, s2, s3, s4, e2, e3, e4, o, j):
            if np.isnan(xa[j]):
                return j
            c, s1, s2, s3, s4 = _exact_moments(x, s + j + 1, s + j + 1 + p)
            e2 = 0.0
            e3 = 0.0
            e4 = 0.0
            _moment_out(kurt, p, s1, s2, s3, s4, e2, e3, e4, o, j)
    return j1


@njit(cache=True, nogil=True, error_model="numpy")
def _moments_run(x: np.ndarray, s: int, e: int, p: int, kurt: bool, out: np.ndarray) -> int:
    """Rolling sample skewness (kurt False) or excess kurtosis along the run from s (x[s] is
    not NaN) until the first NaN or e; returns where it stopped.

    O(1) per bar: sums of d**k (k = 1..4) with d = x - c, c the mean of an exactly re-summed
    window, in blocks of _CHUNK bars (at least p), each starting with an exact re-sum: the
    updates of the whole block in vectorised loops (_moment_steps), the four running sums two
    bars per step (_scan2), then outputs and checks in a vectorised loop (_moments_block):
    every bar's sums must pass the rounding bounds (see _TOL_M) accumulated to the end of the
    block. A block that fails (also: a NaN) is redone bar by bar (_moments_steps), re-summing
    exactly where a bar fails, e.g. when a spike leaves the window. A flat window (exactly,
    after a re-sum) gives NaN.
    """
    w = min(s + p, e)
    k = _warm(x, s, w, out)
    if k < w or w - s < p:
        out[s:k] = np.nan
        return k
    out[s : w - 1] = np.nan
    c, s1, s2, s3, s4 = _exact_moments(x, s, w)
    _moment_out(kurt, p, s1, s2, s3, s4, 0.0, 0.0, 0.0, out, w - 1)
    xa = x[w:e]
    xb = x[s : e - p]
    o = out[w:e]
    n = xa.shape[0]
    chunk = max(_CHUNK, p)
    b1 = np.empty(chunk, dtype=np.float64)
    b2 = np.empty(chunk, dtype=np.float64)
    b3 = np.empty(chunk, dtype=np.float64)
    b4 = np.empty(chunk, dtype=np.float64)
    for j0 in range(0, n, chunk):
        j1 = min(j0 + chunk, n)
        m = j1 - j0
        if j0 > 0:
            c, s1, s2, s3, s4 = _exact_moments(x, s + j0, s + j0 + p)
        e2, e3, e4 = _moment_steps(xa[j0:j1], xb[j0:j1], c, b1, b2, b3, b4, m, kurt)
        _scan2(b1, b2, s1, s2, m)
        e2 += _abs_total(b2, m)
        if kurt:
            _scan2(b3, b4, s3, s4, m)
            e4 += _abs_total(b4, m)
        else:
            _scan1(b3, s3, m)
        e3 += _abs_total(b3, m)
        if _moments_block(kurt, p, b1, b2, b3, b4, e2, e3, e4, o[j0:j1], m):
            stop = _moments_steps(x, s, p, kurt, xa, xb, j0, j1, c, s1, s2, s3, s4, o)
            if stop < j1:
                return w + stop
    return e


@njit(cache=True, nogil=True, error_model="numpy")
def _moments(x: np.ndarray, period: int, kurt: bool, out: np.ndarray | None) -> np.ndarray:
    """_moments_run over every NaN-free run of x (NaN at NaN bars)."""
    n = x.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            res[i] = np.nan
            i += 1
        else:
            i = _moments_run(x, i, n, period, kurt, res)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def skew_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling sample skewness, adjusted Fisher-Pearson G1 = sqrt(n(n-1)) / (n-2) * m3 / m2^1.5
    (pandas rolling skew, scipy.stats.skew(bias=False)); NaN on a flat window; n >= 3."""
    return _moments(x, period, x.shape[0] < 0, out)  # a non-literal False: one compilation


@njit(cache=True, nogil=True, error_model="numpy")
def kurt_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling sample excess kurtosis G2 = ((n+1) g2 + 6)(n-1) / ((n-2)(n-3)), g2 = m4/m2^2 - 3
    (pandas rolling kurt, scipy.stats.kurtosis(bias=False)); NaN on a flat window; n >= 4."""
    return _moments(x, period, x.shape[0] >= 0, out)


@njit(cache=True, nogil=True, error_model="numpy")
def _autocorr_steps(x: np.ndarray, s: int, e: int, lag: int, w: int, out: np.ndarray) -> None:
    """Rolling corr(x[j], x[j-lag]) over the last w values of j, along the NaN-free run [s, e),
    bar by bar (_autocorr_run's fallback).

    O(1) per bar with co-moment sums about a common centre c, re-summed exactly whenever either
    variance's rounding bound could exceed 1e-7 of it (|cov| <= sqrt(va vb), so that bound also
    holds the correlation to ~2e-9) and every 8 windows, which only re-centres c on a drifting
    series; NaN when either side is flat (exactly, after a re-sum).
    """
    first = s + w + lag - 1
    if first >= e:
        return
    iw = 1.0 / w
    since = 0
    err = 0.0
    c = 0.0
    sa = 0.0
    sb = 0.0
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    exact = True
    for t in range(first, e):
        if not exact:
            a = x[t] - c
            b = x[t - lag] - c
            ra = x[t - w] - c
            rb = x[t - w - lag] - c
            sa += a - ra
            sb += b - rb
            saa += a * a - ra * ra
            sbb += b * b - rb * rb
            sab += a * b - ra * rb
            err += 3.0 * (a * a + b * b + ra * ra + rb * rb) + saa + sbb
            since += 1
            va = saa - sa * sa * iw
            vb = sbb - sb * sb * iw
            exact = since >= 8 * w or va < _TOL * err or vb < _TOL * err
        if exact:
            lo = t - w + 1
            ma, _, va_ex = _exact_centred(x, lo, t + 1)
            mb, _, vb_ex = _exact_centred(x, lo - lag, t + 1 - lag)
            c = ma
            sa = 0.0
            sb = 0.0
            saa = 0.0
            sbb = 0.0
            sab = 0.0
            for j in range(lo, t + 1):
                a = x[j] - c
                b = x[j - lag] - c
                sa += a
                sb += b
                saa += a * a
                sbb += b * b
                sab += a * b
            since = 0
            err = 0.0
            exact = False
            if va_ex == 0.0 or vb_ex == 0.0:
                out[t] = np.nan
                exact = True  # stay exact while a side is flat
                continue
        va = saa - sa * sa * iw
        vb = sbb - sb * sb * iw
        cov = sab - sa * sb * iw
        out[t] = cov / math.sqrt(va * vb) if va > 0.0 and vb > 0.0 else np.nan


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _corr_steps(
    x: np.ndarray,
    t0: int,
    t1: int,
    lag: int,
    w: int,
    c: float,
    da: np.ndarray,
    daa: np.ndarray,
    dab: np.ndarray,
) -> tuple[float, float]:
    """The updates of _autocorr_run's sums for the block of bars [t0, t1): da[k], daa[k] for
    the window of x ending at t0 - lag + k (k >= 1; x enters, x lag bars back leaves), dab[i]
    for the co-moment at t0 + i (i >= 1), all about c. Returns what the sums of squares and
    the co-moment absorb (sums of magnitudes); reassociated, vectorised."""
    # views indexed from 0, so that LLVM drops numba's negative-index wraparound and vectorises
    n1 = t1 - t0 + lag - 1
    xe = x[t0 - lag + 1 : t1]
    xl = x[t0 - lag + 1 - w : t1 - w]
    d1 = da[1:]
    d2 = daa[1:]
    ea = 0.0
    for k in range(n1):
        a = xe[k] - c
        r = xl[k] - c
        d1[k] = a - r
        d2[k] = a * a - r * r
        ea += a * a + r * r
    n2 = t1 - t0 - 1
    ya = x[t0 + 1 : t1]
    yb = x[t0 + 1 - lag : t1 - lag]
    ra_ = x[t0 + 1 - w : t1 - w]
    rb_ = x[t0 + 1 - w - lag : t1 - w - lag]
    d3 = dab[1:]
    eab = 0.0
    for i in range(n2):
        ab = (ya[i] - c) * (yb[i] - c)
        rab = (ra_[i] - c) * (rb_[i] - c)
        d3[i] = ab - rab
        eab += abs(ab) + abs(rab)
    return ea, eab


@njit(cache=True, nogil=True, error_model="numpy")
def _corr_block(
    lag: int,
    w: int,
    sa: np.ndarray,
    saa: np.ndarray,
    sab: np.ndarray,
    ea: float,
    eab: float,
    out: np.ndarray,
    m: int,
) -> int:
    """Correlations of bars 0..m-1 of a block from the running sums (the lagged side's sums
    are the same window sums lag entries earlier); returns how many fail the checks (as
    _skew_out: each variance >= _TOL_M times its bound, centre within 4 sd, and the
    co-moment's bound against sqrt(va vb)). Branch-free, vectorised."""
    iw = 1.0 / w
    bad = 0
    xa1 = sa[lag : lag + m]  # views indexed from 0 (see _corr_steps)
    xa2 = saa[lag : lag + m]
    for i in range(m):
        a1 = xa1[i]
        a2 = xa2[i]
        b1 = sa[i]
        b2 = saa[i]
        va = a2 - a1 * a1 * iw
        vb = b2 - b1 * b1 * iw
        cov = sab[i] - a1 * b1 * iw
        den = np.sqrt(va * vb)
        ok = (va >= _TOL_M * ea) & (vb >= _TOL_M * ea) & (den >= _TOL_M * eab)
        ok &= (a1 * a1 <= _CENTRE_VARS * w * va) & (b1 * b1 <= _CENTRE_VARS * w * vb)
        bad += not ok
        out[i] = cov / den if (va > 0.0) & (vb > 0.0) else np.nan
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _autocorr_run(x: np.ndarray, s: int, e: int, lag: int, w: int, out: np.ndarray) -> None:
    """Rolling corr(x[j], x[j-lag]) over the last w values of j, along the NaN-free run [s, e).

    In blocks of _CHUNK bars (at least w + lag): sums about the mean c of the window at the
    block start, which is summed exactly; the window sums of x and x**2 are run from the
    window ending lag bars before the block, so those of the lagged side are the same sums
    lag entries back, and the co-moment is run from the block start (_corr_steps, then
    _scan2 / _scan1: two bars per step). Outputs and checks in a vectorised loop (_corr_block);
    a block that fails (a side flat or nearly, a spike leaving) is redone bar by bar
    (_autocorr_steps). NaN when either side is flat.
    """
    first = s + w + lag - 1
    if first >= e:
        return
    chunk = max(_CHUNK, w + lag)
    da = np.empty(chunk + lag, dtype=np.float64)
    daa = np.empty(chunk + lag, dtype=np.float64)
    dab = np.empty(chunk, dtype=np.float64)
    for t0 in range(first, e, chunk):
        t1 = min(t0 + chunk, e)
        m = t1 - t0
        c, flat = _centre(x, t0 - w + 1, t0 + 1)
        xw = x[t0 - lag - w + 1 : t0 - lag + 1]  # the first window of the block's x-side sums
        a1 = 0.0
        a2 = 0.0
        for j in range(w):
            d = xw[j] - c
            a1 += d
            a2 += d * d
        xa = x[t0 - w + 1 : t0 + 1]
        xb = x[t0 - w + 1 - lag : t0 + 1 - lag]
        ab = 0.0
        for j in range(w):
            ab += (xa[j] - c) * (xb[j] - c)
        ea, eab = _corr_steps(x, t0, t1, lag, w, c, da, daa, dab)
        da[0] = a1
        daa[0] = a2
        dab[0] = ab
        _scan2(da, daa, 0.0, 0.0, m + lag)
        _scan1(dab, 0.0, m)
        ea += _abs_total(daa, m + lag)
        eab += _abs_total(dab, m)
        if flat or _corr_block(lag, w, da, daa, dab, ea, eab, out[t0:t1], m):
            _autocorr_steps(x, t0 - w - lag + 1, t1, lag, w, out)


@njit(cache=True, nogil=True, error_model="numpy")
def autocorr_nb(x: np.ndarray, lag: int, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling autocorrelation at `lag`: Pearson correlation of x[j] with x[j - lag] over the
    last `window` values of j (pandas x.rolling(window).corr(x.shift(lag))); NaN when either
    side is flat. Lookback window + lag - 1."""
    n = x.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        s, e = _run1(x, i)
        res[i : min(s + window + lag - 1, e)] = np.nan
        _autocorr_run(x, s, e, lag, window, res)
        i = e
    return res


__all__ = [
    "autocorr_nb",
    "garman_klass_nb",
    "half_life_nb",
    "hurst_nb",
    "kurt_nb",
    "log_returns_nb",
    "parkinson_nb",
    "percentile_rank_nb",
    "rolling_mean_nb",
    "skew_nb",
    "tercile_regime_nb",
    "vol_regime_nb",
    "vwap_dev_nb",
    "vwap_nb",
    "yang_zhang_nb",
    "zscore_from_nb",
    "zscore_nb",
]
