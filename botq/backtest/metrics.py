"""Backtest metrics, from the statistics the engine accumulates while it runs.

The engine fills a `Stat` vector per run (sums of returns, drawdown, counts), so a sweep of
thousands of variants needs no equity arrays; `from_stats` turns a stack of those vectors into
metric columns with NumPy. `from_equity` recomputes the equity-based ones from a full equity
curve (the tests check that both agree).

Definitions (money in the quote currency, percentages of the starting capital unless said):

- final_value: cash plus holdings at the last close. final_result = final_value - capital
  (after fees); net_result = final_result + fees (what the same fills would have made without
  fees, before fees); both also in %.
- fees: every fee paid. realised_pnl: sum over sells of proceeds after fee minus the cost
  basis sold (buy fees included). pnl_at_last_trade: portfolio value right after the last fill
  minus capital, so it ignores price moves after the last trade.
- trades: fills (buys + sells); positions_opened; winning / losing: sells with realised PnL
  > 0 / <= 0; win_rate_pct = winning / sells; profit_factor = gross profit / gross loss.
- max_drawdown_pct: the largest fall of the equity (marked at every close) from its running
  peak, in % of that peak (max_drawdown: the same in money).
- sharpe and sortino: from the simple returns of the equity curve per candle, r_t =
  e_t / e_(t-1) - 1 with e_(-1) = capital (flat candles included), risk-free rate 0,
  annualised by sqrt(candles per year) where a year is 365.25 days of 24 h at the candle
  spacing (525,960 for 1-minute candles): sharpe = mean(r) / std(r, ddof=1) * sqrt(N),
  sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(N). Undefined (no variation, no
  downside) gives NaN (None in `run`'s dict).
- exposure_pct: share of candles at whose close at least one position was open.
- buy_and_hold_pct: last close / first close - 1 over the same candles, in %, without fees.
- rejected_orders: orders whose triggers held but that could not be carried out (no cash,
  more than the cash or the position, no price or no next candle; listed with their reason in
  verbose trades). max_positions_skips: open_long signals skipped because max_open_positions
  were open (the strategy's own rule, so not counted as rejected; listed in verbose trades).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from botq.backtest.enums import N_STATS, Stat

METRICS = (
    "final_value",
    "final_result",
    "final_result_pct",
    "net_result",
    "net_result_pct",
    "fees",
    "realised_pnl",
    "pnl_at_last_trade",
    "trades",
    "buys",
    "sells",
    "positions_opened",
    "winning",
    "losing",
    "win_rate_pct",
    "profit_factor",
    "max_drawdown_pct",
    "max_drawdown",
    "sharpe",
    "sortino",
    "exposure_pct",
    "buy_and_hold_pct",
    "rejected_orders",
    "max_positions_skips",
    "holdings",
    "bars",
)
COUNTS = frozenset(
    (
        "trades",
        "buys",
        "sells",
        "positions_opened",
        "winning",
        "losing",
        "rejected_orders",
        "max_positions_skips",
        "bars",
    )
)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def from_stats(
    stats: np.ndarray, *, capital: float, bars_per_year: float, buy_and_hold_pct: float
) -> dict[str, np.ndarray]:
    """Metric columns (one value per row of `stats`, shape (runs, N_STATS)), keyed by METRICS."""
    s = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    if s.shape[1] != N_STATS:
        raise ValueError(f"stats rows have {s.shape[1]} slots, expected {N_STATS}")
    final = s[:, Stat.FINAL_VALUE]
    fees = s[:, Stat.FEES]
    n = s[:, Stat.N_RET]
    mean = _div(s[:, Stat.RET_SUM], n)
    var = _div(s[:, Stat.RET_SQ] - n * mean * mean, n - 1)
    std = np.sqrt(np.maximum(var, 0.0))
    down = np.sqrt(_div(s[:, Stat.DOWN_SQ], n))
    scale = math.sqrt(bars_per_year) if bars_per_year > 0 else math.nan
    sharpe = _div(mean, np.where(std > 1e-300, std, 0.0)) * scale
    sortino = _div(mean, np.where(down > 1e-300, down, 0.0)) * scale
    sells = s[:, Stat.SELLS]
    out = {
        "final_value": final,
        "final_result": final - capital,
        "final_result_pct": (final - capital) / capital * 100.0,
        "net_result": final - capital + fees,
        "net_result_pct": (final - capital + fees) / capital * 100.0,
        "fees": fees,
        "realised_pnl": s[:, Stat.REALISED],
        "pnl_at_last_trade": s[:, Stat.LAST_FILL_VALUE] - capital,
        "trades": s[:, Stat.FILLS],
        "buys": s[:, Stat.BUYS],
        "sells": sells,
        "positions_opened": s[:, Stat.OPENED],
        "winning": s[:, Stat.WINNING],
        "losing": s[:, Stat.LOSING],
        "win_rate_pct": _div(s[:, Stat.WINNING], sells) * 100.0,
        "profit_factor": _div(s[:, Stat.GROSS_PROFIT], s[:, Stat.GROSS_LOSS]),
        "max_drawdown_pct": s[:, Stat.MAX_DD] * 100.0,
        "max_drawdown": s[:, Stat.MAX_DD_VALUE],
        "sharpe": sharpe,
        "sortino": sortino,
        "exposure_pct": _div(s[:, Stat.EXPOSED_BARS], n) * 100.0,
        "buy_and_hold_pct": np.full(s.shape[0], buy_and_hold_pct),
        "rejected_orders": s[:, Stat.REJECTED],
        "max_positions_skips": s[:, Stat.CAPPED],
        "holdings": s[:, Stat.HOLDINGS],
        "bars": n,
    }
    return out


def as_dict(columns: dict[str, np.ndarray], row: int = 0) -> dict[str, Any]:
    """One run's metrics as plain Python values (counts as int, undefined as None)."""
    out: dict[str, Any] = {}
    for k, col in columns.items():
        v = float(col[row])
        if k in COUNTS:
            out[k] = int(v)
        else:
            out[k] = v if math.isfinite(v) else None
    return out


def buy_and_hold_pct(close: np.ndarray) -> float:
    """Last valid close / first valid close - 1, in %."""
    first, last = (close[0], close[-1]) if close.size else (math.nan, math.nan)
    if not (first == first and last == last):  # a gap at either end: look for valid closes
        ok = np.flatnonzero(close == close)
        if ok.size == 0:
            return math.nan
        first, last = close[ok[0]], close[ok[-1]]
    return float(last / first - 1.0) * 100.0


def from_equity(
    equity: np.ndarray, *, capital: float, bars_per_year: float, held: np.ndarray | None = None
) -> dict[str, float]:
    """Max drawdown, Sharpe, Sortino (and exposure, given `held` per candle) from an equity
    curve with NumPy; the same definitions as `from_stats`."""
    e = np.asarray(equity, dtype=np.float64)
    prev = np.concatenate(([capital], e[:-1]))
    r = e / prev - 1.0
    peak = np.maximum.accumulate(np.concatenate(([capital], e)))[1:]
    dd = (peak - e) / peak
    std = float(r.std(ddof=1)) if r.size > 1 else math.nan
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) if r.size else math.nan
    scale = math.sqrt(bars_per_year)
    out = {
        "max_drawdown_pct": float(dd.max()) * 100.0 if dd.size else 0.0,
        "sharpe": float(r.mean()) / std * scale if std and std > 1e-300 else math.nan,
        "sortino": float(r.mean()) / down * scale if down and down > 1e-300 else math.nan,
    }
    if held is not None:
        out["exposure_pct"] = float(np.mean(held)) * 100.0
    return out
