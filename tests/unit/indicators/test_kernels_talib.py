"""Classic kernels against TA-Lib (the C library bundled by the TA-Lib wheel), to 1e-9.

Random walks at ~60,000 plus adversarial inputs: flat prices, a move followed by a flat run,
NaN gaps (each NaN-free run must equal TA-Lib run on that segment alone), tiny (1e-8) and huge
(1e8) price levels. Outputs that cross or touch zero (MACD, ROC, OBV, oscillators pinned at 0)
are compared with an absolute floor of 1e-9 x the largest |value| of the series; everything
else is purely relative.
"""

from __future__ import annotations

import numpy as np
import pytest

from botq.indicators import kernels as K

talib = pytest.importorskip("talib")

RTOL = 1e-9


def walk(n: int, level: float = 60_000.0, vol: float = 1e-3, seed: int = 0) -> dict:
    """Random-walk OHLCV with consistent high/low around open/close."""
    rng = np.random.default_rng(seed)
    c = level * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * (1.0 + np.abs(rng.normal(0.0, vol / 2, n)))
    lo = np.minimum(o, c) * (1.0 - np.abs(rng.normal(0.0, vol / 2, n)))
    v = rng.uniform(0.0, 10.0, n)
    return {"open": o, "high": h, "low": lo, "close": c, "volume": v}


def assert_match(mine: np.ndarray, ref: np.ndarray, signed: bool = False) -> None:
    """Same NaN pattern, and |mine - ref| <= RTOL * |ref| (+ RTOL * max|ref| when signed)."""
    mine = np.asarray(mine)
    ref = np.asarray(ref)
    assert mine.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    ok = ~np.isnan(ref)
    if not ok.any():
        return
    atol = RTOL * float(np.max(np.abs(ref[ok]))) if signed else 0.0
    np.testing.assert_allclose(mine[ok], ref[ok], rtol=RTOL, atol=atol)


# name -> (botq(d), talib(d), signed); multi-output kernels are split per output
def _cases() -> dict:
    return {
        "sma_2": (lambda d: K.sma_nb(d["close"], 2), lambda d: talib.SMA(d["close"], 2), 0),
        "sma_20": (lambda d: K.sma_nb(d["close"], 20), lambda d: talib.SMA(d["close"], 20), 0),
        "sma_200": (lambda d: K.sma_nb(d["close"], 200), lambda d: talib.SMA(d["close"], 200), 0),
        "ema_2": (lambda d: K.ema_nb(d["close"], 2), lambda d: talib.EMA(d["close"], 2), 0),
        "ema_20": (lambda d: K.ema_nb(d["close"], 20), lambda d: talib.EMA(d["close"], 20), 0),
        "ema_200": (lambda d: K.ema_nb(d["close"], 200), lambda d: talib.EMA(d["close"], 200), 0),
        "rsi_2": (lambda d: K.rsi_nb(d["close"], 2), lambda d: talib.RSI(d["close"], 2), 1),
        "rsi_14": (lambda d: K.rsi_nb(d["close"], 14), lambda d: talib.RSI(d["close"], 14), 1),
        "rsi_200": (lambda d: K.rsi_nb(d["close"], 200), lambda d: talib.RSI(d["close"], 200), 1),
        **{
            f"macd_{f}_{s}_{g}_{j}": (
                lambda d, f=f, s=s, g=g, j=j: K.macd_nb(d["close"], f, s, g)[j],
                lambda d, f=f, s=s, g=g, j=j: talib.MACD(d["close"], f, s, g)[j],
                1,
            )
            for f, s, g in ((12, 26, 9), (5, 35, 5), (3, 10, 16), (26, 12, 9), (2, 3, 1))
            for j in range(3)
        },
        **{
            f"bbands_{p}_{w}_{j}": (
                lambda d, p=p, w=w, j=j: K.bbands_nb(d["close"], p, w)[j],
                lambda d, p=p, w=w, j=j: talib.BBANDS(d["close"], p, w, w, 0)[j],
                0,
            )
            for p, w in ((20, 2.0), (5, 1.0), (50, 2.5))
            for j in range(3)
        },
        **{
            f"stochrsi_{p}_{k}_{dd}_{j}": (
                lambda d, p=p, k=k, dd=dd, j=j: K.stoch_rsi_nb(d["close"], p, k, dd)[j],
                lambda d, p=p, k=k, dd=dd, j=j: talib.STOCHRSI(d["close"], p, k, dd, 0)[j],
                1,
            )
            for p, k, dd in ((14, 5, 3), (14, 14, 3), (7, 3, 1))
            for j in range(2)
        },
        "roc_1": (lambda d: K.roc_nb(d["close"], 1), lambda d: talib.ROC(d["close"], 1), 1),
        "roc_10": (lambda d: K.roc_nb(d["close"], 10), lambda d: talib.ROC(d["close"], 10), 1),
        "trange": (
            lambda d: K.trange_nb(d["high"], d["low"], d["close"]),
            lambda d: talib.TRANGE(d["high"], d["low"], d["close"]),
            0,
        ),
        **{
            f"atr_{p}": (
                lambda d, p=p: K.atr_nb(d["high"], d["low"], d["close"], p),
                lambda d, p=p: talib.ATR(d["high"], d["low"], d["close"], p),
                0,
            )
            for p in (1, 2, 14, 200)
        },
        "obv": (
            lambda d: K.obv_nb(d["close"], d["volume"]),
            lambda d: talib.OBV(d["close"], d["volume"]),
            1,
        ),
        **{
            f"stddev_{p}": (
                lambda d, p=p: K.rolling_std_nb(d["close"], p),
                lambda d, p=p: talib.STDDEV(d["close"], p, 1.0),
                0,
            )
            for p in (2, 20, 200)
        },
        "var_20": (
            lambda d: K.rolling_var_nb(d["close"], 20, 0),
            lambda d: talib.VAR(d["close"], 20, 1.0),
            0,
        ),
    }


