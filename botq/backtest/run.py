"""Run backtests from Python: `run` for one strategy, `run_many` for a sweep.

    result = run(strategy, candles, capital=1000, fee=0.001)
    result.metrics["final_result_pct"], result.trades, result.equity, print(result.summary())

    table = run_many(grid(template, {"fast": [5, 12], "slow": [26, 50]}), candles)

Both compile against one shared column set (each distinct indicator column computed once) and
call the numba engine (``botq.backtest.engine_nb``); `run_many` spreads the variants over
threads running the GIL-free kernel, one range of variants per call, and returns only a
metrics table unless asked for full results.
"""

from __future__ import annotations

import math
import os
import time as _time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from botq.backtest import metrics as M
from botq.backtest.compile import Columns, Compiled, Market, compile_all
from botq.backtest.engine_nb import run_batch_nb, simulate_nb
from botq.backtest.enums import N_STATS, TRADE_DTYPE, ActCol, ActionType, Reason
from botq.backtest.strategy import Strategy
from botq.errors import Problem, StrategyError
from botq.market.candles import utc_index

FILLS = ("close", "next_open")
_ACTION_NAMES = {int(a): a.name.lower() for a in ActionType}
_REASON_NAMES = {int(r): "" if r == Reason.FILLED else r.name.lower() for r in Reason}
_STATUS = ["filled", "skipped"]


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    """One backtest: metrics (dict), trades (DataFrame), equity (Series at every close)."""

    strategy: Strategy
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    records: np.ndarray = field(default_factory=lambda: np.empty(0, TRADE_DTYPE))
    # the trades DataFrame and the equity Series, or functions building them on first use: a
    # caller looking at metrics only should not pay for tens of thousands of rows, or for
    # writing and keeping 8 bytes per candle
    _trades: Any = field(default=None, repr=False)
    _equity: Any = field(default=None, repr=False)

    @property
    def trades(self) -> pd.DataFrame:
        """One row per fill (and, verbose, per order not carried out), oldest first."""
        if callable(self._trades):
            object.__setattr__(self, "_trades", self._trades())
        return self._trades

    @property
    def equity(self) -> pd.Series:
        """The portfolio value at every close. Built on first use by running the backtest again
        with the curve kept (about one run's time), from the same candles."""
        if callable(self._equity):
            object.__setattr__(self, "_equity", self._equity())
        return self._equity

    def summary(self) -> str:
        """A few readable lines: period, results, trades, risk, timings."""
        m = self.metrics
        cfg = self.config

        def num(v: Any, fmt: str = ",.2f") -> str:
            return "n/a" if v is None else format(v, fmt)

        def signed(v: Any, fmt: str = "+,.2f") -> str:
            return "n/a" if v is None else format(v, fmt)

        pair = f"{cfg.get('pair')}, " if cfg.get("pair") else ""
        start, end = (
            t.strftime("%Y-%m-%d %H:%M") if isinstance(t, pd.Timestamp) else str(t)
            for t in (cfg.get("start"), cfg.get("end"))
        )
        lines = [
            f"{self.strategy.name} — {pair}{start} → {end} "
            f"({m['bars']:,} candles, fill at {cfg.get('fill')}, fee {cfg.get('fee', 0):.2%})",
            f"capital {num(cfg.get('capital'))} → final value {num(m['final_value'])}",
            f"final result {signed(m['final_result'])} ({signed(m['final_result_pct'])}%) after "
            f"fees of {num(m['fees'])}; net result {signed(m['net_result'])} "
            f"({signed(m['net_result_pct'])}%) before fees",
            f"trades {m['trades']} ({m['buys']} buys, {m['sells']} sells, "
            f"{m['positions_opened']} positions): {m['winning']} winning, {m['losing']} losing, "
            f"win rate {num(m['win_rate_pct'], '.1f')}%",
            f"max drawdown {num(m['max_drawdown_pct'])}%  Sharpe {num(m['sharpe'])}  "
            f"Sortino {num(m['sortino'])}  exposure {num(m['exposure_pct'], '.1f')}%",
            f"buy and hold {signed(m['buy_and_hold_pct'])}%  rejected orders "
            f"{m['rejected_orders']}  max-position skips {m['max_positions_skips']}",
            f"engine {m['engine_ms']:.1f} ms (+ indicators {m['indicators_ms']:.1f} ms)",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"BacktestResult({self.strategy.name!r}, final_result_pct="
            f"{m['final_result_pct']:.2f}, trades={m['trades']})"
        )


