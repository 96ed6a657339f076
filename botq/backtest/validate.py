"""Strategy validation: every problem at once, each with a code, the field's path and the fix.

    >>> validate({"meta": {"name": "x"}, "actions": [{"type": "hold"}]})
    [Problem(code='INVALID_ACTION_TYPE', path='actions[0].type', ...), Problem('REQUIRED', ...)]

Codes: REQUIRED, INVALID_TYPE (a field of the wrong kind), UNKNOWN_FIELD, INVALID_ACTION_TYPE,
INVALID_AMOUNT_FORMAT, INVALID_TRIGGER_TYPE, INVALID_TRIGGER (a kind not allowed on the
action), INVALID_OPERATOR, INVALID_INDICATOR, INVALID_PERIOD, INVALID_PERIOD_RANGE (the last
three from ``botq.indicators.parse``), INVALID_TIMEFRAME, INVALID_VALUE, INVALID_MAX_COUNT,
INVALID_MAX_OPEN_POSITIONS, INVALID_TOML. Paths look like ``actions[2].triggers[0].operator``.

``normalize`` returns a clean copy (numeric targets as floats, a trigger's implied type filled
in) or raises ``StrategyError`` carrying the list; the parse helpers here (percentages,
durations, amounts) are the single definition the compiler uses too.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any

from botq.backtest.enums import OPERATORS, AmountKind
from botq.backtest.strategy import ACTION_TYPES, TRIGGER_TYPES
from botq.errors import Problem, StrategyError
from botq.indicators import parse
from botq.market.timeframes import TIMEFRAMES

NS_PER_MINUTE = 60_000_000_000

_COMMON = ("type", "timeframe", "max_count")
FIELDS: dict[str, tuple[str, ...]] = {
    "technical": ("indicator", "operator", "target", *_COMMON),
    "pos_price_change": ("value", *_COMMON),
    "pos_price_change_follow": ("value", "tolerance", *_COMMON),
    "trailing_stop": ("value", *_COMMON),
    "price_change": ("value", "lookback", "max_value", *_COMMON),
    "next_candle": _COMMON,
    "time_in_position": ("value", *_COMMON),
    "consecutive_candles": ("value", *_COMMON),
}
POSITION_TRIGGERS = frozenset(
    ("pos_price_change", "pos_price_change_follow", "trailing_stop", "time_in_position")
)
_META_FIELDS = ("name", "description", "max_open_positions")
_ACTION_FIELDS = ("type", "amount", "average_price", "triggers")

_PCT_RE = re.compile(r"^\s*([+-]?)([0-9]+(?:\.[0-9]+)?)\s*%\s*$")
_AMOUNT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z][A-Za-z0-9.]*)\s*$")
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([mhdw]?)\s*$")
_CONSEC_RE = re.compile(r"^\s*([0-9]+)_(red|green)\s*$")
_PLACEHOLDER_RE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_UNIT_MIN = {"": 1, "m": 1, "h": 60, "d": 1440, "w": 10080}

# Currencies that are the quote side when the pair is not known.
QUOTE_CURRENCIES = frozenset(
    [
        "USD",
        "ZUSD",
        "USDC",
        "USDT",
        "DAI",
        "BUSD",
        "TUSD",
        "USDP",
        "FDUSD",
        "PYUSD",
        "EUR",
        "ZEUR",
        "EURC",
        "EURT",
        "GBP",
        "ZGBP",
        "JPY",
        "ZJPY",
        "CHF",
        "CAD",
        "ZCAD",
        "AUD",
    ]
)
_ALIASES = {
    "XBT": "BTC",
    "XXBT": "BTC",
    "XETH": "ETH",
    "ZUSD": "USD",
    "ZEUR": "EUR",
    "ZGBP": "GBP",
    "ZJPY": "JPY",
    "ZCAD": "CAD",
}
_USD_LIKE = frozenset(["USD", "USDC", "USDT", "DAI", "BUSD", "TUSD", "USDP", "FDUSD", "PYUSD"])
_EUR_LIKE = frozenset(["EUR", "EURC", "EURT"])


# ----------------------------------------------------------------------------- parse helpers


def parse_percent(text: Any) -> tuple[float, bool] | None:
    """ "+3%" -> (0.03, True), "-2%" -> (-0.02, True), "3%" -> (0.03, False); None if bad.

    The flag says whether a sign was written.
    """
    if not isinstance(text, str):
        return None
    m = _PCT_RE.match(text)
    if not m:
        return None
    v = float(m.group(2)) / 100.0
    return (-v if m.group(1) == "-" else v), bool(m.group(1))


def parse_duration_ns(value: Any) -> int | None:
    """ "90m", "24h", "7d", "1w", or a number of minutes -> nanoseconds; None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        minutes = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            return None
        minutes = float(m.group(1)) * _UNIT_MIN[m.group(2)]
    else:
        return None
    if not math.isfinite(minutes) or minutes <= 0:
        return None
    return int(round(minutes * NS_PER_MINUTE))


