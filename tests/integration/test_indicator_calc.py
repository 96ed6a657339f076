"""IndicatorCalc through the queue: computes on stored candles, stores whole days, fails clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import botq
from botq import MarketDataError
from botq.db.database import Database
from botq.indicators import compute
from botq.indicators.store import load_series, stored
from botq.market import load, synthetic, write_candles


def test_indicator_calc_stores_series_equal_to_compute(db: Database) -> None:
    write_candles(db, synthetic("BTC/USD", "2026-01-01", 3 * 1440, seed=11))
    names = ["rsi_14", "ema_20", "bb_upper_20_2.5", "hurst_100"]
    good = db.queue.enqueue(
        "IndicatorCalc", {"pair": "BTC/USD", "indicators": names, "start": "2026-01-01T06:00:00Z"}
    )
    hourly = db.queue.enqueue(
        "IndicatorCalc", {"pair": "BTC/USD", "timeframe": "1h", "indicators": ["sma_5"]}
    )
    bad = db.queue.enqueue("IndicatorCalc", {"pair": "BTC/USD", "indicators": ["rsi_999", "foo"]})
    no_candles = db.queue.enqueue("IndicatorCalc", {"pair": "DOGE/USD", "indicators": ["ema_5"]})
    with botq.Worker(db, schedule=False, poll_interval=0.2):
        tasks = {i: db.queue.wait(i, timeout=120) for i in (good, hourly, bad, no_candles)}
    task = tasks[good]
    assert task.status == "completed", task.error
    assert task.result["rows"] == 3 * 1440  # the run widened to whole days: from midnight
    assert task.result["first"] == "2026-01-01T00:00:00+00:00"
    assert task.result["nan_values"]["rsi_14"] == 14 and task.result["nan_values"]["ema_20"] == 19
    expected = compute(load(db, "BTC/USD"), names)
    for name in names:
        series = load_series(db, "BTC/USD", name)
        np.testing.assert_array_equal(series.to_numpy(), expected[name].to_numpy())
        assert str(series.index.tz) == "UTC"
    window = load_series(db, "BTC/USD", "rsi_14", start="2026-01-02 10:00", end="2026-01-02 11:00")
    assert len(window) == 60 and window.index[0] == pd.Timestamp("2026-01-02 10:00", tz="UTC")
    assert list(stored(db, "BTC/USD")["name"]) == sorted(names)

    assert tasks[hourly].status == "completed" and tasks[hourly].result["rows"] == 72
    assert len(load_series(db, "BTC/USD", "sma_5", timeframe="1h")) == 72

    failed = tasks[bad]
    assert failed.status == "failed" and failed.attempts == 1  # a bad name is not retried
    assert "INVALID_PERIOD" in failed.error and "rsi_999" in failed.error
    assert "INVALID_INDICATOR" in failed.error and "foo" in failed.error
    assert tasks[no_candles].status == "failed" and tasks[no_candles].attempts == 1
    assert "no candles stored for 'DOGE/USD'" in tasks[no_candles].error
    with pytest.raises(MarketDataError, match="IndicatorCalc"):
        load_series(db, "BTC/USD", "ema_99")
