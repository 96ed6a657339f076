"""The name registry: parsing, errors, shared intermediates, higher timeframes, warm-up."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from botq.errors import MarketDataError, StrategyError
from botq.indicators import (
    available,
    compute,
    compute_array,
    names,
    parse,
    parse_timeframe,
    registry,
)
from botq.indicators import kernels as K
from botq.market.timeframes import resample_nb

DESIGN_NAMES = [
    "sma_20",
    "ema_12",
    "rsi_14",
    "macd_line",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_mid",
    "bb_lower",
    "stoch_rsi_14",
    "roc_10",
    "atr_14",
    "obv",
    "obv_sma_20",
    "vol_sma_20",
    "ttm_trend",
    "rstd_20",
    "zscore_20",
    "prank_50",
    "parkinson_20",
    "gk_vol_20",
    "yz_vol_20",
    "hurst_200",
    "halflife_200",
    "vol_regime_100",
    "vwap",
    "vwap_dev_20",
    "skew_60",
    "kurt_60",
    "autocorr_1",
    "price",
]

# first row with a value for each DESIGN name (lookback), on gap-free candles
FIRST_VALID = {
    "sma_20": 19, "ema_12": 11, "rsi_14": 14, "macd_line": 33, "macd_signal": 33,
    "macd_hist": 33, "bb_upper": 19, "bb_mid": 19, "bb_lower": 19, "stoch_rsi_14": 20,
    "roc_10": 10, "atr_14": 14, "obv": 0, "obv_sma_20": 19, "vol_sma_20": 19, "ttm_trend": 6,
    "rstd_20": 19, "zscore_20": 19, "prank_50": 49, "parkinson_20": 19, "gk_vol_20": 19,
    "yz_vol_20": 20, "hurst_200": 200, "halflife_200": 199, "vol_regime_100": 119, "vwap": 0,
    "vwap_dev_20": 19, "skew_60": 60, "kurt_60": 60, "autocorr_1": 101, "price": 0,
}  # fmt: skip


def make_candles(n: int, seed: int = 0, start: str = "2024-01-01 00:00") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * (1.0 + np.abs(rng.normal(0.0, 5e-4, n)))
    lo = np.minimum(o, c) * (1.0 - np.abs(rng.normal(0.0, 5e-4, n)))
    v = rng.uniform(0.1, 10.0, n)
    idx = pd.date_range(start, periods=n, freq="min", tz="UTC")
    return pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": v}, index=idx)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_candles(2000, seed=1)


def cols(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {k: df[k].to_numpy(dtype=np.float64).copy() for k in df.columns}


def assert_frame_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


# ----------------------------------------------------------------------------- parsing


def test_every_design_name_parses_and_computes(df: pd.DataFrame) -> None:
    out = compute(df, DESIGN_NAMES)
    assert list(out.columns) == DESIGN_NAMES
    assert out.index.equals(df.index)
    for name, first in FIRST_VALID.items():
        col = out[name].to_numpy()
        assert np.isnan(col[:first]).all(), name
        assert not np.isnan(col[first]), name
        assert not np.isnan(col[-1]), name


def test_available_lists_templates_examples_and_ranges() -> None:
    infos = available()
    assert len(infos) == len(names())
    for info in infos:
        parse(info.example)  # every example is valid
        assert info.description and info.inputs
    rsi = next(i for i in infos if i.template == "rsi_<period>")
    assert rsi.usage() == "period 1-200"
    hurst = next(i for i in infos if i.template.startswith("hurst"))
    assert hurst.usage() == "period 32-1000"


@pytest.mark.parametrize(
    ("name", "base", "values"),
    [
        ("rsi_14", "rsi", (14,)),
        ("bb_upper", "bb_upper", (20, 2.0)),
        ("bb_upper_20_2.5", "bb_upper", (20, 2.5)),
        ("bb_lower_10", "bb_lower", (10, 2.0)),
        ("macd_hist", "macd_hist", (12, 26, 9)),
        ("macd_hist_5_35_5", "macd_hist", (5, 35, 5)),
        ("stoch_rsi_14", "stoch_rsi", (14, 5, 3)),
        ("stoch_rsi_d_14_14_3", "stoch_rsi_d", (14, 14, 3)),
        ("obv_sma_20", "obv_sma", (20,)),
        ("vol_sma_20", "vol_sma", (20,)),
        ("vol_regime_100", "vol_regime", (100,)),
        ("ttm_trend", "ttm_trend", (6,)),
        ("autocorr_1", "autocorr", (1, 100)),
        ("autocorr_2_50", "autocorr", (2, 50)),
        ("price", "price", ()),
    ],
)
def test_parse(name: str, base: str, values: tuple) -> None:
    p = parse(name)
    assert (p.base, p.values) == (base, values)


def test_values_equal_the_kernels(df: pd.DataFrame) -> None:
    c = cols(df)
    x = c["close"]
    out = compute(
        df,
        [
            "rsi_14",
            "bb_upper",
            "bb_lower_20_2.5",
            "macd_hist",
            "stoch_rsi_14",
            "macd_line_5_35_5",
            "ema_20",
            "atr_14",
            "price",
            "zscore_20",
            "skew_60",
        ],
    )
    np.testing.assert_array_equal(out["rsi_14"], K.rsi_nb(x, 14))
    np.testing.assert_array_equal(out["bb_upper"], K.bbands_nb(x, 20, 2.0)[0])
    np.testing.assert_array_equal(out["bb_lower_20_2.5"], K.bbands_nb(x, 20, 2.5)[2])
    np.testing.assert_array_equal(out["macd_hist"], K.macd_nb(x, 12, 26, 9)[2])
    np.testing.assert_array_equal(out["macd_line_5_35_5"], K.macd_nb(x, 5, 35, 5)[0])
    np.testing.assert_array_equal(out["stoch_rsi_14"], K.stoch_rsi_nb(x, 14, 5, 3)[0])
    np.testing.assert_array_equal(out["ema_20"], K.ema_nb(x, 20))
    np.testing.assert_array_equal(out["atr_14"], K.atr_nb(c["high"], c["low"], x, 14))
    np.testing.assert_array_equal(out["price"], x)
    # registry: (x - sma) / rstd from the shared nodes; kernel: one pass. Means agree to 1e-16
    np.testing.assert_allclose(out["zscore_20"], K.zscore_nb(x, 20), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(out["skew_60"], K.skew_nb(K.log_returns_nb(x), 60))


def test_candles_object_gives_the_same_frame(df: pd.DataFrame) -> None:
    c = cols(df)
    obj = SimpleNamespace(**c, time=df.index.as_unit("ns").asi8.view("datetime64[ns]"))
    a = compute(df, ["rsi_14", "vwap", "obv"])
    b = compute(obj, ["rsi_14", "vwap", "obv"])
    assert_frame_same(a, b)
    assert isinstance(b.index, pd.DatetimeIndex) and str(b.index.tz) == "UTC"
    assert (b.index == df.index).all()
    obj_ns = SimpleNamespace(**c, time=df.index.as_unit("ns").asi8)
    assert_frame_same(a, compute(obj_ns, ["rsi_14", "vwap", "obv"]))


def test_duplicates_are_dropped_and_a_single_name_works(df: pd.DataFrame) -> None:
    assert list(compute(df, ["rsi_14", "sma_5", "rsi_14"]).columns) == ["rsi_14", "sma_5"]
    assert list(compute(df, "rsi_14").columns) == ["rsi_14"]


def test_integer_columns_and_naive_index_are_accepted(df: pd.DataFrame) -> None:
    ints = df.round(0).astype("int64")
    naive = ints.tz_localize(None)
    assert_frame_same(compute(ints, ["vwap", "rsi_14"]), compute(naive, ["vwap", "rsi_14"]))


# ----------------------------------------------------------------------------- errors


def error_of(df: pd.DataFrame, names_: list[str], **kw) -> StrategyError:
    with pytest.raises(StrategyError) as ei:
        compute(df, names_, **kw)
    return ei.value


@pytest.mark.parametrize(
    ("name", "code", "fragments"),
    [
        ("rsx_14", "INVALID_INDICATOR", ["did you mean 'rsi_14'", "sma_<period>", "vwap"]),
        ("foo", "INVALID_INDICATOR", ["valid names are", "rsi_<period>"]),
        ("", "INVALID_INDICATOR", ["such as 'rsi_14'"]),
        ("rsi_0", "INVALID_PERIOD_RANGE", ["out of range", "1-200", "'rsi_14'"]),
        ("ema_201", "INVALID_PERIOD_RANGE", ["1-200"]),
        ("hurst_10", "INVALID_PERIOD_RANGE", ["32-1000"]),
        ("skew_2", "INVALID_PERIOD_RANGE", ["3-1000"]),
        ("bb_upper_20_0", "INVALID_PERIOD_RANGE", ["width", "0.1-10"]),
        ("autocorr_101", "INVALID_PERIOD_RANGE", ["lag", "1-100"]),
        ("rsi_abc", "INVALID_PERIOD", ["whole number", "'rsi_14'"]),
        ("rsi_-3", "INVALID_PERIOD", ["whole number"]),
        ("rsi_14.5", "INVALID_PERIOD", ["whole number"]),
        ("bb_upper_20_x", "INVALID_PERIOD", ["a number like 2.5"]),
        ("rsi", "INVALID_PERIOD", ["rsi_<period>", "got 0"]),
        ("rsi_14_3", "INVALID_PERIOD", ["got 2"]),
        ("obv_5", "INVALID_PERIOD", ["takes no parameters", "'obv'"]),
        ("macd_hist_12", "INVALID_PERIOD", ["0 or 3", "macd_hist[_<fast>_<slow>_<signal>]"]),
        ("macd_hist_26_12_9", "INVALID_PERIOD", ["fast period 26 must be below slow period 12"]),
        ("autocorr_50_20", "INVALID_PERIOD", ["lag 50 must be below the window 20"]),
    ],
)
def test_bad_names(df: pd.DataFrame, name: str, code: str, fragments: list[str]) -> None:
    err = error_of(df, [name])
    assert err.code == code
    assert err.problems[0].path == name
    for frag in fragments:
        assert frag in str(err), (frag, str(err))


def test_every_problem_is_reported_at_once(df: pd.DataFrame) -> None:
    err = error_of(df.drop(columns=["volume"]), ["rsi_0", "zzz", "obv", "rsi_14"])
    assert [p.code for p in err.problems] == [
        "INVALID_PERIOD_RANGE",
        "INVALID_INDICATOR",
        "MISSING_INPUT",
    ]


def test_missing_inputs(df: pd.DataFrame) -> None:
    err = error_of(df.drop(columns=["volume"]), ["obv"])
    assert err.code == "MISSING_INPUT" and "'volume'" in str(err) and "add it or drop" in str(err)
    nan_vol = df.assign(volume=np.nan)
    assert error_of(nan_vol, ["vol_sma_20"]).code == "MISSING_INPUT"
    no_time = df.reset_index(drop=True)
    err = error_of(no_time, ["vwap"])
    assert err.code == "MISSING_INPUT" and "DatetimeIndex" in str(err)
    assert list(compute(no_time, ["rsi_14"]).columns) == ["rsi_14"]  # times not needed
    assert error_of(no_time, ["rsi_14"], timeframe="1h").code == "MISSING_INPUT"
    # columns a name does not use may be absent
    assert list(compute(df[["close"]], ["rsi_14", "zscore_20"]).columns) == ["rsi_14", "zscore_20"]


def test_bad_timeframes(df: pd.DataFrame) -> None:
    for tf in ("1x", "h1", "0m", "", "60"):
        err = error_of(df, ["rsi_14"], timeframe=tf)
        assert err.code == "INVALID_TIMEFRAME" and "'1h'" in str(err)
    five = df.iloc[::5]
    err = error_of(five, ["rsi_14"], timeframe="7m")
    assert err.code == "INVALID_TIMEFRAME" and "multiple" in str(err)
    assert error_of(five, ["rsi_14"], timeframe="1m").code == "INVALID_TIMEFRAME"


def test_unsorted_candles_are_rejected(df: pd.DataFrame) -> None:
    dup = df.iloc[np.r_[0:50, 49:100]]
    for bad in (df.iloc[::-1], dup):
        with pytest.raises(MarketDataError, match="sorted"):
            compute(bad, ["vwap"])
        arrays = SimpleNamespace(
            **{c: bad[c].to_numpy() for c in bad.columns}, time=bad.index.as_unit("ns").asi8
        )
        with pytest.raises(MarketDataError, match="sorted"):
            compute(arrays, ["vwap"])


def test_dataframe_columns_are_read_in_place_and_left_unchanged(df: pd.DataFrame) -> None:
    # pandas hands out read-only views; compute reads them without a copy
    before = df.copy(deep=True)
    cols = registry._columns(df, ["close", "volume"])
    close = df["close"].to_numpy()
    assert not close.flags.writeable
    assert np.shares_memory(cols["close"], close) and cols["close"].flags.writeable
    got = compute(df, ["obv", "sma_5", "rsi_14", "price"])
    pd.testing.assert_frame_equal(df, before)
    np.testing.assert_array_equal(got["price"].to_numpy(), before["close"].to_numpy())
    assert not np.shares_memory(got.to_numpy(), close)


# ----------------------------------------------------------------------------- sharing


def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record (kind, scalar params) of every kernel call; `.inputs` keeps the input arrays' ids."""
    calls: list[tuple] = []
    for kind, fn in list(registry._EVAL.items()):

        def wrapper(*args, _kind=kind, _fn=fn):
            arrays = tuple(id(a) for a in args if isinstance(a, np.ndarray))
            scalars = tuple(a for a in args if not isinstance(a, np.ndarray) and not callable(a))
            calls.append((_kind, scalars, arrays))
            return _fn(*args)

        monkeypatch.setitem(registry._EVAL, kind, wrapper)
    return calls


