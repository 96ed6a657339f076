"""Hand-worked engine scenarios on tiny candle series, one per trigger kind and feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botq.backtest import metrics as M
from botq.backtest import run
from botq.errors import StrategyError
from tests.unit.backtest import T0, action, candles, price, strategy, trig


def fills(result) -> list[tuple[int, str, int, float]]:
    """(tick, action, position, price) of every fill."""
    t = result.trades
    t = t[t.status == "filled"]
    return list(zip(t.tick, t.action, t.position, t.price, strict=True))


def test_fees_are_taken_at_every_fill_exactly() -> None:
    s = strategy(
        action("open_long", "100%", price("<", 105)),
        action("sell", "100%", price(">", 105)),
    )
    r = run(s, candles([100.0, 110.0]), capital=1000.0, fee=0.001)
    qty = 1000.0 / (100.0 * (1 + 0.001))
    proceeds = qty * 110.0 * (1 - 0.001)
    buy_fee = 1000.0 - qty * 100.0
    sell_fee = qty * 110.0 * 0.001
    t = r.trades
    assert list(t.action) == ["open_long", "sell"]
    assert t.amount_base[0] == qty and t.cash[0] == 0.0  # the all-in buy spends exactly the cash
    assert t.fee[0] == pytest.approx(buy_fee, rel=1e-12)
    assert t.amount_quote[1] == qty * 110.0 and t.fee[1] == pytest.approx(sell_fee, rel=1e-12)
    m = r.metrics
    assert m["final_value"] == pytest.approx(proceeds, rel=1e-12)
    assert m["fees"] == pytest.approx(buy_fee + sell_fee, rel=1e-12)
    assert m["final_result"] == pytest.approx(proceeds - 1000.0, rel=1e-12)
    assert m["net_result"] == pytest.approx(proceeds - 1000.0 + buy_fee + sell_fee, rel=1e-12)
    assert m["net_result"] == pytest.approx(qty * 10.0, rel=1e-12)  # the same fills, no fees
    assert t.realised_pnl[1] == pytest.approx(proceeds - 1000.0, rel=1e-12)
    assert m["pnl_at_last_trade"] == pytest.approx(proceeds - 1000.0, rel=1e-12)
    assert (m["trades"], m["winning"], m["losing"], m["win_rate_pct"]) == (2, 1, 0, 100.0)
    assert r.equity.iloc[0] == pytest.approx(qty * 100.0) and r.equity.iloc[1] == m["final_value"]


def test_fixed_quote_and_base_amounts() -> None:
    s = strategy(
        action("open_long", "100 USD", price("<", 101)),
        action("open_long", "0.5 BTC", price("<", 101)),
        max_open_positions=2,
    )
    r = run(s, candles([100.0]), capital=1000.0, fee=0.01)
    t = r.trades
    assert t.amount_base[0] == pytest.approx(100.0 / (100.0 * 1.01))  # spends 100 fee included
    assert t.cash[0] == pytest.approx(900.0)
    assert t.amount_base[1] == 0.5
    assert t.cash[1] == pytest.approx(900.0 - 0.5 * 100.0 * 1.01)
    assert list(t.position) == [1, 2]


def test_dca_ladder_with_average_price() -> None:
    closes = [100.0, 99.0, 97.0, 95.0, 93.0, 96.0, 100.0]
    s = strategy(
        action("open_long", "100 USDC", price("<", 101, max_count=1)),
        action(
            "buy",
            "100 USDC",
            trig("pos_price_change", value="-2%", max_count=1),
            average_price=True,
        ),
        action(
            "buy",
            "200 USDC",
            trig("pos_price_change", value="-5%", max_count=1),
            average_price=True,
        ),
        action("sell", "100%", trig("pos_price_change", value="+1%")),
        max_open_positions=1,
    )
    r = run(s, candles(closes), capital=1000.0, fee=0.0)
    q = [1.0, 100.0 / 97.0, 200.0 / 93.0]
    total = sum(q)
    assert fills(r) == [
        (0, "open_long", 1, 100.0),  # ref 100
        (2, "buy", 1, 97.0),  # -3% <= -2%; ref -> average 200 / (1 + 100/97) = 98.48
        (4, "buy", 1, 93.0),  # 95 is -3.5% from 98.48, 93 is -5.6%; ref -> 400 / total = 95.66
        (6, "sell", 1, 100.0),  # 96 is +0.35%, 100 is +4.5% >= +1%
    ]
    assert r.trades.amount_base.iloc[-1] == pytest.approx(total)
    assert r.trades.realised_pnl.iloc[-1] == pytest.approx(100.0 * total - 400.0)
    assert r.metrics["final_value"] == pytest.approx(600.0 + 100.0 * total)


def test_dca_without_average_price_keeps_the_first_entry() -> None:
    closes = [100.0, 97.0, 99.0, 100.5, 101.5]
    s = strategy(
        action("open_long", "100 USDC", price("<", 101, max_count=1)),
        action("buy", "100 USDC", trig("pos_price_change", value="-2%", max_count=1)),
        action("sell", "100%", trig("pos_price_change", value="+1%")),
    )
    r = run(s, candles(closes), fee=0.0)
    # the reference stays 100: 100.5 is only +0.5%, 101.5 is +1.5% (with averaging, the
    # reference would be 98.48 and 99 would already sell)
    assert [f[:2] for f in fills(r)] == [(0, "open_long"), (1, "buy"), (4, "sell")]


def test_partial_sells_and_position_close() -> None:
    s = strategy(
        action("open_long", "100%", price("<", 101, max_count=1)),
        action("sell", "50%", trig("pos_price_change", value="+4%", max_count=1)),
        action("sell", "100%", trig("pos_price_change", value="+15%")),
    )
    r = run(s, candles([100.0, 105.0, 111.0, 120.0]), fee=0.0)
    assert fills(r) == [(0, "open_long", 1, 100.0), (1, "sell", 1, 105.0), (3, "sell", 1, 120.0)]
    t = r.trades
    assert list(t.amount_base) == [10.0, 5.0, 5.0]
    assert list(t.realised_pnl) == [0.0, 25.0, 100.0]  # basis sold pro rata: 500 each
    assert r.metrics["final_value"] == 1125.0
    assert r.metrics["holdings"] == 0.0
    assert r.metrics["exposure_pct"] == pytest.approx(75.0)  # held at the close of 3 of 4


def test_max_count_resets_when_a_position_opens() -> None:
    closes = [99.0, 99.0, 99.0, 99.0, 111.0, 99.0, 99.0, 99.0, 99.0]
    s = strategy(
        action("open_long", "100 USDC", price("<", 100)),
        action("buy", "10 USDC", trig("next_candle", max_count=2)),
        action("sell", "100%", price(">", 110)),
        max_open_positions=1,
    )
    r = run(s, candles(closes), fee=0.0, verbose=True)
    assert [f[:3] for f in fills(r)] == [
        (0, "open_long", 1),
        (1, "buy", 1),
        (2, "buy", 1),
        (4, "sell", 1),
        (5, "open_long", 2),
        (6, "buy", 2),
        (7, "buy", 2),
    ]
    skipped = r.trades[r.trades.status == "skipped"]
    assert list(skipped.tick) == [1, 2, 3, 6, 7, 8]
    assert set(skipped.reason) == {"max_positions"}
    assert r.metrics["max_positions_skips"] == 6 and r.metrics["rejected_orders"] == 0


def test_open_long_max_count_runs_over_the_whole_backtest() -> None:
    s = strategy(
        action("open_long", "10 USDC", price("<", 100, max_count=2)),
        action("sell", "100%", trig("next_candle")),
    )
    r = run(s, candles([99.0] * 8), fee=0.0)
    # actions go in the order written: candle 1 opens position 2, then sells position 1
    assert [f[:3] for f in fills(r)] == [
        (0, "open_long", 1),
        (1, "open_long", 2),
        (1, "sell", 1),
        (2, "sell", 2),
    ]


def test_trailing_stop_and_its_restart_after_a_partial_sell() -> None:
    closes = [100.0, 104.0, 110.0, 108.0, 107.0, 106.5, 106.0, 103.0]
    s = strategy(
        action("open_long", "100%", price("<", 101, max_count=1)),
        action("sell", "50%", trig("trailing_stop", value="-3%")),
    )
    r = run(s, candles(closes), fee=0.0)
    # peak 110: 107 is -2.7%, 106.5 is -3.2% -> sell; the peak restarts at 106.5: 103 is -3.3%
    assert fills(r) == [(0, "open_long", 1, 100.0), (5, "sell", 1, 106.5), (7, "sell", 1, 103.0)]
    assert list(r.trades.amount_base) == [10.0, 5.0, 2.5]


def test_trailing_stop_on_an_hourly_cadence() -> None:
    # 1-minute candles; the stop looks only at hourly closes (minutes 59, 119, ...)
    closes = np.full(180, 100.0)
    closes[30] = 50.0  # a dip inside the first hour: ignored
    closes[60:] = 110.0
    closes[119] = 110.0
    closes[120:] = 104.0  # -5.5% from the hourly peak 110; seen at the close of minute 179
    s = strategy(
        action("open_long", "100%", price("<", 101, max_count=1)),
        action("sell", "100%", trig("trailing_stop", value="-3%", timeframe="1h")),
    )
    r = run(s, candles(closes), fee=0.0)
    assert fills(r) == [(0, "open_long", 1, 100.0), (179, "sell", 1, 104.0)]


def test_follow_trails_after_activation() -> None:
    closes = [100.0, 102.0, 104.0, 106.0, 105.5, 104.9, 104.0]
    s = strategy(
        action("open_long", "100%", price("<", 101, max_count=1)),
        action("sell", "100%", trig("pos_price_change_follow", value="+3%", tolerance="-1%")),
    )
    r = run(s, candles(closes), fee=0.0)
    # active from 104 (+4%); peak 106; fires once close <= 106 * 0.99 = 104.94
    assert fills(r)[-1] == (5, "sell", 1, 104.9)


def test_follow_for_a_dip_buy() -> None:
    closes = [100.0, 95.0, 89.0, 88.0, 88.5, 88.9, 90.0]
    s = strategy(
        action("open_long", "100 USD", price("<", 101, max_count=1)),
        action("buy", "100 USD", trig("pos_price_change_follow", value="-10%", tolerance="1%")),
    )
    r = run(s, candles(closes), fee=0.0)
    # active at 89 (-11%); trough 88; fires once close >= 88 * 1.01 = 88.88 -> 88.9
    assert [f[:2] for f in fills(r)] == [(0, "open_long"), (5, "buy")]


def test_next_candle_on_4h() -> None:
    closes = np.full(600, 100.0)  # 10 hours of 1-minute candles from 00:00
    s = strategy(
        action("open_long", "100 USD", price(">", 0, max_count=1)),
        action("buy", "10 USD", trig("next_candle", timeframe="4h")),
    )
    r = run(s, candles(closes), fee=0.0)
    buys = r.trades[r.trades.action == "buy"]
    assert list(buys.tick) == [239, 479]  # the 03:59 and 07:59 candles close the 4h candles
    assert list(buys.time.dt.strftime("%H:%M")) == ["03:59", "07:59"]


def test_next_candle_on_hourly_candles_always_holds() -> None:
    s = strategy(
        action("open_long", "10 USD", trig("next_candle", timeframe="1h", max_count=3)),
    )
    r = run(s, candles([100.0] * 5, minutes=60), fee=0.0)
    assert list(r.trades.tick) == [0, 1, 2]


def test_higher_timeframe_indicator_has_no_look_ahead() -> None:
    closes = np.concatenate([np.full(60, 100.0), np.full(60, 101.0), np.full(60, 101.0)])
    s = strategy(action("open_long", "100%", price(">", 100.5, timeframe="1h", max_count=1)))
    r = run(s, candles(closes), fee=0.0)
    # the 1-minute close is above 100.5 from minute 60, the hourly close only once the
    # 01:00-02:00 candle has closed, at the close of minute 119
    assert fills(r) == [(119, "open_long", 1, 101.0)]


def test_time_in_position() -> None:
    s = strategy(
        action("open_long", "100%", price(">", 0, max_count=1)),
        action("sell", "100%", trig("time_in_position", value="90m")),
    )
    r = run(s, candles(np.full(200, 100.0)), fee=0.0)
    assert [f[:2] for f in fills(r)] == [(0, "open_long"), (90, "sell")]
    r = run(s, candles(np.full(200, 100.0)), fee=0.0, fill="next_open")
    # opened at the open of candle 1 (00:01); 90 minutes later is candle 91, filled at 92
    assert [f[:2] for f in fills(r)] == [(1, "open_long"), (92, "sell")]


def test_time_in_position_numeric_minutes_and_days() -> None:
    s = strategy(
        action("open_long", "100%", price(">", 0, max_count=1)),
        action("sell", "100%", trig("time_in_position", value=120)),
    )
    assert [f[0] for f in fills(run(s, candles(np.full(300, 1.0))))] == [0, 120]
    s = strategy(
        action("open_long", "100%", price(">", 0, max_count=1)),
        action("sell", "100%", trig("time_in_position", value="1d")),
    )
    assert [f[0] for f in fills(run(s, candles(np.full(30, 1.0), minutes=60)))] == [0, 24]


def test_price_change_window_and_cap() -> None:
    closes = [100.0] * 6 + [96.0, 94.0, 85.0, 94.0]
    for extra in ({"timeframe": "5m"}, {"lookback": 5}):
        s = strategy(
            action("open_long", "10 USD", trig("price_change", value="-5%", **extra)),
            max_open_positions=1,
        )
        # candle 6 is -4% vs candle 1; candle 7 is -6% vs candle 2
        assert [f[0] for f in fills(run(s, candles(closes), fee=0.0))] == [7]
    s = strategy(
        action(
            "open_long", "10 USD", trig("price_change", value="-5%", lookback=5, max_value="-10%")
        ),
    )
    # candle 8 is -15% (beyond the cap), candle 9 is -6% vs candle 4
    assert [f[0] for f in fills(run(s, candles(closes), fee=0.0))] == [7, 9]


def test_consecutive_candles_base_and_5m() -> None:
    opens = [100, 101, 102, 101, 100, 99, 98]
    closes = [101, 102, 101, 100, 99, 98, 99]  # candles 2, 3, 4, 5 red
    s = strategy(action("open_long", "10 USD", trig("consecutive_candles", value="3_red")))
    assert [f[0] for f in fills(run(s, candles(closes, opens), fee=0.0))] == [4, 5]
    s = strategy(action("open_long", "10 USD", trig("consecutive_candles", value="2_green")))
    assert [f[0] for f in fills(run(s, candles(closes, opens), fee=0.0))] == [1]
    # three red 5-minute candles, known once the third one closes (minute 14)
    c = 100.0 - np.arange(20, dtype=float) * 0.1
    s = strategy(
        action("open_long", "10 USD", trig("consecutive_candles", value="3_red", timeframe="5m")),
        max_open_positions=1,
    )
    assert [f[0] for f in fills(run(s, candles(c), fee=0.0))] == [14]


def test_cross_above_and_below() -> None:
    closes = [10.0, 9.0, 11.0, 12.0, 9.0, 8.0, 12.0]
    s = strategy(
        action("open_long", "100%", price("cross_above", 10)),
        action("sell", "100%", price("cross_below", 10)),
    )
    assert [f[:2] for f in fills(run(s, candles(closes), fee=0.0))] == [
        (2, "open_long"),
        (4, "sell"),
        (6, "open_long"),
    ]


def test_equal_operator() -> None:
    s = strategy(action("open_long", "10 USD", price("=", 100.0)))
    assert [f[0] for f in fills(run(s, candles([99.0, 100.0, 100.0 + 1e-12, 101.0])))] == [1, 2]


def test_multi_position_each_managed_on_its_own_entry() -> None:
    s = strategy(
        action("open_long", "100 USD", price("<", 100)),
        action("sell", "100%", trig("pos_price_change", value="+5%")),
        max_open_positions=2,
    )
    r = run(s, candles([99.0, 90.0, 97.0, 120.0]), fee=0.0, verbose=True)
    assert fills(r) == [
        (0, "open_long", 1, 99.0),
        (1, "open_long", 2, 90.0),
        (2, "sell", 2, 97.0),  # +7.8% from 90; position 1 is -2% from 99
        (3, "sell", 1, 120.0),
    ]
    skipped = r.trades[r.trades.status == "skipped"]
    assert list(zip(skipped.tick, skipped.reason, strict=True)) == [(2, "max_positions")]


def test_one_sell_action_closes_every_position() -> None:
    s = strategy(
        action("open_long", "100 USD", price("<", 100)),
        action("sell", "100%", price(">", 110)),
        max_open_positions=3,
    )
    r = run(s, candles([99.0, 98.0, 97.0, 96.0, 111.0]), fee=0.0)
    assert fills(r)[-3:] == [
        (4, "sell", 1, 111.0),
        (4, "sell", 2, 111.0),
        (4, "sell", 3, 111.0),
    ]
    assert r.metrics["max_positions_skips"] == 1


def test_next_open_fill() -> None:
    s = strategy(
        action("open_long", "100%", price("<", 105)),
        action("sell", "100%", price(">", 105)),
    )
    c = candles([100.0, 110.0, 110.0, 100.0], opens=[99.0, 101.0, 111.0, 112.0])
    r = run(s, c, capital=1000.0, fee=0.001, fill="next_open", verbose=True)
    qty = 1000.0 / (101.0 * 1.001)
    assert fills(r) == [(1, "open_long", 1, 101.0), (2, "sell", 1, 111.0)]
    assert r.metrics["final_value"] == pytest.approx(qty * 111.0 * 0.999, rel=1e-12)
    # equity at the close of candle 0 is still all cash; the last signal has no next candle
    assert r.equity.iloc[0] == 1000.0
    assert r.equity.iloc[1] == pytest.approx(qty * 110.0)
    skipped = r.trades[r.trades.status == "skipped"]
    assert list(zip(skipped.tick, skipped.reason, strict=True)) == [(3, "no_next_bar")]
    assert r.metrics["rejected_orders"] == 1


def test_next_open_orders_are_checked_again_when_they_fill() -> None:
    s = strategy(
        action("open_long", "100 USD", price("<", 100, max_count=1)),
        action("sell", "100%", price(">", 100)),
        action("sell", "50%", price(">", 100)),
    )
    c = candles([99.0, 101.0, 101.0, 101.0])
    r = run(s, c, fee=0.0, fill="next_open", verbose=True)
    t = r.trades
    # both sells are decided on candle 1's close; the first closes the position at the next
    # open, so the second finds it gone
    assert list(zip(t.tick, t.action, t.status, t.reason, strict=True)) == [
        (1, "open_long", "filled", ""),
        (2, "sell", "filled", ""),
        (2, "sell", "skipped", "position_closed"),
    ]


def test_impossible_orders_are_reported_never_dropped() -> None:
    s = strategy(
        action("open_long", "2000 USD", price("<", 100, max_count=1)),
        action("open_long", "100%", price("<", 100, max_count=1)),
        action("buy", "10 USD", trig("next_candle", max_count=1)),
        action("sell", "50 BTC", trig("next_candle", max_count=1)),
        action("sell", "100%", price(">", 100)),
        max_open_positions=3,
    )
    r = run(s, candles([50.0, 50.0, 150.0]), capital=1000.0, fee=0.0, verbose=True)
    t = r.trades
    rows = list(zip(t.tick, t.action_index, t.status, t.reason, strict=True))
    assert rows == [
        (0, 0, "skipped", "insufficient_cash"),
        (0, 1, "filled", ""),
        (1, 0, "skipped", "no_cash"),
        (1, 2, "skipped", "no_cash"),
        (1, 3, "skipped", "exceeds_position"),
        (2, 2, "skipped", "no_cash"),  # 150 is not < 100: action 0 does not fire
        (2, 3, "skipped", "exceeds_position"),
        (2, 4, "filled", ""),
    ]
    assert r.metrics["rejected_orders"] == 6
    quiet = run(s, candles([50.0, 50.0, 150.0]), capital=1000.0, fee=0.0)
    assert list(quiet.trades.status) == ["filled", "filled"]
    assert quiet.metrics["rejected_orders"] == 6


def test_missing_closes_are_skipped_and_marked_at_the_last_price() -> None:
    s = strategy(action("open_long", "100%", price("<", 200, max_count=1)))
    r = run(s, candles([100.0, np.nan, 120.0]), fee=0.0)
    assert list(r.equity) == [1000.0, 1000.0, 1200.0]


def test_dataframe_input_and_result_shape() -> None:
    s = strategy(
        action("open_long", "100%", price("<", 105)),
        action("sell", "100%", price(">", 105)),
        name="df",
    )
    frame = candles([100.0, 110.0, 100.0, 110.0]).to_pandas()[
        ["open", "high", "low", "close", "volume"]
    ]
    r = run(s, frame, fee=0.0)
    assert r.metrics["trades"] == 4 and r.metrics["final_value"] == pytest.approx(1210.0)
    assert isinstance(r.equity.index, pd.DatetimeIndex) and str(r.equity.index.tz) == "UTC"
    assert r.equity.index[0] == pd.Timestamp(int(T0), tz="UTC")
    assert list(r.trades.columns) == [
        "tick", "time", "action", "action_index", "position", "price", "amount_quote",
        "amount_base", "fee", "trigger", "portfolio_value", "cash", "realised_pnl", "status",
        "reason",
    ]  # fmt: skip
    assert r.trades.trigger[0] == "price < 105"
    text = r.summary()
    assert "df" in text and "final result +210.00 (+21.00%)" in text and "win rate 100.0%" in text
    assert r.metrics["buy_and_hold_pct"] == pytest.approx(10.0)
    assert r.metrics["bars"] == 4 and r.config["fill"] == "close"


def test_strategy_text_and_dict_are_accepted_by_run() -> None:
    s = strategy(action("open_long", "100%", price("<", 105)))
    c = candles([100.0, 110.0])
    assert run(s.to_toml(), c).metrics["final_value"] == run(s, c).metrics["final_value"]
    assert run(s.to_dict(), c).metrics["trades"] == 1


def test_compile_time_problems_carry_trigger_paths() -> None:
    s = strategy(
        action("open_long", "100 EUR", price(">", 1, timeframe="5m")),
        action("sell", "1 ETH", trig("next_candle", timeframe="15m")),
    )
    with pytest.raises(StrategyError) as err:
        run(s, candles([1.0] * 10, minutes=15))
    assert {(p.code, p.path) for p in err.value.problems} == {
        ("INVALID_AMOUNT_CURRENCY", "actions[0].amount"),
        ("INVALID_TIMEFRAME", "actions[0].triggers[0].timeframe"),
        ("INVALID_AMOUNT_CURRENCY", "actions[1].amount"),
    }
    with pytest.raises(StrategyError) as err:
        run(s, candles([1.0]), capital=-1, fee=2, fill="open")
    assert {p.path for p in err.value.problems} == {"capital", "fee", "fill"}


def test_indicator_input_missing_is_reported_on_the_trigger() -> None:
    c = candles([1.0, 2.0, 3.0])
    c.volume[:] = np.nan
    s = strategy(action("open_long", "10%", trig(indicator="obv", operator=">", target=0)))
    with pytest.raises(StrategyError) as err:
        run(s, c)
    assert [(p.code, p.path) for p in err.value.problems] == [
        ("MISSING_INPUT", "actions[0].triggers[0].indicator")
    ]


def test_candle_spacing_sets_annualisation() -> None:
    s = strategy(
        action("open_long", "100%", price("<", 101)),
        action("sell", "100%", price(">", 101)),
    )
    closes = [100.0, 102.0, 100.0, 103.0, 99.0, 104.0]
    a = run(s, candles(closes), fee=0.0).metrics
    b = run(s, candles(closes, minutes=60), fee=0.0).metrics
    assert b["sharpe"] == pytest.approx(a["sharpe"] / np.sqrt(60.0))
    assert a["final_value"] == b["final_value"]


def test_next_open_without_an_open_price_is_rejected() -> None:
    s = strategy(action("open_long", "100%", price("<", 105, max_count=1)))
    c = candles([100.0, 110.0, 120.0], opens=[100.0, np.nan, 110.0])
    r = run(s, c, fill="next_open", verbose=True)
    t = r.trades
    assert list(zip(t.tick, t.status, t.reason, strict=True)) == [(1, "skipped", "no_price")]
    assert r.metrics["rejected_orders"] == 1 and r.metrics["trades"] == 0
    assert list(r.equity) == [1000.0, 1000.0, 1000.0]


def test_market_trigger_masks_match_a_numpy_reference() -> None:
    """Every comparison operator, on columns with gaps, across block boundaries, with pairs
    shared between triggers (their comparison codes are computed once per block)."""
    from botq.backtest.compile import Market, compile_all
    from botq.backtest.engine_nb import _BLOCK, _code_sources_nb, _masks_nb

    rng = np.random.default_rng(3)
    n = 2 * _BLOCK + 301
    closes = 100.0 + np.cumsum(rng.normal(0.0, 0.5, n))
    closes[rng.choice(n, 60, replace=False)] = np.nan
    closes[_BLOCK - 1 : _BLOCK + 1] = 100.0  # an equality on a block boundary
    ops = ["<", ">", "cross_above", "cross_below"]
    acts = [action("open_long", "1 USD", trig(indicator="price", operator=op, target="sma_3"))
            for op in ops]  # fmt: skip
    acts += [action("sell", "1%", trig(indicator="price", operator=op, target=100.0)) for op in ops]
    acts.append(
        action(
            "buy",
            "1 USD",
            trig(indicator="price", operator="cross_above", target="sma_3"),
            trig(indicator="price", operator=">", target=99.0),
        )
    )
    acts.append(action("buy", "1 USD", trig(indicator="price", operator="=", target=100.0)))
    market = Market.of(candles(list(closes)))
    (c,), columns = compile_all([strategy(*acts, max_open_positions=3)], market)
    matrix = columns.build()
    x = matrix[c.trig_int[0, 2]]
    sma = matrix[c.trig_int[0, 3]]
    with np.errstate(invalid="ignore"):

        def cross(a: np.ndarray, b: np.ndarray, up: bool) -> np.ndarray:
            was = a[:-1] <= b[:-1] if up else a[:-1] >= b[:-1]
            now = a[1:] > b[1:] if up else a[1:] < b[1:]
            return np.concatenate(([False], was & now))

        def ref(b: np.ndarray) -> list[np.ndarray]:
            return [x < b, x > b, cross(x, b, True), cross(x, b, False)]

        level = np.full(n, 100.0)
        expected = ref(sma) + ref(level)
        expected.append(cross(x, sma, True) & (x > 99.0))
        expected.append(np.abs(x - 100.0) <= 1e-9 * 100.0)
    n_act = c.act_int.shape[0]
    n_trig = c.trig_int.shape[0]
    src = _code_sources_nb(c.trig_int, c.trig_f, 0, n_trig)
    # the second group reuses its first trigger's codes, the buy's crossing the first pair's
    assert list(src) == [0, 0, 0, 0, 4, 4, 4, 4, 0, 9, 10]
    mask = np.empty((n_act, _BLOCK), np.bool_)
    codes = np.empty((n_trig, _BLOCK + 1), np.uint8)
    got = np.empty((n_act, n), np.bool_)
    for i0 in range(0, n, _BLOCK):
        m = min(_BLOCK, n - i0)
        _masks_nb(matrix, c.act_int, c.trig_int, c.trig_f, 0, n_act, i0, m, mask, codes, src, 0)
        got[:, i0 : i0 + m] = mask[:, :m]
    for a in range(n_act):
        np.testing.assert_array_equal(got[a], expected[a], err_msg=f"action {a}")


def test_open_signals_while_fully_invested_are_counted_in_bulk() -> None:
    """While the book is full the walk skips ahead to the next buy/sell signal and counts the
    open_long signals in between as refused, exactly as candle by candle (verbose mode)."""
    closes = [100.0, 99.0, 98.0, 0.0, np.nan, 96.0, 101.0, 102.0, 99.5]
    s = strategy(
        action("open_long", "100%", price("<", 100)),
        action("open_long", "10 USD", price("<", 100, max_count=1)),
        action("sell", "100%", price(">", 100.5)),
        max_open_positions=1,
    )
    quiet = run(s, candles(closes), fee=0.0)
    loud = run(s, candles(closes), fee=0.0, verbose=True)
    # ticks 1 (the second open), 2, 5 for both opens and 8 for the second: refused; the zero
    # close at tick 3 is a rejected order for each; the NaN at tick 4 no signal at all
    assert quiet.metrics["max_positions_skips"] == 6
    assert quiet.metrics["rejected_orders"] == 2
    skipped = loud.trades[loud.trades.status == "skipped"]
    assert sorted(skipped.tick[skipped.reason == "max_positions"]) == [1, 2, 2, 5, 5, 8]
    assert sorted(skipped.tick[skipped.reason == "no_price"]) == [3, 3]
    assert [f[:2] for f in fills(quiet)] == [(1, "open_long"), (6, "sell"), (8, "open_long")]


def test_long_held_spans_with_and_without_a_missing_close_agree() -> None:
    """A long held span takes the vectorised return sums; one with a missing close goes
    candle by candle (marked at the last price). Filling the gap with that price must give
    the same books: the two paths agree."""
    rng = np.random.default_rng(9)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 400)))
    closes[0] = 90.0
    gappy = closes.copy()
    gappy[[150, 151, 300]] = np.nan
    filled = pd.Series(gappy).ffill().to_numpy()
    s = strategy(action("open_long", "100%", price("<", 95)), max_open_positions=1)
    a = run(s, candles(list(gappy)))
    b = run(s, candles(list(filled)))
    np.testing.assert_array_equal(a.equity.to_numpy(), b.equity.to_numpy())
    for k in ("final_value", "max_drawdown_pct", "sharpe", "sortino", "exposure_pct"):
        assert a.metrics[k] == pytest.approx(b.metrics[k], rel=1e-12), k
    assert b.metrics["max_drawdown_pct"] > 0 and b.metrics["trades"] == 1


@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_equity_is_built_on_first_use_and_matches_the_run(fill: str) -> None:
    """The engine keeps no curve for a run whose equity nobody reads; reading it runs the
    backtest again with the curve kept, which must give the run's own numbers."""
    rng = np.random.default_rng(4)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, 300)))
    s = strategy(
        action("open_long", "50%", price("<", 100)),
        action("sell", "100%", trig(type="pos_price_change", value="+3%")),
        max_open_positions=2,
    )
    r = run(s, candles(list(closes)), fill=fill)
    assert callable(r._equity)
    eq = r.equity
    assert r.equity is eq and len(eq) == 300
    assert eq.iloc[-1] == r.metrics["final_value"] and r.metrics["trades"] > 2
    ref = M.from_equity(eq.to_numpy(), capital=1000.0, bars_per_year=525_960.0)
    for k in ("max_drawdown_pct", "sharpe", "sortino"):
        assert r.metrics[k] == pytest.approx(ref[k], rel=1e-9), k


@pytest.mark.parametrize("max_positions", [1, 3])
@pytest.mark.parametrize("n", [4100, 5000])
def test_signals_on_word_and_block_edges_are_all_seen(max_positions: int, n: int) -> None:
    """The walk skips quiet candles 64 at a time and works in blocks of 2,048: signals on the
    first and last candle of a word, of a block and of the series all fill where they fire."""
    ticks = [0, 63, 64, 127, 128, 2046, 2047, 2048, 2049, 4095, 4096, n - 1]
    closes = np.full(n, 10.0)
    closes[ticks[0::2]] = 11.0  # open_long fires
    closes[ticks[1::2]] = 9.0  # sell fires
    s = strategy(
        action("open_long", "50%", price(">", 10)),
        action("sell", "100%", price("<", 10)),
        max_open_positions=max_positions,
    )
    got = [f[:2] for f in fills(run(s, candles(closes), fee=0.0))]
    assert got == [(t, "open_long" if k % 2 == 0 else "sell") for k, t in enumerate(ticks)]