def parse_consecutive(value: Any) -> tuple[int, bool] | None:
    """ "3_red" -> (3, False), "5_green" -> (5, True); None if bad."""
    if not isinstance(value, str):
        return None
    m = _CONSEC_RE.match(value)
    if not m or not 1 <= int(m.group(1)) <= 1000:
        return None
    return int(m.group(1)), m.group(2) == "green"


def parse_amount(text: Any) -> tuple[float, str | None] | None:
    """ "100 USDC" -> (100.0, "USDC"), "50%" -> (0.5, None); None if bad or not > 0."""
    if not isinstance(text, str):
        return None
    pct = parse_percent(text)
    if pct is not None:
        v, signed = pct
        if (signed and v < 0) or not 0 < v <= 1:
            return None
        return v, None
    m = _AMOUNT_RE.match(text)
    if not m or float(m.group(1)) <= 0:
        return None
    return float(m.group(1)), m.group(2).upper()


def _canon(cur: str) -> str:
    cur = _ALIASES.get(cur.upper(), cur.upper())
    if cur in _USD_LIKE:
        return "USD"
    if cur in _EUR_LIKE:
        return "EUR"
    return cur


def amount_kind(currency: str | None, pair: str = "") -> AmountKind | None:
    """Quote or base for a currency amount given the pair ("BTC/USD"); None if it is neither."""
    if currency is None:
        return AmountKind.PERCENT
    parts = [p for p in re.split(r"[/\-_:]", pair.strip().upper()) if p] if pair else []
    if len(parts) == 2:
        base, quote = (_canon(p) for p in parts)
        cur = _canon(currency)
        if cur == quote:
            return AmountKind.QUOTE
        if cur == base:
            return AmountKind.BASE
        return None
    return AmountKind.QUOTE if currency.upper() in QUOTE_CURRENCIES else AmountKind.BASE


def target_number(target: Any) -> float | None:
    """A technical target as a number, or None when it is an indicator name."""
    if isinstance(target, bool):
        return None
    if isinstance(target, (int, float)):
        return float(target)
    if isinstance(target, str):
        try:
            v = float(target.strip())
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


# ----------------------------------------------------------------------------- validation


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, code: str, path: str, message: str) -> None:
        self.problems.append(Problem(code, path, message))

    def unknown(
        self, keys: Mapping[str, Any], allowed: tuple[str, ...], path: str, what: str
    ) -> None:
        for k in keys:
            if k not in allowed:
                guess = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {guess[0]!r}?" if guess else ""
                self.add(
                    "UNKNOWN_FIELD",
                    f"{path}.{k}" if path else str(k),
                    f"{what} has no field {k!r}{hint} (fields: {', '.join(allowed)})",
                )


def validate(spec: Any) -> list[Problem]:
    """Every problem of a strategy (a dict shaped like the TOML, or a Strategy); [] if none."""
    if hasattr(spec, "to_dict") and not isinstance(spec, Mapping):
        spec = spec.to_dict()
    return _check(spec)[0]


def normalize(spec: Any) -> dict[str, Any]:
    """A clean, validated copy of a strategy dict; raise StrategyError listing all problems."""
    problems, out = _check(spec)
    if problems:
        raise StrategyError(problems)
    return out


