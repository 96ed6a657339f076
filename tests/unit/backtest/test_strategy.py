"""The strategy model: TOML / dict / Python loading, round trips, validation, templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from botq.backtest import Action, Strategy, Template, Trigger, grid, validate
from botq.errors import StrategyError

FULL = """
[meta]
name = "BTC DCA"
description = "RSI entry, DCA ladder, trailing exit"
max_open_positions = 3

[[actions]]
type = "open_long"
amount = "100 USDC"

  [[actions.triggers]]
  indicator = "rsi_14"
  operator = "<"
  target = "30"
  timeframe = "1h"

  [[actions.triggers]]
  type = "next_candle"
  timeframe = "15m"

[[actions]]
type = "buy"
amount = "50%"
average_price = true

  [[actions.triggers]]
  type = "pos_price_change"
  value = "-2%"
  max_count = 1

[[actions]]
type = "buy"
amount = "0.01 BTC"

  [[actions.triggers]]
  type = "pos_price_change_follow"
  value = "-10%"
  tolerance = "+1%"

[[actions]]
type = "sell"
amount = "50%"

  [[actions.triggers]]
  type = "trailing_stop"
  value = "-3%"

  [[actions.triggers]]
  type = "time_in_position"
  value = "24h"

[[actions]]
type = "open_long"
amount = "20 USD"

  [[actions.triggers]]
  type = "price_change"
  value = "-5%"
  timeframe = "1h"
  lookback = 4
  max_value = "-15%"

  [[actions.triggers]]
  type = "consecutive_candles"
  value = "3_red"
  timeframe = "5m"

  [[actions.triggers]]
  indicator = "ema_12"
  operator = "cross_above"
  target = "ema_26"