CASES = _cases()
IDS = sorted(CASES)


def _check(name: str, d: dict) -> None:
    mine_fn, ref_fn, signed = CASES[name]
    assert_match(mine_fn(d), ref_fn(d), signed=bool(signed))


@pytest.fixture(scope="module")
def rw() -> dict:
    return walk(3000, seed=1)


@pytest.mark.parametrize("name", IDS)
def test_random_walk_60000(name: str, rw: dict) -> None:
    _check(name, rw)


@pytest.mark.parametrize("level", [1e-8, 1e8])
@pytest.mark.parametrize("name", IDS)
def test_tiny_and_huge_levels(name: str, level: float) -> None:
    _check(name, walk(1200, level=level, seed=2))


def _flat(n: int = 600) -> dict:
    x = np.full(n, 60_000.0)
    return {"open": x, "high": x.copy(), "low": x.copy(), "close": x.copy(), "volume": x / 1e4}


@pytest.mark.parametrize("name", IDS)
def test_flat_prices(name: str) -> None:
    _check(name, _flat())


def _move_then_flat() -> dict:
    d = walk(800, seed=3)
    for k in d:
        if k != "volume":
            d[k][400:] = d["close"][399]
    return d


@pytest.mark.parametrize("name", IDS)
def test_move_then_flat(name: str) -> None:
    d = _move_then_flat()
    if not name.startswith("stochrsi"):
        _check(name, d)
        return
    # Documented deviation: on a flat price after a move, Wilder's gain and loss decay by the
    # same factor, so RSI is constant up to an ulp and TA-Lib's STOCHF returns 0 or 100 from
    # rounding noise. botq treats a spread <= 1e-12 of the values as flat (fastk 0, as
    # TA-Lib does for an exactly flat window). Elsewhere both must agree to 1e-9.
    p, k, dd, j = (int(v) for v in name.split("_")[1:])
    rsi = talib.RSI(d["close"], p)
    win = np.lib.stride_tricks.sliding_window_view(rsi, k)
    spread = np.full(len(rsi), np.nan)
    spread[k - 1 :] = win.max(axis=1) - win.min(axis=1)
    noise = spread <= 1e-12 * 100
    mine_fn, ref_fn, _ = CASES[name]
    mine, ref = mine_fn(d), ref_fn(d)
    fastk = K.stoch_rsi_nb(d["close"], p, k, dd)[0]
    assert noise.sum() > 100
    assert np.all(fastk[noise & ~np.isnan(fastk)] == 0.0)
    hit = np.convolve(noise.astype(float), np.ones(dd), mode="full")[: len(rsi)] > 0
    assert_match(np.where(hit, np.nan, mine), np.where(hit | np.isnan(mine), np.nan, ref), True)


