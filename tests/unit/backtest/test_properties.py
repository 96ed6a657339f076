"""Random strategies keep the books straight: no negative cash, no selling more than held,
equity = cash + holdings x price at every close, metrics consistent with the trades."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from botq.backtest import Strategy, run, run_many
from botq.backtest import metrics as M
from botq.market.synthetic import synthetic
from tests.unit.backtest import action, strategy, trig

N_BARS = 3000
CAPITAL = 1000.0


def _pct(rng: np.random.Generator, lo: float, hi: float, sign: str = "") -> str:
    return f"{sign}{rng.uniform(lo, hi):.2f}%"


def _timeframe(rng: np.random.Generator) -> dict[str, Any]:
    tf = rng.choice(["", "", "5m", "15m", "1h"])
    return {"timeframe": str(tf)} if tf else {}


def _market_trigger(rng: np.random.Generator) -> dict[str, Any]:
    k = rng.integers(5)
    if k == 0:
        ind = str(rng.choice(["sma_10", "ema_20", "bb_lower", "price", "ema_5"]))
        tgt: Any = str(rng.choice(["sma_30", "ema_50", "bb_upper", "price"]))
        op = str(rng.choice([">", "<", "cross_above", "cross_below"]))
        return trig(indicator=ind, operator=op, target=tgt, **_timeframe(rng))
    if k == 1:
        return trig(indicator="rsi_14", operator=str(rng.choice(["<", ">"])),
                    target=float(rng.uniform(20, 80)), **_timeframe(rng))  # fmt: skip
    if k == 2:
        sign = str(rng.choice(["-", "+"]))
        return trig(
            "price_change", value=_pct(rng, 0.05, 0.5, sign), lookback=int(rng.integers(1, 30))
        )
    if k == 3:
        return trig("next_candle", timeframe=str(rng.choice(["1m", "5m", "15m", "1h"])))
    return trig("consecutive_candles", value=f"{rng.integers(1, 4)}_{rng.choice(['red', 'green'])}",
                **_timeframe(rng))  # fmt: skip


def _position_trigger(rng: np.random.Generator) -> dict[str, Any]:
    k = rng.integers(4)
    if k == 0:
        return trig("pos_price_change", value=_pct(rng, 0.05, 1.0, str(rng.choice(["-", "+"]))))
    if k == 1:
        if rng.random() < 0.5:
            return trig("pos_price_change_follow", value=_pct(rng, 0.1, 0.6, "+"),
                        tolerance=_pct(rng, 0.02, 0.2, "-"))  # fmt: skip
        return trig("pos_price_change_follow", value=_pct(rng, 0.1, 0.6, "-"),
                    tolerance=_pct(rng, 0.02, 0.2))  # fmt: skip
    if k == 2:
        return trig("trailing_stop", value=_pct(rng, 0.05, 0.8, "-"), **_timeframe(rng))
    return trig("time_in_position", value=f"{rng.integers(5, 300)}m")


def _amount(rng: np.random.Generator, selling: bool) -> str:
    k = rng.integers(3)
    if k == 0:
        return f"{rng.uniform(1, 100):.1f}%"
    if k == 1:
        return f"{rng.uniform(5, 700 if not selling else 400):.2f} USD"
    return f"{rng.uniform(0.0005, 0.03):.4f} BTC"


def random_strategy(rng: np.random.Generator, i: int) -> Strategy:
    actions = []
    for j in range(int(rng.integers(2, 6))):
        kind = "open_long" if j == 0 else str(rng.choice(["open_long", "buy", "sell", "sell"]))
        triggers = []
        for _ in range(int(rng.integers(1, 3))):
            t = (
                _market_trigger(rng)
                if kind == "open_long" or rng.random() < 0.4
                else (_position_trigger(rng))
            )
            if rng.random() < 0.3:
                t["max_count"] = int(rng.integers(1, 4))
            triggers.append(t)
        extra = {"average_price": True} if kind != "sell" and rng.random() < 0.5 else {}
        actions.append(action(kind, _amount(rng, kind == "sell"), *triggers, **extra))
    meta: dict[str, Any] = {}
    if rng.random() < 0.8:
        meta["max_open_positions"] = int(rng.integers(1, 5))
    return strategy(*actions, name=f"random {i}", **meta)


def check_books(result: Any, close: np.ndarray) -> None:
    t = result.trades
    assert (t.status == "filled").all()
    buys = t.action != "sell"
    qty = t.amount_base.to_numpy()
    cost = np.where(buys, t.amount_quote + t.fee, -(t.amount_quote - t.fee))
    cash = CAPITAL - np.cumsum(cost)
    scale = CAPITAL * 1e-9
    assert (t.cash >= -scale).all(), "negative cash"
    np.testing.assert_allclose(t.cash, cash, rtol=1e-9, atol=scale)
    # never sell more than the position holds; a position closes when nothing is left
    held: dict[int, float] = {}
    most: dict[int, float] = {}
    n_open = np.zeros(len(t), np.int64)
    for j, (pos, is_buy, q) in enumerate(zip(t.position, buys, qty, strict=True)):
        if is_buy:
            held[pos] = held.get(pos, 0.0) + q
            most[pos] = max(most.get(pos, 0.0), held[pos])
        else:
            assert pos in held and q <= held[pos] * (1 + 1e-12), "sold more than held"
            left = held[pos] - q
            assert left >= -1e-12 * held[pos]
            if left <= max(held[pos] * 1e-12, most[pos] * 1e-9):  # the engine's dust rule
                del held[pos]
            else:
                held[pos] = left
        n_open[j] = len(held)
    # equity = cash + holdings x close at every candle (fills happen at or before that close)
    holdings = np.cumsum(np.where(buys, qty, -qty))
    ticks = t.tick.to_numpy()
    # index 0 of these is "before the first fill"
    last = np.searchsorted(ticks, np.arange(close.shape[0]), side="right")
    cash_at = np.concatenate(([CAPITAL], cash))[last]
    hold_at = np.concatenate(([0.0], holdings))[last]
    np.testing.assert_allclose(result.equity, cash_at + hold_at * close, rtol=1e-9, atol=scale)
    m = result.metrics
    assert m["trades"] == len(t) and m["sells"] == int((~buys).sum())
    assert m["fees"] == pytest.approx(float(t.fee.sum()), rel=1e-9, abs=1e-12)
    assert m["realised_pnl"] == pytest.approx(float(t.realised_pnl.sum()), rel=1e-9, abs=1e-9)
    assert m["final_value"] == pytest.approx(float(result.equity.iloc[-1]), rel=1e-12)
    open_at = np.concatenate(([0], n_open))[last]
    ref = M.from_equity(result.equity.to_numpy(), capital=CAPITAL, bars_per_year=525_960.0,
                        held=open_at > 0)  # fmt: skip
    assert m["max_drawdown_pct"] == pytest.approx(ref["max_drawdown_pct"], rel=1e-9, abs=1e-12)
    assert m["exposure_pct"] == pytest.approx(ref["exposure_pct"], rel=1e-12)
    for k in ("sharpe", "sortino"):
        if m[k] is None:
            assert not np.isfinite(ref[k]) or abs(ref[k]) < 1e-6
        else:
            assert m[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9)


def test_random_strategies_keep_the_books() -> None:
    c = synthetic("BTC/USD", "2026-01-01", N_BARS, seed=11)
    close = c.close
    rng = np.random.default_rng(20260101)
    strategies = [random_strategy(rng, i) for i in range(40)]
    traded = 0
    for fill in ("close", "next_open"):
        results = [run(s, c, capital=CAPITAL, fee=0.001, fill=fill) for s in strategies]
        for r in results:
            check_books(r, close)
            traded += r.metrics["trades"] > 0
        # the sweep runs the same kernel: the same numbers
        table = run_many(strategies, c, capital=CAPITAL, fee=0.001, fill=fill)
        for r, (_, row) in zip(results, table.iterrows(), strict=True):
            assert row["name"] == r.strategy.name
            assert row["final_value"] == r.metrics["final_value"]
            assert row["trades"] == r.metrics["trades"]
            assert row["rejected_orders"] == r.metrics["rejected_orders"]
    assert traded >= 30  # most random strategies do trade


def test_verbose_lists_exactly_the_counted_rejections() -> None:
    c = synthetic("BTC/USD", "2026-01-01", 1500, seed=5)
    rng = np.random.default_rng(7)
    for i in range(15):
        s = random_strategy(rng, i)
        quiet = run(s, c)
        loud = run(s, c, verbose=True)
        skipped = loud.trades[loud.trades.status == "skipped"]
        capped = int((skipped.reason == "max_positions").sum())
        assert len(skipped) - capped == quiet.metrics["rejected_orders"]
        assert capped == quiet.metrics["max_positions_skips"]
        filled = loud.trades[loud.trades.status == "filled"].reset_index(drop=True)
        assert filled.equals(quiet.trades)