def _check(spec: Any) -> tuple[list[Problem], dict[str, Any]]:
    ck = _Checker()
    out: dict[str, Any] = {"meta": {}, "actions": []}
    if not isinstance(spec, Mapping):
        ck.add(
            "INVALID_TYPE",
            "",
            f"a strategy is a dict with 'meta' and 'actions' (or TOML text), "
            f"got {type(spec).__name__}",
        )
        return ck.problems, out
    if "meta" in spec:
        meta = spec["meta"]
        ck.unknown(spec, ("meta", "actions"), "", "a strategy")
        mpath = "meta"
        if not isinstance(meta, Mapping):
            ck.add("INVALID_TYPE", "meta", 'meta is a table: [meta] name = "..."')
            meta = {}
        ck.unknown(meta, _META_FIELDS, "meta", "meta")
    else:
        meta = {k: v for k, v in spec.items() if k != "actions"}
        mpath = "meta"
        ck.unknown(meta, _META_FIELDS + ("actions",), "", "a strategy")
        meta = {k: v for k, v in meta.items() if k in _META_FIELDS}
    _check_meta(ck, meta, mpath, out["meta"])

    actions = spec.get("actions")
    if actions is None:
        ck.add("REQUIRED", "actions", "a strategy needs actions: add [[actions]] tables")
        return ck.problems, out
    if isinstance(actions, (str, bytes)) or not isinstance(actions, (list, tuple)):
        ck.add("INVALID_TYPE", "actions", "actions is a list of [[actions]] tables")
        return ck.problems, out
    if not actions:
        ck.add("REQUIRED", "actions", "a strategy needs at least one action (open_long first)")
    for i, action in enumerate(actions):
        out["actions"].append(_check_action(ck, action, f"actions[{i}]"))
    types = [a.get("type") for a in actions if isinstance(a, Mapping)]
    if actions and "open_long" not in types:
        ck.add(
            "REQUIRED",
            "actions",
            "no open_long action: nothing would ever open a position; add an action with "
            'type = "open_long"',
        )
    return ck.problems, out


