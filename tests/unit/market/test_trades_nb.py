"""The trades -> 1-minute candles kernel against a pandas groupby reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botq.market.trades_nb import CANDLE_FIELDS, NS_PER_MINUTE, trades_to_candles

T0 = 1_700_000_040 * 1_000_000_000  # minute-aligned


def _random_trades(n: int = 4000, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # bursts of trades with quiet stretches, so that many minutes have no trade at all
    gaps = rng.exponential(20e9, n).astype(np.int64)
    gaps[rng.random(n) < 0.02] += 10 * NS_PER_MINUTE
    time = T0 + np.cumsum(gaps)
    price = 37_000 + np.cumsum(rng.normal(0, 5, n))
    volume = rng.exponential(0.2, n) + 1e-4
    return time, price, volume


def _pandas_reference(minute_ns: np.ndarray, price: np.ndarray, volume: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"minute": minute_ns, "price": price, "volume": volume})
    df["pv"] = df["price"] * df["volume"]
    g = df.groupby("minute", sort=True)
    ref = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["volume"].sum(),
            "trades": g["price"].count(),
        }
    )
    ref["vwap"] = g["pv"].sum() / ref["volume"]
    return ref


def _check(out: dict[str, np.ndarray], ref: pd.DataFrame) -> None:
    assert out["time"].tolist() == ref.index.tolist()
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(out[col], ref[col].to_numpy())
    np.testing.assert_allclose(out["volume"], ref["volume"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["vwap"], ref["vwap"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(out["trades"], ref["trades"].to_numpy())


def test_matches_pandas_with_int_nanoseconds() -> None:
    time, price, volume = _random_trades()
    out = trades_to_candles(time, price, volume)
    assert list(out) == [*CANDLE_FIELDS, "final"]
    _check(out, _pandas_reference(time // NS_PER_MINUTE * NS_PER_MINUTE, price, volume))
    assert out["time"].dtype == np.int64 and out["trades"].dtype == np.int64
    # minutes with no trades are absent, not fabricated
    assert (np.diff(out["time"]) > NS_PER_MINUTE).any()
    assert (out["trades"] >= 1).all() and (out["time"] % NS_PER_MINUTE == 0).all()
    assert ((out["low"] <= out["vwap"]) & (out["vwap"] <= out["high"])).all()


def test_matches_pandas_with_float_seconds() -> None:
    rng = np.random.default_rng(3)
    seconds = 1_700_000_000.0 + np.sort(rng.uniform(0, 3 * 3600, 3000))
    price = 100 + rng.normal(0, 1, 3000)
    volume = rng.uniform(0.01, 2, 3000)
    out = trades_to_candles(seconds, price, volume)
    minute_ns = (np.floor(seconds / 60).astype(np.int64)) * NS_PER_MINUTE
    _check(out, _pandas_reference(minute_ns, price, volume))


def test_datetime64_input_and_unsorted_input() -> None:
    time, price, volume = _random_trades(500, seed=11)
    expected = trades_to_candles(time, price, volume)
    rng = np.random.default_rng(0)
    order = rng.permutation(time.size)
    shuffled = trades_to_candles(time[order], price[order], volume[order])
    as_dt = trades_to_candles(time.astype("datetime64[ns]"), price, volume)
    for name in CANDLE_FIELDS:
        np.testing.assert_array_equal(shuffled[name], expected[name])
        np.testing.assert_array_equal(as_dt[name], expected[name])


def test_same_time_trades_keep_their_order() -> None:
    t = np.array([T0, T0, T0], np.int64)
    out = trades_to_candles(t, np.array([3.0, 1.0, 2.0]), np.ones(3))
    assert (out["open"][0], out["close"][0], out["low"][0], out["high"][0]) == (3.0, 2.0, 1.0, 3.0)


def test_last_minute_is_final_only_past_the_cursor() -> None:
    t = np.array([T0 + 1, T0 + 61 * 10**9, T0 + 62 * 10**9], np.int64)
    p, v = np.array([1.0, 2.0, 3.0]), np.ones(3)
    assert trades_to_candles(t, p, v)["final"].tolist() == [True, False]
    end = T0 + 2 * NS_PER_MINUTE
    assert trades_to_candles(t, p, v, cursor_ns=str(end - 1))["final"].tolist() == [True, False]
    assert trades_to_candles(t, p, v, cursor_ns=end)["final"].tolist() == [True, True]


def test_empty_input() -> None:
    out = trades_to_candles(np.empty(0, np.int64), np.empty(0), np.empty(0))
    assert all(out[name].size == 0 for name in (*CANDLE_FIELDS, "final"))


def test_bad_input_names_the_field() -> None:
    t = np.array([T0, T0 + 1], np.int64)
    with pytest.raises(ValueError, match="same length"):
        trades_to_candles(t, np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="price"):
        trades_to_candles(t, np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="time"):
        trades_to_candles(np.array(["a", "b"]), np.ones(2), np.ones(2))
