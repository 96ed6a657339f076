"""Market data: candles in PostgreSQL, timeframes, the Kraken client, and offline sources.

candles = botq.market.synthetic("BTC/USD", "2026-01-01", 100_000, seed=1)
botq.market.write_candles(db, candles)
hourly = botq.market.load(db, "BTC/USD", start="2026-01-10", timeframe="1h")
hourly.to_pandas()
"""

from __future__ import annotations

from botq.market.candles import Candles
from botq.market.store import Coverage, coverage, last_candle_ns, load, write_candles
from botq.market.synthetic import synthetic
from botq.market.timeframes import TIMEFRAMES

__all__ = [
    "TIMEFRAMES",
    "Candles",
    "Coverage",
    "coverage",
    "last_candle_ns",
    "load",
    "synthetic",
    "write_candles",
]
