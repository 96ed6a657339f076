"""Candles: construction, pandas round trip, slicing and resampling without a database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botq import MarketDataError
from botq.market import Candles, synthetic
from botq.market.timeframes import NS_PER_MINUTE, timeframe_minutes


def test_pandas_round_trip_keeps_utc_times() -> None:
    candles = synthetic("BTC/USD", "2026-01-01", 500, seed=1)
    frame = candles.to_pandas()
    assert str(frame.index.tz) == "UTC" and frame.index.name == "time"
    assert list(frame.columns) == [
        "open", "high", "low", "close", "volume", "trades", "vwap", "complete",
    ]  # fmt: skip
    again = Candles.from_pandas(frame, "BTC/USD")
    np.testing.assert_array_equal(again.time, candles.time)
    np.testing.assert_array_equal(again["close"], candles.close)
    naive = frame.tz_convert(None)  # a naive index is taken as UTC
    np.testing.assert_array_equal(Candles.from_pandas(naive).time, candles.time)


def test_resample_matches_pandas_and_flags_the_forming_bucket() -> None:
    candles = synthetic("BTC/USD", "2026-01-01 00:00", 1440 + 90, seed=2)
    hourly = candles.resample("1h")
    ref = (
        candles.to_pandas()
        .resample("1h")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    )
    np.testing.assert_allclose(hourly.to_pandas()[ref.columns].to_numpy(), ref.to_numpy())
    assert hourly.complete[:-1].all() and not hourly.complete[-1]  # 01:00-02:00 has 30 minutes
    weights = candles.volume[-30:]
    assert hourly.vwap[-1] == pytest.approx(np.sum(candles.vwap[-30:] * weights) / weights.sum())
    until = candles.time[-1] + 31 * NS_PER_MINUTE
    assert candles.resample("1h", until_ns=until).complete.all()


def test_between_and_getitem() -> None:
    candles = synthetic("BTC/USD", "2026-01-01", 100)
    part = candles.between(candles.time[10], candles.time[20])
    assert len(part) == 10 and part.time[0] == candles.time[10]
    with pytest.raises(KeyError, match="not a candle column"):
        candles["price"]


def test_bad_input_is_explained() -> None:
    with pytest.raises(MarketDataError, match="strictly increasing"):
        Candles.from_arrays(
            "X",
            {
                "time": np.array([2, 1]),
                "open": [1, 1],
                "high": [1, 1],
                "low": [1, 1],
                "close": [1, 1],
                "volume": [1, 1],
            },
        )
    with pytest.raises(MarketDataError, match="columns missing: volume"):
        Candles.from_arrays("X", {"time": [1], "open": [1], "high": [1], "low": [1], "close": [1]})
    with pytest.raises(MarketDataError, match="DatetimeIndex"):
        Candles.from_pandas(pd.DataFrame({"open": [1.0]}))
    with pytest.raises(MarketDataError, match="timeframe '7m'"):
        timeframe_minutes("7m")
