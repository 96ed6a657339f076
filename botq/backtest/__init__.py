"""Backtests: the strategy model, its validation, templates and grids, and the numba engine.

    from botq.backtest import Strategy, run, run_many, grid, Template
    s = Strategy.from_toml("ema_cross.toml")
    result = run(s, candles, capital=1000, fee=0.001)      # fill="next_open" to be cautious
    print(result.summary()); result.trades; result.equity
    table = run_many(grid(Template("template.toml"), {"fast": [5, 12], "slow": [26, 50]}), candles)

Trigger semantics are documented in ``botq.backtest.strategy``, metric definitions in
``botq.backtest.metrics``.
"""

from __future__ import annotations

from botq.backtest.compile import Market
from botq.backtest.enums import TRADE_DTYPE, Reason
from botq.backtest.run import BacktestResult, run, run_many
from botq.backtest.strategy import Action, Strategy, Trigger
from botq.backtest.templates import Template, ema_cross, grid
from botq.backtest.validate import validate

__all__ = [
    "TRADE_DTYPE",
    "Action",
    "BacktestResult",
    "Market",
    "Reason",
    "Strategy",
    "Template",
    "Trigger",
    "ema_cross",
    "grid",
    "run",
    "run_many",
    "validate",
]