"""


def test_toml_loads_every_trigger_kind() -> None:
    s = Strategy.from_toml(FULL)
    assert s.name == "BTC DCA" and s.max_open_positions == 3
    assert [a.type for a in s.actions] == ["open_long", "buy", "buy", "sell", "open_long"]
    rsi = s.actions[0].triggers[0]
    assert (rsi.type, rsi.indicator, rsi.operator, rsi.target, rsi.timeframe) == (
        "technical",
        "rsi_14",
        "<",
        30.0,
        "1h",
    )
    assert s.actions[1].average_price is True
    kinds = {t.type for a in s.actions for t in a.triggers}
    assert kinds == {
        "technical",
        "next_candle",
        "pos_price_change",
        "pos_price_change_follow",
        "trailing_stop",
        "time_in_position",
        "price_change",
        "consecutive_candles",
    }
    assert s.indicators() == [("rsi_14", "1h"), ("ema_12", None), ("ema_26", None)]


def test_round_trips_toml_and_dict(tmp_path: Path) -> None:
    s = Strategy.from_toml(FULL)
    assert Strategy.from_toml(s.to_toml()) == s
    assert Strategy.from_dict(s.to_dict()) == s
    path = tmp_path / "dca.toml"
    path.write_text(s.to_toml(), encoding="utf-8")
    assert Strategy.from_toml(path) == s
    assert Strategy.from_toml(str(path)) == s


def test_toml_writer_escapes_strings() -> None:
    s = Strategy(
        name='quote " back\\slash\nnew line ü',
        actions=(Action("open_long", "10%", (Trigger.technical("price", ">", 1),)),),
    )
    assert Strategy.from_toml(s.to_toml()) == s


def test_built_in_python_equals_loaded() -> None:
    built = Strategy(
        name="ema",
        max_open_positions=1,
        actions=[
            Action("open_long", "100%", [Trigger.technical("ema_12", "cross_above", "ema_26")]),
            Action(
                "sell",
                "100%",
                [Trigger.trailing_stop("-3%"), Trigger.time_in_position("90m", max_count=1)],
            ),
        ],
    )
    loaded = Strategy.from_dict(
        {
            "name": "ema",  # the flat form is accepted too
            "max_open_positions": 1,
            "actions": [
                {
                    "type": "open_long",
                    "amount": "100%",
                    "triggers": [
                        {"indicator": "ema_12", "operator": "cross_above", "target": "ema_26"}
                    ],
                },
                {
                    "type": "sell",
                    "amount": "100%",
                    "triggers": [
                        {"type": "trailing_stop", "value": "-3%"},
                        {"type": "time_in_position", "value": "90m", "max_count": 1},
                    ],
                },
            ],
        }
    )
    assert built == loaded
    assert isinstance(built.actions, tuple) and isinstance(built.actions[0].triggers, tuple)
    assert built.actions[1].describe() == "trailing_stop -3% AND time_in_position 90m (max 1)"


def test_python_built_strategy_is_validated() -> None:
    with pytest.raises(StrategyError) as err:
        Strategy(name="x", actions=[Action("open_long", "lots", [Trigger.next_candle("2h")])])
    assert {(p.code, p.path) for p in err.value.problems} == {
        ("INVALID_AMOUNT_FORMAT", "actions[0].amount"),
        ("INVALID_TIMEFRAME", "actions[0].triggers[0].timeframe"),
    }


def test_validation_reports_every_problem_with_code_and_path() -> None:
    spec = {
        "meta": {"max_open_positions": 0, "colour": "red"},
        "actions": [
            {"type": "open_long", "amount": "100 USDC", "triggers": []},
            {"type": "hold", "amount": "abc", "triggers": [{"type": "next_candle"}]},
            {
                "type": "sell",
                "amount": "150%",
                "triggers": [
                    {"indicator": "rsi_14", "operator": ">=", "target": 70},
                    {"indicator": "rsi_0", "operator": "<", "target": "ema_999"},
                    {"indicator": "foo_3", "operator": ">", "target": 1, "timeframe": "2h"},
                    {"type": "trailing_stop", "value": "+3%", "max_count": 0},
                    {"type": "pos_price_change_follow", "value": "3%", "tolerance": "+1%"},
                    {"type": "teleport"},
                    {"type": "time_in_position", "value": "soon"},
                    {"type": "consecutive_candles", "value": "3_blue"},
                    {"type": "price_change", "value": "-5%", "max_value": "-2%"},
                    {"type": "pos_price_change", "value": "3 percent"},
                    {"type": "technical", "indicator": "price", "operater": ">", "target": 1},
                    {"indicator": "ema_{fast}", "operator": ">", "target": 1},
                    {"type": "rsi", "value": "1%"},
                ],
            },
            {"type": "open_long", "amount": "10%", "triggers": [{"type": "trailing_stop"}]},
        ],
    }
    problems = validate(spec)
    got = {(p.code, p.path) for p in problems}
    t = "actions[2].triggers"
    expected = {
        ("REQUIRED", "meta.name"),
        ("UNKNOWN_FIELD", "meta.colour"),
        ("INVALID_MAX_OPEN_POSITIONS", "meta.max_open_positions"),
        ("REQUIRED", "actions[0].triggers"),
        ("INVALID_ACTION_TYPE", "actions[1].type"),
        ("INVALID_AMOUNT_FORMAT", "actions[1].amount"),
        ("INVALID_AMOUNT_FORMAT", "actions[2].amount"),
        ("INVALID_OPERATOR", f"{t}[0].operator"),
        ("INVALID_PERIOD_RANGE", f"{t}[1].indicator"),
        ("INVALID_PERIOD_RANGE", f"{t}[1].target"),
        ("INVALID_INDICATOR", f"{t}[2].indicator"),
        ("INVALID_TIMEFRAME", f"{t}[2].timeframe"),
        ("INVALID_VALUE", f"{t}[3].value"),
        ("INVALID_MAX_COUNT", f"{t}[3].max_count"),
        ("INVALID_VALUE", f"{t}[4].tolerance"),
        ("INVALID_TRIGGER_TYPE", f"{t}[5].type"),
        ("INVALID_VALUE", f"{t}[6].value"),
        ("INVALID_VALUE", f"{t}[7].value"),
        ("INVALID_VALUE", f"{t}[8].max_value"),
        ("INVALID_VALUE", f"{t}[9].value"),
        ("UNKNOWN_FIELD", f"{t}[10].operater"),
        ("REQUIRED", f"{t}[10].operator"),
        ("INVALID_INDICATOR", f"{t}[11].indicator"),
        ("INVALID_TRIGGER_TYPE", f"{t}[12].type"),
        ("INVALID_TRIGGER", "actions[3].triggers[0].type"),
        ("REQUIRED", "actions[3].triggers[0].value"),
    }
    assert got == expected, (got - expected, expected - got)
    assert len(problems) == len(expected)
    by_path = {p.path: p for p in problems}
    assert "did you mean 'operator'" in by_path[f"{t}[10].operater"].message
    assert "placeholder" in by_path[f"{t}[11].indicator"].message
    assert "'cross_above'" in by_path[f"{t}[0].operator"].message
    with pytest.raises(StrategyError) as err:
        Strategy.from_dict(spec)
    assert len(err.value.problems) == len(expected)
    assert not err.value.retryable


def test_strategy_without_open_long_or_actions() -> None:
    only_sell = {
        "meta": {"name": "x"},
        "actions": [{"type": "sell", "amount": "1%", "triggers": [{"type": "next_candle"}]}],
    }
    assert [(p.code, p.path) for p in validate(only_sell)] == [("REQUIRED", "actions")]
    assert [(p.code, p.path) for p in validate({"meta": {"name": "x"}})] == [
        ("REQUIRED", "actions")
    ]
    assert validate("not a dict")[0].code == "INVALID_TYPE"


def test_bad_toml_is_a_strategy_error() -> None:
    with pytest.raises(StrategyError) as err:
        Strategy.from_toml("[meta\nname = 1")
    assert err.value.code == "INVALID_TOML"
    with pytest.raises(StrategyError) as err:
        Strategy.from_toml("missing-file.toml")
    assert err.value.code == "INVALID_TOML"


def test_amount_and_value_formats() -> None:
    ok = ["100 USDC", "0.01 BTC", "50%", "100%", "2.5 ETH", " 7 usd "]
    bad = ["0%", "101%", "-5%", "100", "USDC 100", "0 USDC", "", "50 %%"]
    for amount in ok + bad:
        spec = {
            "meta": {"name": "x"},
            "actions": [
                {"type": "open_long", "amount": amount, "triggers": [{"type": "next_candle"}]}
            ],
        }
        codes = [p.code for p in validate(spec)]
        assert codes == ([] if amount in ok else ["INVALID_AMOUNT_FORMAT"]), amount


def test_template_render_and_grid() -> None:
    tpl = Template(
        {
            "meta": {"name": "ema cross", "max_open_positions": "{slots}"},
            "actions": [
                {
                    "type": "open_long",
                    "amount": "{size}%",
                    "triggers": [
                        {
                            "indicator": "ema_{fast}",
                            "operator": "cross_above",
                            "target": "ema_{slow}",
                        }
                    ],
                },
                {
                    "type": "sell",
                    "amount": "100%",
                    "triggers": [{"type": "pos_price_change", "value": "+{tp}%"}],
                },
            ],
        }
    )
    assert tpl.parameters == ("slots", "size", "fast", "slow", "tp")
    one = tpl.render(slots=2, size=50, fast=5, slow=20, tp=1.5)
    assert one.max_open_positions == 2  # a whole-field placeholder keeps the value's type
    assert one.actions[0].amount == "50%"
    assert one.actions[0].triggers[0].indicator == "ema_5"
    assert one.actions[1].triggers[0].value == "+1.5%"
    assert one.name == "ema cross (slots=2, size=50, fast=5, slow=20, tp=1.5)"

    fixed = {"slots": [1], "size": [100], "tp": [2]}
    variants = grid(
        tpl, {**fixed, "fast": [5, 12, 30], "slow": [26, 50]}, where=lambda p: p["fast"] < p["slow"]
    )
    pairs = [
        (v.actions[0].triggers[0].indicator, v.actions[0].triggers[0].target) for v in variants
    ]
    assert pairs == [
        ("ema_5", "ema_26"),
        ("ema_5", "ema_50"),
        ("ema_12", "ema_26"),
        ("ema_12", "ema_50"),
        ("ema_30", "ema_50"),
    ]
    assert len({v.name for v in variants}) == 5
    assert "fast=12, slow=50" in variants[3].name


def test_template_name_with_placeholders_and_toml() -> None:
    text = """
