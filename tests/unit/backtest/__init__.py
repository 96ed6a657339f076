"""Helpers for the backtest tests: tiny hand-made candle series and strategy builders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from botq.backtest import Strategy
from botq.market.candles import Candles

T0 = np.datetime64("2026-01-01T00:00", "ns").astype(np.int64)
MINUTE = 60_000_000_000


def candles(
    closes: Sequence[float],
    opens: Sequence[float] | None = None,
    *,
    minutes: int = 1,
    start_ns: int = int(T0),
    pair: str = "BTC/USD",
) -> Candles:
    """Candles with the given closes (opens default to the previous close), `minutes` apart."""
    c = np.asarray(closes, dtype=np.float64)
    if opens is None:
        o = np.concatenate(([c[0]], c[:-1])) if len(c) else c
    else:
        o = np.asarray(opens, dtype=np.float64)
    t = start_ns + np.arange(len(c), dtype=np.int64) * minutes * MINUTE
    tf = {1: "1m", 5: "5m", 15: "15m", 60: "1h", 240: "4h", 1440: "1d"}[minutes]
    arrays = {
        "time": t,
        "open": o,
        "high": np.maximum(o, c),
        "low": np.minimum(o, c),
        "close": c,
        "volume": np.ones(len(c)),
    }
    return Candles.from_arrays(pair, arrays, timeframe=tf)


def trig(type_: str = "technical", **fields: Any) -> dict[str, Any]:
    """A trigger dict."""
    return {"type": type_, **fields}


def price(op: str, level: float, **extra: Any) -> dict[str, Any]:
    """Technical trigger on the close: price <op> level."""
    return trig("technical", indicator="price", operator=op, target=level, **extra)


def action(type_: str, amount: str, *triggers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An action dict."""
    return {"type": type_, "amount": amount, "triggers": list(triggers), **extra}


def strategy(*actions: dict[str, Any], name: str = "test", **meta: Any) -> Strategy:
    """A Strategy from action dicts."""
    return Strategy.from_dict({"meta": {"name": name, **meta}, "actions": list(actions)})