def test_flat_after_move_is_exactly_zero() -> None:
    d = _move_then_flat()
    assert np.all(K.rolling_std_nb(d["close"], 20)[420:] == 0.0)
    up, mid, lo = K.bbands_nb(d["close"], 20, 2.0)
    assert np.all(up[420:] == mid[420:]) and np.all(lo[420:] == mid[420:])


def _segments(x: np.ndarray) -> list[tuple[int, int]]:
    bad = np.isnan(x)
    out, i, n = [], 0, len(x)
    while i < n:
        while i < n and bad[i]:
            i += 1
        j = i
        while j < n and not bad[j]:
            j += 1
        if j > i:
            out.append((i, j))
        i = j
    return out


def _with_gaps(seed: int) -> dict:
    """NaN gaps of several lengths; each column gets gaps in different places too."""
    d = walk(2000, seed=seed)
    for a, b in ((0, 3), (300, 301), (700, 760), (1000, 1002), (1450, 1451)):
        d["close"][a:b] = np.nan
    d["high"][1200] = np.nan
    d["low"][1700:1705] = np.nan
    d["volume"][1800] = np.nan
    return d


def _inputs(name: str) -> tuple[str, ...]:
    if name.startswith(("atr", "trange")):
        return ("high", "low", "close")
    if name == "obv":
        return ("close", "volume")
    return ("close",)


@pytest.mark.parametrize("name", IDS)
def test_nan_gaps_restart_like_talib_on_each_segment(name: str) -> None:
    d = _with_gaps(4)
    mine_fn, ref_fn, signed = CASES[name]
    mine = mine_fn(d)
    valid = np.ones(2000, dtype=bool)
    for k in _inputs(name):  # a kernel only looks at the inputs it uses
        valid &= ~np.isnan(d[k])
    expected = np.full(2000, np.nan)
    for a, b in _segments(np.where(valid, 0.0, np.nan)):
        seg = {k: v[a:b].copy() for k, v in d.items()}
        expected[a:b] = ref_fn(seg)  # TA-Lib gives all-NaN for a segment below its lookback
    assert_match(mine, expected, signed=bool(signed))
    # the series recovers after the last gap (not poisoned, unlike TA-Lib itself)
    assert not np.isnan(mine[-1])


def test_talib_itself_is_poisoned_by_a_nan() -> None:
    x = walk(500, seed=5)["close"]
    x[100] = np.nan
    assert np.isnan(talib.SMA(x, 10)[-1])
    assert not np.isnan(K.sma_nb(x, 10)[-1])
    np.testing.assert_allclose(K.sma_nb(x, 10)[110:], talib.SMA(x[101:], 10)[9:], rtol=RTOL)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: K.sma_nb(x, 20),
        lambda x: K.ema_nb(x, 20),
        lambda x: K.rsi_nb(x, 14),
        lambda x: K.macd_nb(x, 12, 26, 9)[2],
        lambda x: K.rolling_std_nb(x, 20),
    ],
)
def test_short_series_is_all_nan(fn) -> None:
    x = walk(10, seed=6)["close"]
    assert np.isnan(fn(x)).all()
    assert fn(np.empty(0)).shape == (0,)


def test_period_one_is_identity() -> None:
    x = walk(50, seed=7)["close"]
    np.testing.assert_array_equal(K.sma_nb(x, 1), x)
    np.testing.assert_array_equal(K.ema_nb(x, 1), x)
    assert np.all(K.rolling_std_nb(x, 1) == 0.0)