def test_shared_intermediates_are_computed_once(
    df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_calls(monkeypatch)
    compute(
        df,
        [
            "ema_26",
            "macd_hist",
            "macd_line",
            "macd_signal",
            "sma_20",
            "bb_upper",
            "bb_mid",
            "bb_lower",
            "rstd_20",
            "zscore_20",
            "rsi_14",
            "stoch_rsi_14",
            "stoch_rsi_d_14",
            "skew_60",
            "kurt_60",
            "autocorr_1",
        ],
    )
    kinds = [k for k, _, _ in calls]
    assert len(calls) == len(set(calls))  # nothing computed twice
    # ema_26 is the slow EMA of the one fused MACD pass: no separate EMA kernel runs
    assert kinds.count("macd") == 1 and kinds.count("ema") == 0
    # sma_20 and bb_mid are the middle line of the one fused Bollinger pass
    assert kinds.count("sma") == 0 and kinds.count("bands") == 1
    assert kinds.count("rstd") == 1 and kinds.count("zscore") == 1
    assert kinds.count("rsi") == 1 and kinds.count("stochf") == 1
    assert kinds.count("logret") == 1


def test_ema_served_by_macd_is_the_same_ema(df: pd.DataFrame) -> None:
    x = cols(df)["close"]
    out = compute(df, ["ema_26", "macd_hist", "ema_12", "ema_9"])
    np.testing.assert_array_equal(out["ema_26"], K.ema_nb(x, 26))
    np.testing.assert_array_equal(out["ema_12"], K.ema_nb(x, 12))  # not MACD's late-seeded one
    np.testing.assert_array_equal(out["macd_hist"], K.macd_nb(x, 12, 26, 9)[2])


def test_outputs_served_by_fused_passes_on_a_higher_timeframe(df: pd.DataFrame) -> None:
    """Regression: on a higher timeframe requested outputs are mapped back after the kernels
    ran, so an optional output (MACD's slow EMA, the Bollinger middle line) must still be
    computed there, not skipped as unwanted."""
    for tf in (None, "5m"):
        fused = compute(df, ["macd_hist", "ema_26", "bb_upper", "sma_20", "bb_mid"], timeframe=tf)
        alone = compute(df, ["ema_26", "sma_20"], timeframe=tf)
        np.testing.assert_array_equal(fused["ema_26"], alone["ema_26"])
        np.testing.assert_allclose(fused["sma_20"], alone["sma_20"], rtol=1e-12)
        np.testing.assert_array_equal(fused["bb_mid"], fused["sma_20"])


def test_parallel_equals_serial_and_shares_too(
    df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    some = [
        "macd_hist",
        "ema_26",
        "bb_upper",
        "zscore_20",
        "rsi_14",
        "stoch_rsi_14",
        "obv",
        "vwap_dev_20",
        "hurst_200",
        "vol_regime_100",
        "atr_14",
        "yz_vol_20",
    ]
    serial = compute(df, some, workers=1)
    monkeypatch.setattr(registry, "PARALLEL_MIN_ROWS", 0)
    calls = count_calls(monkeypatch)
    parallel = compute(df, some, workers=2)
    assert_frame_same(serial, parallel)
    assert len(calls) == len(set(calls))
    htf = compute(df, some, timeframe="5m", workers=2)
    monkeypatch.setattr(registry, "PARALLEL_MIN_ROWS", 10**9)
    assert_frame_same(htf, compute(df, some, timeframe="5m", workers=2))


# ----------------------------------------------------------------------------- timeframes

HTF_NAMES = [
    "rsi_14",
    "macd_hist",
    "bb_upper",
    "atr_14",
    "obv",
    "vwap",
    "ema_5",
    "price",
    "zscore_20",
    "yz_vol_20",
    "stoch_rsi_14",
]


def test_higher_timeframe_has_no_look_ahead() -> None:
    """Changing or removing every candle after minute t never changes any output at rows <= t."""
    base_df = make_candles(3 * 1440, seed=2)
    base = compute(base_df, HTF_NAMES, timeframe="1h").to_numpy()
    assert np.isfinite(base[-1]).all()
    rng = np.random.default_rng(3)
    for t in (59, 600, 1438, 1439, 1440, 2000, 2519, 3000):
        changed = base_df.copy()
        k = len(changed) - t - 1
        for c in ("open", "high", "low", "close"):
            changed.iloc[t + 1 :, changed.columns.get_loc(c)] *= rng.uniform(0.5, 1.5, k)
        changed.iloc[t + 1 :, changed.columns.get_loc("volume")] = rng.uniform(0, 100, k)
        other = compute(changed, HTF_NAMES, timeframe="1h").to_numpy()
        np.testing.assert_array_equal(other[: t + 1], base[: t + 1])
        assert not np.array_equal(other[t + 1 :], base[t + 1 :], equal_nan=True)
        truncated = compute(base_df.iloc[: t + 1], HTF_NAMES, timeframe="1h").to_numpy()
        np.testing.assert_array_equal(truncated, base[: t + 1])


def test_higher_timeframe_values_and_visibility_convention() -> None:
    """Bucket [H:00, H+1:00) is visible from the H:59 row on: its value equals the indicator on
    pandas-resampled hourly candles; rows H:00..H:58 still show the previous hour."""
    m = make_candles(2 * 1440, seed=4)
    out = compute(m, ["rsi_14", "price", "vwap"], timeframe="1h")
    hourly = m.resample("1h").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    rsi_h = pd.Series(K.rsi_nb(hourly["close"].to_numpy(), 14), index=hourly.index)
    minute = m.index.minute
    at_59 = minute == 59
    # at H:59 the bucket H is visible ...
    exp59 = rsi_h.reindex(m.index[at_59].floor("1h")).to_numpy()
    np.testing.assert_array_equal(out["rsi_14"].to_numpy()[at_59], exp59)
    # ... before it the previous bucket is
    before = ~at_59 & (m.index >= m.index[0] + pd.Timedelta("1h"))
    expb = rsi_h.reindex(m.index[before].floor("1h") - pd.Timedelta("1h")).to_numpy()
    np.testing.assert_array_equal(out["rsi_14"].to_numpy()[before], expb)
    # price (= close) of the bucket is the close of its 59th minute, visible on that very row
    np.testing.assert_array_equal(out["price"].to_numpy()[at_59], m["close"].to_numpy()[at_59])
    assert np.isnan(out["price"].to_numpy()[:59]).all()
    # hourly VWAP restarts each UTC day
    day_h = hourly.index.floor("1D")
    tp = (hourly.high + hourly.low + hourly.close) / 3 * hourly.volume
    vw = tp.groupby(day_h).cumsum() / hourly.volume.groupby(day_h).cumsum()
    np.testing.assert_allclose(out["vwap"].to_numpy()[at_59], vw.to_numpy(), rtol=1e-12)


def test_bucket_without_its_last_minute_becomes_visible_in_the_next_hour() -> None:
    m = make_candles(300, seed=5)
    gap = m.drop(m.index[119])  # 01:59 missing
    out = compute(gap, ["price"], timeframe="1h")["price"]
    assert np.isnan(out[: m.index[59]].iloc[:-1]).all()
    assert out[m.index[59]] == m["close"].iloc[59]
    assert out[m.index[118]] == m["close"].iloc[59]  # 01:58: hour 1 not complete
    assert out[m.index[120]] == m["close"].iloc[118]  # 02:00: hour 1 closed, last close 01:58


def test_timeframe_equal_to_the_candles_is_the_identity(df: pd.DataFrame) -> None:
    assert_frame_same(compute(df, HTF_NAMES, timeframe="1m"), compute(df, HTF_NAMES))
    five = df.iloc[::5]
    assert_frame_same(compute(five, HTF_NAMES, timeframe="5m"), compute(five, HTF_NAMES))


def test_timeframe_parsing_and_week_alignment() -> None:
    ns_min = 60 * 10**9
    assert parse_timeframe("15m") == (15 * ns_min, 0)
    assert parse_timeframe("4h") == (240 * ns_min, 0)
    assert parse_timeframe("1d") == (1440 * ns_min, 0)
    bucket, offset = parse_timeframe("1w")
    t = pd.date_range("2024-01-03", periods=20, freq="1D", tz="UTC")  # a Wednesday
    x = np.arange(20.0)
    bt, o, h, lo, c, v, closed = _resample(t.as_unit("ns").asi8, x, bucket, offset, 1440 * ns_min)
    starts = pd.to_datetime(bt, utc=True)
    assert (starts.day_of_week[1:] == 0).all() and str(starts[1].date()) == "2024-01-08"
    np.testing.assert_array_equal(o, [0, 5, 12, 19])
    np.testing.assert_array_equal(c, [4, 11, 18, 19])
    np.testing.assert_array_equal(v, [10, 56, 105, 19])
    # Sunday rows close their week; the last, incomplete week is never visible
    np.testing.assert_array_equal(closed[:6], [-1, -1, -1, -1, 0, 0])
    assert closed[-1] == 2


def _resample(t: np.ndarray, x: np.ndarray, bucket: int, offset: int, step: int) -> tuple:
    """market.timeframes.resample_nb on one series used as every price column."""
    no_trades = np.zeros(len(t), np.int64)
    out = resample_nb(t, x, x, x, x, x, no_trades, np.full(len(t), np.nan), bucket, offset, step, 0)
    return (*out[:6], out[9])


def test_resample_skips_nan_inside_a_bucket() -> None:
    t = np.arange(6, dtype=np.int64) * 60 * 10**9
    x = np.array([1.0, np.nan, 3.0, 4.0, np.nan, np.nan])
    bt, o, h, lo, c, v, closed = _resample(t, x, 3 * 60 * 10**9, 0, 60 * 10**9)
    np.testing.assert_array_equal(o, [1.0, 4.0])
    np.testing.assert_array_equal(c, [3.0, 4.0])
    np.testing.assert_array_equal(v, [4.0, 4.0])
    np.testing.assert_array_equal(closed, [-1, -1, 0, 0, 0, 1])


def test_nan_candles_do_not_poison_the_rest(df: pd.DataFrame) -> None:
    holes = df.copy()
    holes.iloc[500:503] = np.nan
    out = compute(holes, DESIGN_NAMES)
    assert not out.iloc[-1].isna().any()
    assert out.iloc[500:503].drop(columns=["vwap"]).isna().all().all()


def test_out_receives_the_columns_and_the_frame_is_a_view_of_it(df: pd.DataFrame) -> None:
    wanted = ["rsi_14", "ema_20", "bb_upper_20_2.5", "price"]
    out = np.full((4, len(df)), -1.0)
    frame = compute(df, wanted, out=out)
    expected = compute(df, wanted)
    pd.testing.assert_frame_equal(frame, expected)
    np.testing.assert_array_equal(out, expected.to_numpy().T)
    assert np.shares_memory(frame.to_numpy(), out)
    hourly = np.empty((1, len(df)))
    compute(df, ["rsi_14"], timeframe="1h", out=hourly)  # mapped back into out as well
    np.testing.assert_array_equal(hourly[0], compute(df, ["rsi_14"], timeframe="1h")["rsi_14"])
    with pytest.raises(ValueError, match=r"shape \(4, 2000\)"):
        compute(df, wanted, out=np.empty((3, len(df))))
    # the same numbers as an array, without a DataFrame; duplicates dropped as in compute()
    block, columns = compute_array(df, [*wanted, "rsi_14"])
    assert columns == wanted and block.shape == (4, len(df)) and block.flags.c_contiguous
    np.testing.assert_array_equal(block, expected.to_numpy().T)


def test_emas_are_computed_two_at_a_time(df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    x = cols(df)["close"]
    calls = count_calls(monkeypatch)
    names = ["ema_26", "ema_12", "ema_5", "macd_hist_3_9_4", "ema_9", "ema_50"]
    out = compute(df, names)
    kinds = [k for k, _, _ in calls]
    # ema_9 is MACD's slow EMA; 5/12 and 26/50 are pairs (sorted by period)
    assert sorted(kinds) == ["ema2", "ema2", "macd"]
    for nm in ("ema_5", "ema_12", "ema_26", "ema_50", "ema_9"):
        np.testing.assert_array_equal(out[nm], K.ema_nb(x, int(nm[4:])), err_msg=nm)
    for tf in (None, "5m"):  # an odd one out alone, on the candles' own and a higher timeframe
        three = compute(df, ["ema_7", "ema_3", "ema_20"], timeframe=tf)
        for nm in three.columns:
            np.testing.assert_array_equal(
                three[nm], compute(df, [nm], timeframe=tf)[nm], err_msg=f"{nm} on {tf}"
            )