[meta]
name = "rsi_{p}_{lvl}"
[[actions]]
type = "open_long"
amount = "100%"
  [[actions.triggers]]
  indicator = "rsi_{p}"
  operator = "<"
  target = "{lvl}"
"""
    variants = grid(text, {"p": [7, 14], "lvl": [25, 30.5]})
    assert [v.name for v in variants] == ["rsi_7_25", "rsi_7_30.5", "rsi_14_25", "rsi_14_30.5"]
    assert variants[1].actions[0].triggers[0].target == 30.5


def test_grid_reports_bad_variants_and_parameters() -> None:
    tpl = Template(
        {
            "meta": {"name": "t"},
            "actions": [
                {
                    "type": "open_long",
                    "amount": "100%",
                    "triggers": [{"indicator": "sma_{p}", "operator": ">", "target": 1}],
                }
            ],
        }
    )
    with pytest.raises(StrategyError) as err:
        grid(tpl, {"p": [10, 500, 0]})
    assert [(p.code, p.path) for p in err.value.problems] == [
        ("INVALID_PERIOD_RANGE", "variants[1].actions[0].triggers[0].indicator"),
        ("INVALID_PERIOD_RANGE", "variants[2].actions[0].triggers[0].indicator"),
    ]
    assert "(p=500)" in err.value.problems[0].message
    with pytest.raises(StrategyError) as err:
        grid(tpl, {"q": [1]})
    assert {(p.code, p.path) for p in err.value.problems} == {
        ("REQUIRED", "parameters.p"),
        ("UNKNOWN_FIELD", "parameters.q"),
    }