def _strategy(s: Strategy | Mapping[str, Any] | str | Path) -> Strategy:
    if isinstance(s, Strategy):
        return s
    if isinstance(s, Mapping):
        return Strategy.from_dict(s)
    return Strategy.from_toml(s)


def _check_config(capital: float, fee: float, fill: str) -> None:
    problems = []
    if (
        isinstance(capital, bool)
        or not isinstance(capital, (int, float))
        or not (math.isfinite(capital) and capital > 0)
    ):
        problems.append(
            Problem("INVALID_VALUE", "capital", f"capital is a number > 0, got {capital!r}")
        )
    if isinstance(fee, bool) or not isinstance(fee, (int, float)) or not 0 <= fee < 1:
        problems.append(
            Problem(
                "INVALID_VALUE", "fee", f"fee is a fraction in [0, 1) (0.001 = 0.1%), got {fee!r}"
            )
        )
    if fill not in FILLS:
        problems.append(
            Problem("INVALID_VALUE", "fill", f"fill is 'close' or 'next_open', got {fill!r}")
        )
    if problems:
        raise StrategyError(problems)


def _simulate(
    c: Compiled,
    market: Market,
    matrix: np.ndarray,
    capital: float,
    fee: float,
    next_open: bool,
    verbose: bool,
    keep_equity: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Run the kernel once, again with room for every record if the first guess was short.
    Returns (records, equity (empty unless keep_equity), stats, engine ms)."""
    n = market.n
    # room for a fill every 8 candles (untouched pages cost nothing); more means a second run
    cap = max(4096, 2 * n) if verbose else max(1024, n // 8)
    stats = np.zeros(N_STATS)
    equity = np.empty(n if keep_equity else 0)
    while True:
        recs = np.empty(cap, TRADE_DTYPE)
        started = _time.perf_counter()
        k = simulate_nb(
            market.close,
            market.open,
            market.time,
            matrix,
            c.act_int,
            c.act_f,
            0,
            c.act_int.shape[0],
            c.trig_int,
            c.trig_f,
            c.stateful,
            0,
            c.stateful.shape[0],
            c.max_positions,
            float(capital),
            float(fee),
            next_open,
            verbose,
            recs,
            equity,
            stats,
        )
        engine_ms = (_time.perf_counter() - started) * 1000.0
        if k <= cap:
            return recs[:k], equity, stats, engine_ms
        cap = int(k)


def _trades_frame(recs: np.ndarray, c: Compiled, market: Market) -> pd.DataFrame:
    """The records as a DataFrame; text columns are categoricals (cheap for long logs)."""
    ticks = recs["tick"]
    actions = recs["action"]
    reasons = recs["reason"]
    times = utc_index(market.time[ticks], name=None)
    types = c.act_int[:, ActCol.TYPE]
    labels = list(dict.fromkeys(c.labels))
    label_code = np.array([labels.index(lb) for lb in c.labels], dtype=np.int64)
    return pd.DataFrame(
        {
            "tick": ticks,
            "time": times,
            "action": pd.Categorical.from_codes(types[actions], list(_ACTION_NAMES.values())),
            "action_index": actions,
            "position": recs["position"],
            "price": recs["price"],
            "amount_quote": recs["quote"],
            "amount_base": recs["qty"],
            "fee": recs["fee"],
            "trigger": pd.Categorical.from_codes(label_code[actions], labels),
            "portfolio_value": recs["value"],
            "cash": recs["cash"],
            "realised_pnl": recs["pnl"],
            "status": pd.Categorical.from_codes((reasons != 0).astype(np.int8), _STATUS),
            "reason": pd.Categorical.from_codes(reasons, list(_REASON_NAMES.values())),
        }
    )


def _equity_series(
    strategy: Strategy, market: Market, capital: float, fee: float, fill: str, verbose: bool
) -> pd.Series:
    """The run's equity curve, from a second run of the same backtest that keeps it."""
    compiled, columns = compile_all([strategy], market)
    try:
        _, equity, _, _ = _simulate(
            compiled[0], market, columns.build(), capital, fee, fill == "next_open", verbose, True
        )
    finally:
        columns.release()
    return pd.Series(equity, index=market.index(), name="equity", copy=False)


def _result(
    c: Compiled,
    market: Market,
    columns: Columns,
    capital: float,
    fee: float,
    fill: str,
    verbose: bool,
) -> BacktestResult:
    matrix = columns.build()
    recs, _, stats, engine_ms = _simulate(
        c, market, matrix, capital, fee, fill == "next_open", verbose
    )
    cols = M.from_stats(
        stats,
        capital=capital,
        bars_per_year=market.bars_per_year,
        buy_and_hold_pct=M.buy_and_hold_pct(market.close),
    )
    metrics = M.as_dict(cols)
    metrics["engine_ms"] = engine_ms
    metrics["indicators_ms"] = columns.indicators_ms
    # from the int64 times: boxing an element of the tz-aware index costs ~0.1 ms each
    start, end = (pd.Timestamp(int(market.time[j]), tz="UTC") for j in (0, -1))
    config = {
        "capital": float(capital),
        "fee": float(fee),
        "fill": fill,
        "verbose": verbose,
        "pair": market.pair,
        "timeframe": market.candles.timeframe,
        "start": start,
        "end": end,
    }
    return BacktestResult(
        strategy=c.strategy,
        metrics=metrics,
        _trades=lambda: _trades_frame(recs, c, market),
        _equity=lambda: _equity_series(c.strategy, market, capital, fee, fill, verbose),
        config=config,
        records=recs,
    )


def run(
    strategy: Strategy | Mapping[str, Any] | str | Path,
    candles: Any,
    *,
    capital: float = 1000.0,
    fee: float = 0.001,
    fill: str = "close",
    verbose: bool = False,
) -> BacktestResult:
    """Backtest one strategy on candles (Candles, or an OHLCV DataFrame with a UTC index).

    strategy: a Strategy, or a dict / TOML text / .toml path to load one. fill: "close" (at
    the close of the candle whose close fired the triggers) or "next_open" (at the next
    candle's open). verbose: also list, in `trades`, every order that could not be carried out
    and why (they are always counted in metrics["rejected_orders"]).
    """
    _check_config(capital, fee, fill)
    s = _strategy(strategy)
    market = Market.of(candles)
    compiled, columns = compile_all([s], market)
    try:
        return _result(compiled[0], market, columns, capital, fee, fill, verbose)
    finally:
        columns.release()


@overload
def run_many(
    strategies: Sequence[Strategy],
    candles: Any,
    *,
    capital: float = ...,
    fee: float = ...,
    fill: str = ...,
    workers: int | None = ...,
    details: Literal[False] = ...,
) -> pd.DataFrame: ...


@overload
def run_many(
    strategies: Sequence[Strategy],
    candles: Any,
    *,
    capital: float = ...,
    fee: float = ...,
    fill: str = ...,
    workers: int | None = ...,
    details: Literal[True],
) -> list[BacktestResult]: ...


def run_many(
    strategies: Sequence[Strategy],
    candles: Any,
    *,
    capital: float = 1000.0,
    fee: float = 0.001,
    fill: str = "close",
    workers: int | None = None,
    details: bool = False,
) -> pd.DataFrame | list[BacktestResult]:
    """Backtest many strategies on the same candles; one metrics row per strategy, in order.

    Each distinct indicator column is computed once for all. The variants run in `workers`
    threads (default: every core) over the GIL-free kernel. The table has a `name` column and
    the metrics of `botq.backtest.metrics`; ``table.attrs`` holds engine_ms, indicators_ms
    and runs_per_s. details=True returns a full BacktestResult per strategy instead (trades
    and equity built for each).
    """
    _check_config(capital, fee, fill)
    strategies = [_strategy(s) for s in strategies]
    market = Market.of(candles)
    compiled, columns = compile_all(strategies, market)
    try:
        if details:
            return [_result(c, market, columns, capital, fee, fill, False) for c in compiled]
        return _sweep(compiled, market, columns, capital, fee, fill, workers)
    finally:
        columns.release()


def _sweep(
    compiled: list[Compiled],
    market: Market,
    columns: Columns,
    capital: float,
    fee: float,
    fill: str,
    workers: int | None,
) -> pd.DataFrame:
    """The metrics table of a sweep: the variants' tables concatenated, run in threads."""
    matrix = columns.build()
    n_var = len(compiled)
    stats = np.zeros((n_var, N_STATS))
    if n_var:
        act_int = np.concatenate([c.act_int for c in compiled])
        act_f = np.concatenate([c.act_f for c in compiled])
        trig_int = np.concatenate([c.trig_int for c in compiled])
        trig_f = np.concatenate([c.trig_f for c in compiled])
        n_trig = np.cumsum([0] + [c.trig_int.shape[0] for c in compiled])
        n_acts = np.cumsum([0] + [c.act_int.shape[0] for c in compiled])
        for v, _c in enumerate(compiled):
            act_int[n_acts[v] : n_acts[v + 1], 3] += n_trig[v]
        stateful = np.concatenate([c.stateful + n_trig[v] for v, c in enumerate(compiled)]).astype(
            np.int64
        )
        v_state = np.cumsum([0] + [c.stateful.shape[0] for c in compiled]).astype(np.int64)
        v_act = n_acts.astype(np.int64)
        v_maxpos = np.array([c.max_positions for c in compiled], dtype=np.int64)
        recs = np.empty(0, TRADE_DTYPE)
        equity = np.empty(0)
        args = (
            market.close, market.open, market.time, matrix, act_int, act_f, v_act, trig_int,
            trig_f, stateful, v_state, v_maxpos, float(capital), float(fee),
            fill == "next_open", recs, equity, stats,
        )  # fmt: skip
        nthreads = max(1, min(workers or os.cpu_count() or 1, n_var))
        started = _time.perf_counter()
        if nthreads == 1:
            run_batch_nb(0, n_var, *args)
        else:
            step = max(1, math.ceil(n_var / (nthreads * 4)))
            with ThreadPoolExecutor(nthreads, thread_name_prefix="botq-bt") as pool:
                futures = [
                    pool.submit(run_batch_nb, lo, min(lo + step, n_var), *args)
                    for lo in range(0, n_var, step)
                ]
                for f in futures:
                    f.result()
        engine_ms = (_time.perf_counter() - started) * 1000.0
    else:
        engine_ms = 0.0
    cols = M.from_stats(
        stats,
        capital=capital,
        bars_per_year=market.bars_per_year,
        buy_and_hold_pct=M.buy_and_hold_pct(market.close),
    )
    table = pd.DataFrame({"name": [c.strategy.name for c in compiled], **cols})
    for k in M.COUNTS:
        table[k] = table[k].astype(np.int64)
    table.attrs.update(
        engine_ms=engine_ms,
        indicators_ms=columns.indicators_ms,
        runs_per_s=n_var / (engine_ms / 1000.0) if engine_ms > 0 else math.nan,
    )
    return table
