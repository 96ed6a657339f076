"""Statistical kernels against pandas / NumPy / SciPy formulations and hand-worked examples."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from botq.indicators import kernels as K

RTOL = 1e-9


def ohlcv(n: int, level: float = 60_000.0, vol: float = 1e-3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    c = level * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    o = np.r_[c[0], c[:-1]] * np.exp(rng.normal(0.0, vol / 5, n))  # small "overnight" gaps
    h = np.maximum(o, c) * (1.0 + np.abs(rng.normal(0.0, vol / 2, n)))
    lo = np.minimum(o, c) * (1.0 - np.abs(rng.normal(0.0, vol / 2, n)))
    v = rng.uniform(0.0, 10.0, n)
    return {"open": o, "high": h, "low": lo, "close": c, "volume": v}


@pytest.fixture(scope="module")
def d() -> dict:
    out = ohlcv(3000, seed=11)
    for k in out:
        out[k][1500:1503] = np.nan  # a NaN gap: windows spanning it must be NaN, as in pandas
    return out


def same(mine: np.ndarray, ref: np.ndarray | pd.Series, rtol: float = RTOL, atol=0.0) -> None:
    ref = np.asarray(ref, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(mine[ok], ref[ok], rtol=rtol, atol=atol)


def exact_rolling(x: np.ndarray, p: int, fn) -> np.ndarray:
    """fn applied to each full window (two-pass NumPy); NaN-containing windows give NaN."""
    out = np.full(len(x), np.nan)
    w = np.lib.stride_tricks.sliding_window_view(x, p)
    with np.errstate(all="ignore"):
        out[p - 1 :] = fn(w)
    return out


def pop_std(w: np.ndarray) -> np.ndarray:
    return np.sqrt(((w - w.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))


def logret(c: np.ndarray) -> pd.Series:
    return np.log(pd.Series(c)).diff()


# ----------------------------------------------------------------------------- z-score & std


def test_zscore_matches_numpy_formula(d: dict) -> None:
    c = d["close"]
    mean = exact_rolling(c, 20, lambda w: w.mean(axis=1))
    ref = (c - mean) / exact_rolling(c, 20, pop_std)
    same(K.zscore_nb(c, 20), ref, rtol=1e-9, atol=1e-12)
    s = pd.Series(c)
    pd_ref = (s - s.rolling(20).mean()) / s.rolling(20).std(ddof=0)
    same(K.zscore_nb(c, 20), pd_ref, rtol=1e-6, atol=1e-8)  # pandas' own error at 60,000


def test_zscore_flat_window_is_nan() -> None:
    x = np.r_[np.linspace(1.0, 2.0, 30), np.full(30, 2.0)]
    z = K.zscore_nb(x, 10)
    assert np.isnan(z[45:]).all() and not np.isnan(z[20:30]).any()


def test_rolling_var_sample_matches_pandas(d: dict) -> None:
    r = logret(d["close"])
    same(K.rolling_var_nb(r.to_numpy(), 30, 1), r.rolling(30).var(ddof=1), rtol=1e-9)


def test_rolling_std_beats_naive_sums_at_crypto_prices() -> None:
    """Why the engine exists: x and x**2 running sums lose ~1e-8 at 60,000 with small moves."""
    x = ohlcv(100_000, vol=2e-5, seed=12)["close"]
    p = 20
    exact = exact_rolling(x, p, pop_std)
    s1 = np.cumsum(np.r_[0.0, x])
    s2 = np.cumsum(np.r_[0.0, x * x])
    naive_var = (s2[p:] - s2[:-p]) / p - ((s1[p:] - s1[:-p]) / p) ** 2
    with np.errstate(invalid="ignore"):
        naive = np.sqrt(naive_var)
    naive_err = np.nanmax(np.abs(naive - exact[p - 1 :]) / exact[p - 1 :])
    ours_err = np.max(np.abs(K.rolling_std_nb(x, p)[p - 1 :] - exact[p - 1 :]) / exact[p - 1 :])
    assert naive_err > 1e-6
    assert ours_err < 1e-11


def test_rolling_std_regime_change_and_spike() -> None:
    """Huge values leaving the window must not leave residue behind (error-bounded re-sum)."""
    rng = np.random.default_rng(13)
    x = np.r_[rng.normal(1e8, 1e7, 300), rng.normal(1.0, 1e-6, 300)]
    x[100] = 1e12
    for p in (5, 20, 60):
        same(K.rolling_std_nb(x, p), exact_rolling(x, p, pop_std), rtol=1e-9)


# ----------------------------------------------------------------------------- ranks


def test_percentile_rank_matches_pandas_with_ties(d: dict) -> None:
    c = np.round(d["close"], -2)  # many ties
    ref = pd.Series(c).rolling(50).rank(pct=True) * 100.0
    same(K.percentile_rank_nb(c, 50), ref, rtol=1e-12)


def test_percentile_rank_hand_example() -> None:
    out = K.percentile_rank_nb(np.array([1.0, 2.0, 2.0, 3.0, 1.0]), 3)
    np.testing.assert_allclose(out[2:], [250 / 3, 100.0, 100 / 3])
    assert np.isnan(out[:2]).all()


def test_vol_regime_matches_pandas_formulation(d: dict) -> None:
    c = d["close"]
    vol = pd.Series(exact_rolling(logret(c).to_numpy(), 20, pop_std))
    rank = vol.rolling(100).rank(pct=True)
    ref = np.where(rank <= 1 / 3, 1.0, np.where(rank > 2 / 3, 3.0, 2.0))
    ref[rank.isna().to_numpy()] = np.nan
    out = K.vol_regime_nb(c, 100, 20)
    same(out, ref)
    counts = np.unique(out[~np.isnan(out)], return_counts=True)
    assert counts[0].tolist() == [1.0, 2.0, 3.0] and counts[1].min() > 300
    assert np.isnan(out[: 20 + 99]).all() and not np.isnan(out[20 + 99])


# ----------------------------------------------------------------------------- range vols


def test_parkinson_matches_formula(d: dict) -> None:
    hl = pd.Series(np.log(d["high"] / d["low"]) ** 2)
    ref = np.sqrt(hl.rolling(20).mean() / (4.0 * math.log(2.0)))
    same(K.parkinson_nb(d["high"], d["low"], 20), ref)


@pytest.mark.parametrize("p", [2, 20, 2100])
def test_parkinson_across_blocks_with_gaps_and_wide_ranges(p: int) -> None:
    """Blocks of 2048 bars recompute the p - 1 bars before them: gaps just before, at and
    after a block start, a gap inside a block, bars too wide for the near-1 log, and a
    length that is not a multiple of the block."""
    x = ohlcv(3 * 2048 + 77, seed=3)
    h, lo = x["high"].copy(), x["low"].copy()
    for i in (1000, 2047, 2048, 2050, 4096 + p // 2):
        h[i] = np.nan
    lo[5000] = -1.0  # not positive: no log, like a gap
    h[[100, 3000, 6100]] *= 1.5  # ranges beyond _U_NEAR1
    with np.errstate(invalid="ignore"):
        hl = pd.Series(np.log(h / lo) ** 2)
    ref = np.sqrt(hl.rolling(p).mean() / (4.0 * math.log(2.0)))
    same(K.parkinson_nb(h, lo, p), ref)


def test_garman_klass_matches_formula(d: dict) -> None:
    o, h, lo, c = d["open"], d["high"], d["low"], d["close"]
    v = pd.Series(0.5 * np.log(h / lo) ** 2 - (2 * math.log(2.0) - 1) * np.log(c / o) ** 2)
    same(K.garman_klass_nb(o, h, lo, c, 20), np.sqrt(v.rolling(20).mean()))


def test_yang_zhang_matches_pandas_formulation(d: dict) -> None:
    o, h, lo, c = (pd.Series(d[k]) for k in ("open", "high", "low", "close"))
    p = 20
    ov = np.log(o / c.shift(1))
    cv = np.log(c / o)
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    k = 0.34 / (1.34 + (p + 1) / (p - 1))
    var = ov.rolling(p).var() + k * cv.rolling(p).var() + (1 - k) * rs.rolling(p).mean()
    out = K.yang_zhang_nb(d["open"], d["high"], d["low"], d["close"], p)
    same(out, np.sqrt(var), rtol=1e-8)
    assert np.isnan(out[:p]).all() and not np.isnan(out[p])


def test_range_vols_on_flat_prices_are_zero() -> None:
    x = np.full(50, 100.0)
    assert np.all(K.parkinson_nb(x, x, 10)[9:] == 0.0)
    assert np.all(K.garman_klass_nb(x, x, x, x, 10)[9:] == 0.0)
    assert np.all(K.yang_zhang_nb(x, x, x, x, 10)[10:] == 0.0)


# ----------------------------------------------------------------------------- Hurst


def hurst_reference(r: np.ndarray, p: int) -> float:
    """Classic R/S, written independently with NumPy reshapes."""
    xs, ys = [], []
    m = p
    while m >= 8:
        q = p // m
        chunks = r[len(r) - q * m :].reshape(q, m)
        dev = chunks - chunks.mean(axis=1, keepdims=True)
        z = np.cumsum(dev, axis=1)
        rng = np.maximum(z.max(axis=1), 0) - np.minimum(z.min(axis=1), 0)
        sd = chunks.std(axis=1)
        ok = sd > 0
        xs.append(math.log(m))
        ys.append(math.log(np.mean(rng[ok] / sd[ok])))
        m //= 2
    return float(np.polyfit(xs, ys, 1)[0])


def test_hurst_matches_reference_on_windows() -> None:
    r = np.random.default_rng(14).normal(0, 1e-3, 1500)
    for p in (32, 100, 200):
        out = K.hurst_nb(r, p)
        assert np.isnan(out[: p - 1]).all()
        for t in (p - 1, p + 17, 777, 1499):
            assert out[t] == pytest.approx(hurst_reference(r[t - p + 1 : t + 1], p), rel=1e-10)


def test_hurst_shared_chunks_match_reference_at_every_bar() -> None:
    """Chunk R/S values are computed once and reused by later windows (a ring per scale):
    every window, across a NaN gap, a stretch of zero returns (flat chunks skipped, windows of
    only flat chunks NaN) and a spike, must equal the reference."""
    r = np.random.default_rng(19).normal(0, 1e-3, 1400)
    r[400:405] = np.nan
    r[700:900] = 0.0
    r[1000] = 0.3
    for p in (32, 100):
        out = K.hurst_nb(r, p)
        for t in range(r.shape[0]):
            w = r[max(0, t - p + 1) : t + 1]
            if w.shape[0] < p or np.isnan(w).any():
                assert np.isnan(out[t])
                continue
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    ref = hurst_reference(w, p)
                except (ValueError, np.linalg.LinAlgError):  # a scale with only flat chunks
                    ref = np.nan
            if np.isnan(ref):
                assert np.isnan(out[t])
            else:
                assert out[t] == pytest.approx(ref, rel=1e-10)


def _ar1(phi: float, n: int, seed: int) -> np.ndarray:
    e = np.random.default_rng(seed).normal(0.0, 1.0, n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_hurst_orders_persistence() -> None:
    iid = np.nanmean(K.hurst_nb(np.random.default_rng(15).normal(0, 1, 6000), 200))
    persistent = np.nanmean(K.hurst_nb(_ar1(0.5, 6000, 16), 200))
    anti = np.nanmean(K.hurst_nb(_ar1(-0.5, 6000, 17), 200))
    assert 0.5 < iid < 0.62  # documented small-sample R/S bias above 0.5
    assert anti < iid < persistent


# ----------------------------------------------------------------------------- half-life


def test_half_life_matches_polyfit() -> None:
    x = 100.0 + _ar1(0.95, 800, 18)
    out = K.half_life_nb(x, 200)
    assert np.isnan(out[:199]).all()
    for t in (199, 350, 799):
        w = x[t - 199 : t + 1]
        b = np.polyfit(w[:-1], np.diff(w), 1)[0]
        assert out[t] == pytest.approx(-math.log(2) / b, rel=1e-9)


def test_half_life_recovers_ar1_and_flags_no_reversion() -> None:
    x = 60_000.0 + 50.0 * _ar1(0.9, 20_000, 19)
    est = np.nanmedian(K.half_life_nb(x, 1000))
    assert est == pytest.approx(-math.log(2) / (0.9 - 1.0), rel=0.15)  # Chan: -ln2/(phi-1)
    trend = np.arange(300.0) ** 1.5  # accelerating: slope of dx on x is positive
    assert np.all(np.isinf(K.half_life_nb(trend, 50)[49:]))
    assert np.isnan(K.half_life_nb(np.full(60, 5.0), 20)).all()  # flat: undefined


# ----------------------------------------------------------------------------- VWAP


def test_vwap_matches_pandas_groupby_and_resets_at_utc_midnight() -> None:
    n = 3 * 1440
    dd = ohlcv(n, seed=20)
    t = pd.date_range("2024-03-01 00:00", periods=n, freq="min", tz="UTC")
    dd["close"][100] = np.nan  # skipped bar: NaN out, session continues
    day = t.as_unit("ns").asi8 // (86_400 * 10**9)
    assert day[1439] != day[1440] and day[0] == day[1439]
    out = K.vwap_nb(dd["high"], dd["low"], dd["close"], dd["volume"], day)
    df = pd.DataFrame(dd, index=t)
    tp = (df.high + df.low + df.close) / 3
    ok = tp.notna()
    pv = (tp * df.volume).where(ok, 0.0).groupby(day).cumsum()
    vv = df.volume.where(ok, 0.0).groupby(day).cumsum()
    ref = (pv / vv).where(ok)
    same(out, ref, rtol=1e-12)
    first = out[1440]
    assert first == pytest.approx((dd["high"][1440] + dd["low"][1440] + dd["close"][1440]) / 3)


def test_vwap_hand_example() -> None:
    h = np.array([11.0, 12.0, 13.0])
    lo = np.array([9.0, 10.0, 11.0])
    c = np.array([10.0, 11.0, 12.0])
    v = np.array([1.0, 0.0, 3.0])
    out = K.vwap_nb(h, lo, c, v, np.zeros(3, dtype=np.int64))
    np.testing.assert_allclose(out, [10.0, 10.0, (10.0 + 36.0) / 4])
    zero = K.vwap_nb(h, lo, c, np.zeros(3), np.zeros(3, dtype=np.int64))
    assert np.isnan(zero).all()  # no volume traded yet: undefined


def test_vwap_dev_matches_formula() -> None:
    dd = ohlcv(2000, seed=21)
    sess = (np.arange(2000) // 1440).astype(np.int64)
    vw = K.vwap_nb(dd["high"], dd["low"], dd["close"], dd["volume"], sess)
    ref = (dd["close"] - vw) / exact_rolling(dd["close"], 20, pop_std)
    out = K.vwap_dev_nb(dd["high"], dd["low"], dd["close"], dd["volume"], sess, 20)
    same(out, ref, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- moments


def test_skew_kurt_match_pandas_and_scipy(d: dict) -> None:
    r = logret(d["close"])
    sk = K.skew_nb(r.to_numpy(), 60)
    ku = K.kurt_nb(r.to_numpy(), 60)
    same(sk, r.rolling(60).skew(), rtol=1e-7, atol=1e-9)  # pandas uses running raw moments
    same(ku, r.rolling(60).kurt(), rtol=1e-7, atol=1e-9)
    x = r.to_numpy()
    for t in (60, 400, 1499, 1563, 2999):
        w = x[t - 59 : t + 1]
        assert sk[t] == pytest.approx(scipy.stats.skew(w, bias=False), rel=1e-10)
        assert ku[t] == pytest.approx(scipy.stats.kurtosis(w, bias=False), rel=1e-10)
    assert np.isnan(sk[:60]).all() and np.isnan(sk[1500:1563]).all()


def test_flat_windows_are_exactly_flat() -> None:
    """0.1 is not representable: a naive two-pass mean of 0.1s is not 0.1 and leaves a fake
    spread (skew 1.03, autocorr 1.0). Flat windows must read as flat: NaN, or a std of 0."""
    rng = np.random.default_rng(24)
    for x in (np.full(120, 0.1), np.r_[rng.normal(0.1, 0.01, 80), np.full(120, 0.1)]):
        tail = slice(-30, None)
        assert np.isnan(K.skew_nb(x, 20)[tail]).all()
        assert np.isnan(K.kurt_nb(x, 20)[tail]).all()
        assert np.isnan(K.autocorr_nb(x, 1, 20)[tail]).all()
        assert np.isnan(K.zscore_nb(x, 20)[tail]).all()
        assert np.all(K.rolling_std_nb(x, 20)[tail] == 0.0)


def test_sliding_moments_stay_exact_on_long_series_with_spikes() -> None:
    """O(1) updates with periodic exact re-sums: compare every window with SciPy."""
    rng = np.random.default_rng(25)
    r = rng.standard_t(3, 6000) * 1e-3
    r[1000] = 0.5  # a spike entering and leaving the window
    r[3000:3200] = 2e-3  # a flat stretch
    w = np.lib.stride_tricks.sliding_window_view(r, 60)
    flat = w.max(axis=1) == w.min(axis=1)
    with warnings.catch_warnings():  # SciPy warns on the flat windows, which we mask anyway
        warnings.simplefilter("ignore", RuntimeWarning)
        sk = scipy.stats.skew(w, axis=1, bias=False)
        ku = scipy.stats.kurtosis(w, axis=1, bias=False)
    sk[flat] = np.nan
    ku[flat] = np.nan
    same(K.skew_nb(r, 60)[59:], sk, rtol=1e-9, atol=1e-10)
    same(K.kurt_nb(r, 60)[59:], ku, rtol=1e-9, atol=1e-10)
    s = pd.Series(r)
    ref = s.rolling(60).corr(s.shift(2)).to_numpy()
    out = K.autocorr_nb(r, 2, 60)
    ok = ~np.isnan(out)
    np.testing.assert_allclose(out[ok], ref[ok], rtol=1e-8, atol=1e-9)
    assert np.isnan(out[3000 + 60 + 2 : 3200]).all()  # both sides flat


def test_skew_hand_example() -> None:
    # [0, 0, 0, 3]: mean 0.75, m2 = 27/16, m3 = 81/32, g1 = m3 / m2**1.5 = 2/sqrt(3)
    x = np.array([0.0, 0.0, 0.0, 3.0])
    g1 = 2 / math.sqrt(3)
    assert K.skew_nb(x, 4)[3] == pytest.approx(g1 * math.sqrt(12) / 2, rel=1e-12)


def test_autocorr_matches_pandas(d: dict) -> None:
    r = logret(d["close"])
    for lag, w in ((1, 100), (5, 30)):
        ref = r.rolling(w).corr(r.shift(lag))
        out = K.autocorr_nb(r.to_numpy(), lag, w)
        same(out, ref, rtol=1e-8, atol=1e-10)
        assert np.isnan(out[: w + lag]).all() and not np.isnan(out[w + lag])


def test_autocorr_sign_on_ar1() -> None:
    assert np.nanmean(K.autocorr_nb(_ar1(0.6, 3000, 22), 1, 200)) > 0.5
    assert np.nanmean(K.autocorr_nb(_ar1(-0.6, 3000, 23), 1, 200)) < -0.5


def test_log_returns() -> None:
    c = np.array([1.0, 2.0, np.nan, 4.0, 8.0])
    out = K.log_returns_nb(c)
    np.testing.assert_allclose(out, [np.nan, math.log(2), np.nan, np.nan, math.log(2)])


def test_ttm_trend_hand_example() -> None:
    h = np.array([2.0, 2.0, 2.0, 5.0, 1.0])
    lo = np.array([0.0, 0.0, 0.0, 3.0, 0.0])
    c = np.array([1.0, 1.0, 1.0, 4.0, 2.0])
    # period 2: avg of previous two (h+l)/2 -> t=2: 1 vs c=1 -> 0; t=3: 1 < 4 -> +1;
    # t=4: (1 + 4) / 2 = 2.5 > 2 -> -1
    np.testing.assert_array_equal(K.ttm_trend_nb(h, lo, c, 2), [np.nan, np.nan, 0, 1, -1])


def test_an_infinite_value_poisons_only_the_windows_holding_it() -> None:
    from numpy.lib.stride_tricks import sliding_window_view

    rng = np.random.default_rng(3)
    x = 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, 300)))
    x[100] = np.inf
    windows = sliding_window_view(x, 20)
    with np.errstate(invalid="ignore"):
        mean = windows.mean(axis=1)  # inf where the window holds the inf
        std = windows.std(axis=1)  # nan there (inf - inf)
    sma = K.sma_nb(x, 20)
    np.testing.assert_allclose(sma[19:], mean, rtol=1e-12)
    np.testing.assert_allclose(K.rolling_std_nb(x, 20)[19:], std, rtol=1e-9, equal_nan=True)
    assert np.isinf(sma[100:120]).all() and np.isfinite(sma[120:]).all()  # recovers after
