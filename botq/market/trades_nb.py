"""Build 1-minute OHLCV candles from individual trades (one numba pass over sorted arrays).

Kraken's OHLC endpoint only keeps the latest 720 candles, so deep history is rebuilt from the
Trades endpoint: bucket = floor(time / 60 s) (UTC), open = first price, close = last, high/low =
max/min, volume = sum, vwap = sum(price * volume) / sum(volume), trades = count. Minutes with no
trades produce no row: botq never fabricates candles. Only the last minute can still be open;
the wrapper flags it unless the trade cursor is past its end.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from botq.market.candles import FIELDS as CANDLE_FIELDS
from botq.market.timeframes import NS_PER_MINUTE

__all__ = ["CANDLE_FIELDS", "NS_PER_MINUTE", "trades_to_candles", "trades_to_minutes_kernel"]


def _minute_index(t):  # pragma: no cover - replaced by the numba overload below
    raise NotImplementedError


@overload(_minute_index, jit_options={"nogil": True})
def _minute_index_impl(t):
    """Minute number since the epoch, for int64 nanoseconds or float seconds."""
    if isinstance(t, types.Integer):
        return lambda t: t // NS_PER_MINUTE
    if isinstance(t, types.Float):
        return lambda t: np.int64(np.floor(t / 60.0))
    return None


@njit(cache=True, nogil=True, inline="always")
def _vwap(pv, vol, close, low, high):
    """sum(p*v)/sum(v), clamped into [low, high] against rounding; close if no volume."""
    if vol <= 0.0:
        return close
    return min(high, max(low, pv / vol))


@njit(cache=True, nogil=True)
def trades_to_minutes_kernel(time, price, volume):
    """Aggregate trades sorted by time into minute candles.

    `time` is int64 epoch-ns or float64 epoch seconds. Returns (time_ns, open, high, low,
    close, volume, trades, vwap) arrays, one row per minute that has at least one trade.
    """
    n = time.size
    t_out = np.empty(n, np.int64)
    o = np.empty(n)
    h = np.empty(n)
    lo = np.empty(n)
    c = np.empty(n)
    v = np.empty(n)
    cnt = np.empty(n, np.int64)
    vw = np.empty(n)
    k = -1
    cur = np.int64(0)
    pv = 0.0
    for i in range(n):
        m = _minute_index(time[i])
        p = price[i]
        q = volume[i]
        if k < 0 or m != cur:
            if k >= 0:
                vw[k] = _vwap(pv, v[k], c[k], lo[k], h[k])
            k += 1
            cur = m
            t_out[k] = m * NS_PER_MINUTE
            o[k] = p
            h[k] = p
            lo[k] = p
            v[k] = 0.0
            cnt[k] = 0
            pv = 0.0
        if p > h[k]:
            h[k] = p
        if p < lo[k]:
            lo[k] = p
        c[k] = p
        v[k] += q
        pv += p * q
        cnt[k] += 1
    if k >= 0:
        vw[k] = _vwap(pv, v[k], c[k], lo[k], h[k])
    m_out = k + 1
    return (
        t_out[:m_out].copy(),
        o[:m_out].copy(),
        h[:m_out].copy(),
        lo[:m_out].copy(),
        c[:m_out].copy(),
        v[:m_out].copy(),
        cnt[:m_out].copy(),
        vw[:m_out].copy(),
    )


def trades_to_candles(
    time: np.ndarray,
    price: np.ndarray,
    volume: np.ndarray,
    *,
    cursor_ns: int | str | None = None,
) -> dict[str, np.ndarray]:
    """1-minute candles from trades, as botq candle arrays plus a ``final`` bool array.

    `time`: int64 epoch-ns, float epoch seconds or datetime64. Unsorted input is sorted
    (stably, so same-time trades keep their order). Every minute but the last is final (a
    later trade exists); the last one is final only if `cursor_ns` (e.g. Kraken's Trades
    ``last``) is at or past its end. A minute whose volume is 0 gets vwap = close.
    """
    t = np.asarray(time)
    p = np.ascontiguousarray(price, dtype=np.float64)
    q = np.ascontiguousarray(volume, dtype=np.float64)
    if t.ndim != 1 or p.shape != t.shape or q.shape != t.shape:
        raise ValueError(
            f"time, price and volume must be 1-D and the same length, got shapes "
            f"{t.shape}, {p.shape}, {q.shape}"
        )
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[ns]").view(np.int64)
    elif np.issubdtype(t.dtype, np.integer):
        t = t.astype(np.int64, copy=False)
    elif np.issubdtype(t.dtype, np.floating):
        t = t.astype(np.float64, copy=False)
        if not np.isfinite(t).all():
            raise ValueError("time has NaN or infinite values: drop those trades first")
    else:
        raise ValueError(f"time must be int64 ns, float seconds or datetime64, not {t.dtype}")
    for name, arr in (("price", p), ("volume", q)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} has NaN or infinite values: drop those trades first")
    if t.size > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        t, p, q = t[order], p[order], q[order]
    arrays = trades_to_minutes_kernel(np.ascontiguousarray(t), p, q)
    out = dict(zip(CANDLE_FIELDS, arrays, strict=True))
    final = np.ones(out["time"].size, dtype=bool)
    if final.size:
        final[-1] = cursor_ns is not None and int(cursor_ns) >= out["time"][-1] + NS_PER_MINUTE
    out["final"] = final
    return out
