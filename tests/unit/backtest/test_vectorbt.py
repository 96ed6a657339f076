"""Agreement with vectorbt's Portfolio.from_signals on an EMA crossover (test-only dependency)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from botq.backtest import run
from botq.indicators import compute
from botq.market.synthetic import synthetic
from tests.unit.backtest import action, strategy, trig

with warnings.catch_warnings():  # vectorbt warns about its own dependencies on import
    warnings.simplefilter("ignore")
    import vectorbt as vbt


def test_ema_crossover_matches_vectorbt() -> None:
    c = synthetic("BTC/USD", "2026-01-01", 30_000, seed=4)
    s = strategy(
        action("open_long", "100%", trig(indicator="ema_12", operator="cross_above",
                                          target="ema_26")),
        action("sell", "100%", trig(indicator="ema_12", operator="cross_below",
                                    target="ema_26")),
        max_open_positions=1,
    )  # fmt: skip
    ours = run(s, c, capital=1000.0, fee=0.001)

    ind = compute(c, ["ema_12", "ema_26"])
    fast, slow = ind["ema_12"].to_numpy(), ind["ema_26"].to_numpy()
    entries = np.zeros(len(fast), bool)
    exits = np.zeros(len(fast), bool)
    entries[1:] = (fast[:-1] <= slow[:-1]) & (fast[1:] > slow[1:])
    exits[1:] = (fast[:-1] >= slow[:-1]) & (fast[1:] < slow[1:])
    close = c.to_pandas()["close"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, init_cash=1000.0, fees=0.001, size=np.inf,
            direction="longonly", accumulate=False, freq="1min",
        )  # fmt: skip
        orders = pf.orders.values
        final = float(pf.final_value())
        value = pf.value().to_numpy()

    t = ours.trades
    assert len(t) == len(orders) > 20
    np.testing.assert_array_equal(t.tick.to_numpy(), orders["idx"])
    np.testing.assert_array_equal(t.price.to_numpy(), orders["price"])
    np.testing.assert_allclose(t.amount_base.to_numpy(), orders["size"], rtol=1e-9)
    np.testing.assert_allclose(t.fee.to_numpy(), orders["fees"], rtol=1e-9)
    assert list(t.action) == ["open_long" if side == 0 else "sell" for side in orders["side"]]
    assert ours.metrics["final_value"] == pytest.approx(final, rel=1e-9)
    np.testing.assert_allclose(ours.equity.to_numpy(), value, rtol=1e-9)