def test_long_low_vol_series_has_no_drift() -> None:
    """200k one-minute-like bars at 60,000 (0.01% moves): running sums must not drift."""
    x = walk(200_000, vol=1e-4, seed=8)["close"]
    assert_match(K.sma_nb(x, 20), talib.SMA(x, 20))
    assert_match(K.rolling_std_nb(x, 20), talib.STDDEV(x, 20, 1.0))
    assert_match(K.ema_nb(x, 50), talib.EMA(x, 50))
    # and against an exact two-pass reference, much tighter than 1e-9
    w = np.lib.stride_tricks.sliding_window_view(x, 20)
    exact = np.sqrt(((w - w.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    np.testing.assert_allclose(K.rolling_std_nb(x, 20)[19:], exact, rtol=1e-11)


def test_macd_fast_ema_is_seeded_at_the_slow_start(rw: dict) -> None:
    """TA-Lib's MACD seeds its fast EMA with the SMA of the `fast` bars ending at slow - 1,
    not at fast - 1: line + EMA(slow) recovers that late-seeded EMA, which ema_offset_nb is."""
    x = rw["close"]
    line = talib.MACD(x, 12, 26, 9)[0]
    fast = line + talib.EMA(x, 26)
    mine = K.ema_offset_nb(x, 12, 25)
    assert np.isnan(mine[:25]).all()
    np.testing.assert_allclose(mine[33:], fast[33:], rtol=RTOL)
    assert not np.allclose(mine[25:40], K.ema_nb(x, 12)[25:40], rtol=1e-6, atol=0)
    line2, _, _, slow = K.macd_slow_nb(x, 12, 26, 9)
    np.testing.assert_array_equal(slow, K.ema_nb(x, 26))
    np.testing.assert_allclose(line2[33:], (mine - slow)[33:], rtol=1e-12, atol=1e-9)


def test_skipped_optional_outputs_leave_the_others_unchanged(rw: dict) -> None:
    """An empty out_slow / out_middle skips that output of the fused MACD / Bollinger pass."""
    x = rw["close"].copy()
    x[500:503] = np.nan
    none = np.empty(0)
    full = K.macd_slow_nb(x, 12, 26, 9)
    part = K.macd_slow_nb(x, 12, 26, 9, None, None, None, none)
    assert part[3].shape == (0,)
    for a, b in zip(full[:3], part[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full[3], K.ema_nb(x, 26))
    up, mid, lo = K.bbands_nb(x, 20, 2.0)
    up2, mid2, lo2 = K.bbands_nb(x, 20, 2.0, None, none, None)
    assert mid2.shape == (0,)
    np.testing.assert_array_equal(up, up2)
    np.testing.assert_array_equal(lo, lo2)


@pytest.mark.parametrize("name", ["atr_14", "atr_2", "sma_20", "stddev_20", "bbands_20_2.0_0"])
def test_a_nan_at_every_loop_position_stops_the_run_there(name: str) -> None:
    """The hot loops test for NaN only where it is cheap: ATR two bars at a time, the rolling
    mean and M2 inside their rounding guard. A NaN at each of several consecutive positions
    (both halves of an ATR pair, the first bars after the seed) must end the run exactly there
    and restart after it like TA-Lib on the next segment."""
    mine_fn, ref_fn, signed = CASES[name]
    for k in range(10, 30):
        d = walk(300, seed=30 + k)
        d["close"][100 + k] = np.nan
        if k % 3 == 0:
            d["high"][200 + k] = np.nan
        valid = np.ones(300, dtype=bool)
        for c in _inputs(name):
            valid &= ~np.isnan(d[c])
        expected = np.full(300, np.nan)
        for a, b in _segments(np.where(valid, 0.0, np.nan)):
            expected[a:b] = ref_fn({c: v[a:b].copy() for c, v in d.items()})
        assert_match(mine_fn(d), expected, signed=bool(signed))


@pytest.mark.parametrize("p1,p2", [(12, 26), (26, 12), (1, 2), (5, 200), (20, 21)])
def test_ema_pair_equals_two_emas_bit_for_bit(p1: int, p2: int) -> None:
    """One pass for two EMAs (crossovers, sweeps): the same numbers as each EMA alone, with
    NaN gaps, runs shorter than either period, and a NaN right after each seed."""
    x = _with_gaps(5)["close"].copy()
    x[300 + p1 - 1 + 1] = np.nan  # a NaN just after the shorter EMA's seed of a run
    x[700:703] = np.nan
    x[703 + max(p1, p2) - 1 + 1] = np.nan  # and just after the longer one's
    x[1000 : 1000 + max(p1, p2) // 2 + 1] = x[999]
    for data in (x, x[: max(p1, p2) - 1], x[~np.isnan(x)]):
        o1 = np.full(data.shape[0], 7.0)
        o2 = np.full(data.shape[0], 7.0)
        K.ema_pair_nb(data, p1, p2, o1, o2)
        np.testing.assert_array_equal(o1, K.ema_nb(data, p1))
        np.testing.assert_array_equal(o2, K.ema_nb(data, p2))


def _ema_outputs(x: np.ndarray) -> list[np.ndarray]:
    """Every EMA-chain output: EMA alone, a pair, MACD's four (the slow EMA kept)."""
    o1, o2 = np.empty(x.shape[0]), np.empty(x.shape[0])
    K.ema_pair_nb(x, 9, 30, o1, o2)
    return [K.ema_nb(x, 12), o1, o2, *K.macd_slow_nb(x, 12, 26, 9)]


def test_ema_chains_never_look_ahead() -> None:
    """A bar's EMA (alone, in a pair, in MACD) depends only on the bars up to it: the series
    cut after a position, or with a NaN right after it, gives the same values there, bit for
    bit (positions around the pair's hand-over from seeding to its joint loop too)."""
    x = walk(2300, seed=11)["close"]
    full = _ema_outputs(x)
    for t in [*range(26, 52), *range(1018, 1032), 2299]:
        cut = _ema_outputs(x[: t + 1])
        gap = x.copy()
        gap[t + 1 : t + 3] = np.nan
        holed = _ema_outputs(gap)
        for a, b, c in zip(full, cut, holed, strict=True):
            np.testing.assert_array_equal(b, a[: t + 1])
            np.testing.assert_array_equal(c[: t + 1], a[: t + 1])


def test_emas_of_a_flat_price_are_exactly_flat() -> None:
    """Two EMAs of an unchanging price must not cross on rounding noise: every EMA stays
    exactly at the price, at any price level and period. (TA-Lib's seed, sum / p, is an ulp
    off for most levels, e.g. 2 in 3 random levels at p = 12, and its EMA never gets back.)"""
    levels = [61_234.5, *np.random.default_rng(4).uniform(1e-6, 1e7, 300)]
    for level in levels:
        x = np.full(300, level)
        for out in _ema_outputs(x)[:3]:
            assert (out[~np.isnan(out)] == level).all(), level
        for p in (1, 2, 3, 4, 5, 7, 13, 50, 200):
            out = K.ema_nb(x, p)
            assert (out[p - 1 :] == level).all(), (level, p)
        line, sig, hist = K.macd_nb(x, 12, 26, 9)
        assert (line[33:] == 0.0).all() and (sig[33:] == 0.0).all(), level


def test_ema_chains_stay_within_1e_12_of_talib_over_long_series() -> None:
    """No drift over 200,000 bars: EMAs within 1e-12 of TA-Lib, MACD within 1e-9 absolute."""
    talib = pytest.importorskip("talib")
    x = walk(200_000, seed=12)["close"]
    for p in (2, 12, 50, 200):
        np.testing.assert_allclose(K.ema_nb(x, p), talib.EMA(x, p), rtol=1e-12, equal_nan=True)
    line, sig, hist = K.macd_nb(x, 12, 26, 9)
    ref = talib.MACD(x, 12, 26, 9)
    for mine, theirs in zip((line, sig, hist), ref, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-9, equal_nan=True)