def _check_meta(ck: _Checker, meta: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
    name = meta.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        ck.add("REQUIRED", f"{path}.name", 'a strategy needs a name: name = "EMA cross"')
    elif not isinstance(name, str):
        ck.add("INVALID_TYPE", f"{path}.name", f"name is text, got {type(name).__name__}")
    elif len(name) > 255:
        ck.add("INVALID_VALUE", f"{path}.name", "name is at most 255 characters")
    else:
        out["name"] = name
    desc = meta.get("description", "")
    if not isinstance(desc, str):
        ck.add("INVALID_TYPE", f"{path}.description", "description is text")
    elif desc:
        out["description"] = desc
    mop = meta.get("max_open_positions")
    if mop is not None:
        if isinstance(mop, bool) or not isinstance(mop, int) or mop < 1:
            ck.add(
                "INVALID_MAX_OPEN_POSITIONS",
                f"{path}.max_open_positions",
                f"max_open_positions is a whole number >= 1 (or leave it out for no limit), "
                f"got {mop!r}",
            )
        else:
            out["max_open_positions"] = mop


def _check_action(ck: _Checker, action: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"triggers": []}
    if not isinstance(action, Mapping):
        ck.add("INVALID_TYPE", path, "an action is a table with type, amount and triggers")
        return out
    ck.unknown(action, _ACTION_FIELDS, path, "an action")
    atype = action.get("type")
    if atype is None:
        ck.add("REQUIRED", f"{path}.type", "an action needs a type: open_long, buy or sell")
    elif atype not in ACTION_TYPES:
        guess = difflib.get_close_matches(str(atype), ACTION_TYPES, n=1, cutoff=0.5)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        ck.add(
            "INVALID_ACTION_TYPE",
            f"{path}.type",
            f"unknown action type {atype!r}{hint}; use open_long, buy or sell",
        )
    out["type"] = atype
    amount = action.get("amount")
    if amount is None:
        ck.add(
            "REQUIRED",
            f"{path}.amount",
            'an action needs an amount: "100 USDC", "0.01 BTC" or "50%"',
        )
    elif parse_amount(amount) is None:
        ck.add(
            "INVALID_AMOUNT_FORMAT",
            f"{path}.amount",
            f"amount {amount!r} is not understood; write a positive amount with its currency "
            '("100 USDC", "0.01 BTC") or a percentage from 0 to 100 ("50%")',
        )
    out["amount"] = amount
    avg = action.get("average_price", False)
    if not isinstance(avg, bool):
        ck.add("INVALID_TYPE", f"{path}.average_price", "average_price is true or false")
    elif avg and atype == "sell":
        ck.add(
            "INVALID_VALUE",
            f"{path}.average_price",
            "average_price applies to open_long and buy actions; remove it from the sell",
        )
    elif avg:
        out["average_price"] = True
    triggers = action.get("triggers")
    if triggers is None or (isinstance(triggers, (list, tuple)) and not triggers):
        ck.add(
            "REQUIRED",
            f"{path}.triggers",
            "an action needs at least one trigger: add an [[actions.triggers]] table",
        )
    elif isinstance(triggers, (str, bytes)) or not isinstance(triggers, (list, tuple)):
        ck.add("INVALID_TYPE", f"{path}.triggers", "triggers is a list of [[actions.triggers]]")
    else:
        for j, trig in enumerate(triggers):
            out["triggers"].append(_check_trigger(ck, trig, f"{path}.triggers[{j}]", atype))
    return out


def _indicator_problem(ck: _Checker, name: Any, path: str) -> None:
    if not isinstance(name, str):
        ck.add("INVALID_TYPE", path, f"an indicator name is text such as 'rsi_14', got {name!r}")
        return
    if _PLACEHOLDER_RE.search(name):
        ck.add(
            "INVALID_INDICATOR",
            path,
            f"{name!r} still holds a template placeholder; fill it with "
            "botq.backtest.Template(...).render(...) or botq.backtest.grid(...)",
        )
        return
    try:
        parse(name)
    except StrategyError as exc:
        for p in exc.problems:
            ck.add(p.code, path, p.message)


def _check_percent(
    ck: _Checker, trig: Mapping[str, Any], key: str, path: str, example: str
) -> float | None:
    raw = trig.get(key)
    if raw is None:
        ck.add("REQUIRED", f"{path}.{key}", f'this trigger needs {key} = "{example}"')
        return None
    pct = parse_percent(raw)
    if pct is None:
        ck.add(
            "INVALID_VALUE",
            f"{path}.{key}",
            f'{key} {raw!r} is not a percentage; write it like "{example}"',
        )
        return None
    return pct[0]


def _check_trigger(ck: _Checker, trig: Any, path: str, atype: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(trig, Mapping):
        ck.add("INVALID_TYPE", path, "a trigger is a table: [[actions.triggers]]")
        return out
    ttype = trig.get("type")
    if ttype is None:
        if "indicator" in trig:
            ttype = "technical"
        else:
            ck.add(
                "REQUIRED",
                f"{path}.type",
                "a trigger needs a type (one of " + ", ".join(TRIGGER_TYPES) + "), or an "
                "indicator, operator and target for a technical trigger",
            )
            return out
    if ttype not in TRIGGER_TYPES:
        guess = difflib.get_close_matches(str(ttype), TRIGGER_TYPES, n=1, cutoff=0.5)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        ck.add(
            "INVALID_TRIGGER_TYPE",
            f"{path}.type",
            f"unknown trigger type {ttype!r}{hint}; use one of " + ", ".join(TRIGGER_TYPES),
        )
        return out
    out["type"] = ttype
    ck.unknown(trig, FIELDS[ttype], path, f"a {ttype} trigger")
    if atype == "open_long" and ttype in POSITION_TRIGGERS:
        ck.add(
            "INVALID_TRIGGER",
            f"{path}.type",
            f"{ttype} looks at an open position, so it cannot open one; use it on buy or sell "
            "actions (open_long takes technical, price_change, next_candle or "
            "consecutive_candles triggers)",
        )

    tf = trig.get("timeframe")
    if tf is not None:
        if tf not in TIMEFRAMES:
            ck.add(
                "INVALID_TIMEFRAME",
                f"{path}.timeframe",
                f"timeframe {tf!r} is not one of {', '.join(TIMEFRAMES)}",
            )
        else:
            out["timeframe"] = tf
    mc = trig.get("max_count")
    if mc is not None:
        if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
            ck.add(
                "INVALID_MAX_COUNT",
                f"{path}.max_count",
                f"max_count is a whole number >= 1 (fires per position), got {mc!r}",
            )
        else:
            out["max_count"] = mc

    if ttype == "technical":
        _check_technical(ck, trig, path, out)
    elif ttype == "pos_price_change":
        v = _check_percent(ck, trig, "value", path, "+3%")
        if v is not None:
            out["value"] = trig["value"]
    elif ttype == "pos_price_change_follow":
        v = _check_percent(ck, trig, "value", path, "+3%")
        tol = _check_percent(ck, trig, "tolerance", path, "-0.5%")
        if v is not None:
            out["value"] = trig["value"]
        if tol is not None:
            signed = parse_percent(trig["tolerance"])
            assert signed is not None
            if signed[1] and tol != 0 and (tol > 0) == (v is not None and v >= 0):
                ck.add(
                    "INVALID_VALUE",
                    f"{path}.tolerance",
                    f"tolerance {trig['tolerance']!r} has the same sign as value "
                    f'{trig.get("value")!r}; the retrace goes the other way (value "+3%" with '
                    'tolerance "-0.5%", value "-10%" with tolerance "+1%")',
                )
            else:
                out["tolerance"] = trig["tolerance"]
    elif ttype == "trailing_stop":
        v = _check_percent(ck, trig, "value", path, "-3%")
        if v is not None and v >= 0:
            ck.add(
                "INVALID_VALUE",
                f"{path}.value",
                f"a trailing stop is a drop from the peak, so its value is negative "
                f'("-3%"), got {trig["value"]!r}',
            )
        elif v is not None:
            out["value"] = trig["value"]
    elif ttype == "price_change":
        _check_price_change(ck, trig, path, out)
    elif ttype == "time_in_position":
        raw = trig.get("value")
        if raw is None:
            ck.add("REQUIRED", f"{path}.value", 'time_in_position needs value = "24h"')
        elif parse_duration_ns(raw) is None:
            ck.add(
                "INVALID_VALUE",
                f"{path}.value",
                f'duration {raw!r} is not understood; write "90m", "24h", "7d" or a '
                "number of minutes > 0",
            )
        else:
            out["value"] = raw if isinstance(raw, str) else f"{raw:g}"
    elif ttype == "consecutive_candles":
        raw = trig.get("value")
        if raw is None:
            ck.add("REQUIRED", f"{path}.value", 'consecutive_candles needs value = "3_red"')
        elif parse_consecutive(raw) is None:
            ck.add(
                "INVALID_VALUE",
                f"{path}.value",
                f'pattern {raw!r} is not understood; write "<count>_red" or '
                '"<count>_green" with a count from 1 to 1000, e.g. "3_red"',
            )
        else:
            out["value"] = raw
    return out


def _check_technical(ck: _Checker, trig: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
    ind = trig.get("indicator")
    if ind is None:
        ck.add("REQUIRED", f"{path}.indicator", 'a technical trigger needs indicator = "rsi_14"')
    else:
        _indicator_problem(ck, ind, f"{path}.indicator")
        out["indicator"] = ind
    op = trig.get("operator")
    if op is None:
        ck.add(
            "REQUIRED",
            f"{path}.operator",
            "a technical trigger needs an operator: " + ", ".join(OPERATORS),
        )
    elif op not in OPERATORS:
        ck.add(
            "INVALID_OPERATOR",
            f"{path}.operator",
            f"operator {op!r} is not one of " + ", ".join(repr(o) for o in OPERATORS),
        )
    else:
        out["operator"] = op
    tgt = trig.get("target")
    if tgt is None:
        ck.add(
            "REQUIRED",
            f"{path}.target",
            'a technical trigger needs a target: a number (30) or an indicator ("ema_26")',
        )
        return
    num = target_number(tgt)
    if num is not None:
        out["target"] = num
    elif isinstance(tgt, str):
        _indicator_problem(ck, tgt.strip(), f"{path}.target")
        out["target"] = tgt.strip()
    else:
        ck.add(
            "INVALID_TYPE",
            f"{path}.target",
            f"target is a number or an indicator name, got {tgt!r}",
        )


def _check_price_change(
    ck: _Checker, trig: Mapping[str, Any], path: str, out: dict[str, Any]
) -> None:
    v = _check_percent(ck, trig, "value", path, "-5%")
    if v is not None:
        out["value"] = trig["value"]
    lb = trig.get("lookback")
    if lb is not None:
        if isinstance(lb, bool) or not isinstance(lb, int) or not 1 <= lb <= 100_000:
            ck.add(
                "INVALID_PERIOD_RANGE",
                f"{path}.lookback",
                f"lookback is a whole number of candles from 1 to 100000, got {lb!r}",
            )
        else:
            out["lookback"] = lb
    mv = trig.get("max_value")
    if mv is not None:
        cap = parse_percent(mv)
        if cap is None:
            ck.add(
                "INVALID_VALUE",
                f"{path}.max_value",
                f'max_value {mv!r} is not a percentage; write it like "-15%"',
            )
        elif v is not None and ((v >= 0 and cap[0] <= v) or (v < 0 and cap[0] >= v)):
            ck.add(
                "INVALID_VALUE",
                f"{path}.max_value",
                f"max_value {mv!r} must lie beyond value {trig['value']!r} in the same "
                'direction (value "-5%" with max_value "-15%")',
            )
        else:
            out["max_value"] = mv
