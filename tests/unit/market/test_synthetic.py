"""Synthetic candles: deterministic, internally consistent, with volatility clustering."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from botq.market.synthetic import synthetic
from botq.market.trades_nb import CANDLE_FIELDS, NS_PER_MINUTE

START = "2024-01-01T00:00:00Z"
START_NS = 1_704_067_200 * 1_000_000_000


@pytest.fixture(scope="module")
def candles() -> dict[str, np.ndarray]:
    return synthetic("BTC/USD", START, 50_000, seed=42).arrays()


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).sum() / (x * x).sum())


def test_shape_dtypes_and_time_axis(candles: dict[str, np.ndarray]) -> None:
    assert list(candles) == list(CANDLE_FIELDS)
    assert all(a.shape == (50_000,) for a in candles.values())
    assert candles["time"].dtype == np.int64 and candles["trades"].dtype == np.int64
    assert candles["time"][0] == START_NS
    assert (np.diff(candles["time"]) == NS_PER_MINUTE).all()
    assert 20_000 < candles["open"][0] < 40_000  # a plausible BTC level by default


def test_deterministic_per_seed_and_pair(candles: dict[str, np.ndarray]) -> None:
    again = synthetic("BTC/USD", START, 50_000, seed=42)
    for name in CANDLE_FIELDS:
        np.testing.assert_array_equal(again[name], candles[name])
    other_seed = synthetic("BTC/USD", START, 1000, seed=43)
    other_pair = synthetic("ETH/USD", START, 1000, seed=42, price=30_000.0)
    assert not np.array_equal(other_seed["close"], candles["close"][:1000])
    assert not np.array_equal(other_pair["close"], candles["close"][:1000])
    # a prefix is the same series: asking for more candles only extends it
    np.testing.assert_array_equal(
        synthetic("BTC/USD", START, 1000, seed=42)["close"], candles["close"][:1000]
    )


def test_ohlc_invariants(candles: dict[str, np.ndarray]) -> None:
    o, h, lo, c = candles["open"], candles["high"], candles["low"], candles["close"]
    v, vw, n = candles["volume"], candles["vwap"], candles["trades"]
    assert np.isfinite(np.stack([o, h, lo, c, v, vw])).all()
    assert (lo > 0).all()
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    assert ((lo <= vw) & (vw <= h)).all()
    assert (v > 0).all() and (n >= 1).all()
    np.testing.assert_array_equal(o[1:], c[:-1])  # continuous: each open is the previous close


def test_volatility_clustering_and_realism(candles: dict[str, np.ndarray]) -> None:
    r = np.diff(np.log(candles["close"]))
    a = np.abs(r)
    assert all(_acf(a, lag) > 0.1 for lag in (1, 5, 20))  # |returns| cluster
    assert abs(_acf(r, 1)) < 0.05  # returns themselves are close to unpredictable
    assert np.corrcoef(a, candles["volume"][1:])[0, 1] > 0.3  # busy when volatile
    annual = r.std() * np.sqrt(525_600)
    assert 0.3 < annual < 0.8  # vol=0.6 by default (part of it sits in the slow trend)
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 4  # fat tails


def test_parameters() -> None:
    up = synthetic("XYZ/USD", START, 20_000, seed=1, price=10.0, drift=50.0, vol=0.2)
    assert up["open"][0] == 10.0
    assert up["close"][-1] > 3 * up["open"][0]  # +1.9 in log over 20k minutes
    flat = synthetic("XYZ/USD", START, 100, seed=1, price=5.0, vol=0.0)
    assert np.allclose(flat["close"], 5.0) and (flat["volume"] > 0).all()


def test_start_forms() -> None:
    aware = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    for start in (
        aware,
        datetime(2024, 1, 1),
        "2024-01-01",
        np.datetime64("2024-01-01T00:00:30"),
        START_NS + 59 * 10**9,
    ):
        assert synthetic("BTC/USD", start, 3)["time"][0] == START_NS  # UTC, floored to minute


def test_empty_and_bad_arguments() -> None:
    empty = synthetic("BTC/USD", START, 0)
    assert len(empty) == 0 and all(a.size == 0 for a in empty.arrays().values())
    with pytest.raises(ValueError, match="periods"):
        synthetic("BTC/USD", START, -1)
    with pytest.raises(ValueError, match="nanoseconds"):
        synthetic("BTC/USD", 1_704_067_200, 10)
    with pytest.raises(ValueError, match="ISO"):
        synthetic("BTC/USD", "yesterday", 10)
    with pytest.raises(ValueError, match="price"):
        synthetic("BTC/USD", START, 10, price=-1.0)
    with pytest.raises(ValueError, match="vol"):
        synthetic("BTC/USD", START, 10, vol=float("nan"))
    with pytest.raises(ValueError, match="seed"):
        synthetic("BTC/USD", START, 10, seed=-1)
    with pytest.raises(ValueError, match="pair"):
        synthetic("", START, 10)
