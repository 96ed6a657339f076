"""The strategy model: meta plus actions, each fired by triggers that must all hold (AND).

    [meta]
    name = "EMA cross"
    max_open_positions = 1

    [[actions]]
    type = "open_long"
    amount = "100%"
      [[actions.triggers]]
      indicator = "ema_12"
      operator = "cross_above"
      target = "ema_26"

    [[actions]]
    type = "sell"
    amount = "100%"
      [[actions.triggers]]
      type = "trailing_stop"
      value = "-3%"

Load with ``Strategy.from_toml(text_or_path)`` or ``Strategy.from_dict(d)``, or build the
dataclasses in Python (``Trigger.technical("ema_12", "cross_above", "ema_26")``); any of these
validates the whole strategy and raises ``StrategyError`` listing every problem
(``botq.backtest.validate``). ``to_dict()`` / ``to_toml()`` write it back. A flat dict
(``name``, ``description``, ``max_open_positions`` beside ``actions``) is accepted too.

How a backtest reads it (``botq.backtest.run``):

Evaluation. Every candle is evaluated once, at its close, after its indicators are known.
Actions are taken in the order written. An ``open_long`` is evaluated once per candle; a
``buy`` or ``sell`` is evaluated once per open position (oldest first), with that position's
entry, peak and counters. A position is managed by buy/sell actions from the first evaluation
after its opening fill (so never on the candle that opened it with ``fill="close"``).

Actions and amounts. ``open_long`` opens a new position if fewer than ``max_open_positions``
are open (no limit given: at most 1000). ``buy`` adds to a position (DCA), ``sell`` sells from
it; a position closes when nothing is left. ``"100 USDC"``: a buy spends exactly that much cash,
fee included (qty = amount / (price * (1 + fee))); a sell sells qty = amount / price. A sell
that would leave less than a billionth of the most the position ever held sells it all.
``"0.01 BTC"``: that quantity. ``"50%"``: a buy spends that share of the available cash (so
``"100%"`` spends exactly all of it); a sell sells that share of the position. A currency is
quote or base by the pair ("BTC/USD": USD, USDC, USDT... are quote); without a pair, fiat and
stablecoins are quote and anything else is base. Every order that cannot be carried out
(no cash, more cash than is left, more than the position holds, all positions in use, no next
candle for ``fill="next_open"``) is counted in the metrics and, with ``verbose=True``, listed in
the trades with its reason; nothing is dropped silently and nothing is filled partially.

Entry prices. Each position keeps its cost basis (cash spent, fees included, for realised PnL)
and a reference price for the position triggers: the opening fill price. A ``buy`` with
``average_price = true`` moves the reference to the quantity-weighted average of all the
position's fill prices; with ``false`` (the default) the reference stays where it was.

Triggers (``value`` percentages are written "+3%", "-2%" or "3%"; every kind takes
``max_count`` and ``timeframe``, one of 1m 5m 15m 1h 4h 1d, never finer than the candles):

- technical: ``indicator`` ``operator`` ``target``; target is a number or an indicator name
  (``botq.indicators`` names, e.g. "price", "ema_26"). ``>`` ``<`` compare, ``=`` holds when
  equal within 1e-9 relative; ``cross_above`` holds on the candle where indicator > target
  after indicator <= target on the previous candle (``cross_below`` mirrored). With a timeframe,
  both sides are computed on closed candles of that timeframe and mapped back without
  look-ahead (``botq.indicators.compute(..., timeframe=)``), so a 1h crossover fires on the
  minute whose close completes the hour. A missing (NaN, warm-up) value never holds.
- pos_price_change: ``value`` v. change = close / reference - 1; holds when change >= v
  (v >= 0, take profit) or change <= v (v < 0, stop loss / DCA rung).
- pos_price_change_follow: ``value`` v activates the trigger as pos_price_change would; from
  then on it tracks the highest close (v >= 0) or the lowest close (v < 0) and holds once the
  close has retraced from that extreme by ``tolerance``: close <= peak * (1 - |tol|) for
  v >= 0, close >= trough * (1 + |tol|) for v < 0. The tolerance is written with the opposite
  sign of v (``value = "3%", tolerance = "-0.5%"``) or unsigned. After its action fills, the
  trigger deactivates and waits for the next activation.
- trailing_stop: ``value`` v < 0 ("-3%"). Tracks the highest close since the position opened
  (starting from the opening fill price); holds when close <= peak * (1 + v). After its action
  fills (a partial sell), the peak restarts from that fill's price.
- price_change: ``value`` v, optional ``lookback`` n (default 1) and ``max_value``. The window
  is n candles of ``timeframe`` (default: the candles' own): change = close / c0 - 1 where c0
  is the close of the last candle opened at or before (time - window). Holds when
  change >= v (v >= 0) or change <= v (v < 0), and not beyond ``max_value`` when given.
  No position needed.
- next_candle: holds on the candle whose close completes a candle of ``timeframe`` (UTC-aligned
  buckets: with 1m candles and "4h", the 03:59, 07:59, ... candles; after a gap in the data, the
  first candle of a later bucket). On the candles' own timeframe it always holds.
- time_in_position: ``value`` a duration ("90m", "24h", "7d", or a number of minutes); holds
  when time - opening time >= duration (candle open times; an open at 00:00 with "1h" holds
  from the 01:00 candle on).
- consecutive_candles: ``value`` "3_red" or "3_green": holds while the last n closed candles of
  ``timeframe`` (default the candles' own) are all red (close < open) or all green
  (close >= open). Like a technical trigger it is a level: it holds on every minute until a
  candle of the other colour closes; pair it with next_candle to act once per candle.

For pos_price_change, pos_price_change_follow, trailing_stop and time_in_position a
``timeframe`` sets the cadence: the trigger is looked at (and its peak or extreme updated) only
on candles that complete a candle of that timeframe.

max_count caps how often a trigger fires per position: the counter counts fills of its action
for that position and starts at zero when the position opens. Triggers of an action are ANDed,
so a trigger fires exactly when its action fills, and the action may fill while all its
triggers are under their max_count. On ``open_long`` (which has no position yet) the count runs
over the whole backtest. Position triggers (pos_price_change, pos_price_change_follow,
trailing_stop, time_in_position) need a position and are not allowed on ``open_long``.

Fills happen at the candle's close (``fill="close"``) or at the next candle's open
(``fill="next_open"``: decided at the close, filled in decision order when the next candle
opens, each order checked again against the cash and positions of that moment). Fees are taken
at every fill: a buy costs qty * price * (1 + fee), a sell returns qty * price * (1 - fee).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from botq.errors import Problem, StrategyError

TRIGGER_TYPES = (
    "technical",
    "pos_price_change",
    "pos_price_change_follow",
    "trailing_stop",
    "price_change",
    "next_candle",
    "time_in_position",
    "consecutive_candles",
)
ACTION_TYPES = ("open_long", "buy", "sell")


@dataclass(frozen=True, slots=True)
class Trigger:
    """One condition of an action; which fields apply depends on `type` (see module docs)."""

    type: str = "technical"
    indicator: str | None = None
    operator: str | None = None
    target: float | str | None = None
    value: str | None = None
    tolerance: str | None = None
    lookback: int | None = None
    max_value: str | None = None
    timeframe: str | None = None
    max_count: int | None = None

    @classmethod
    def technical(
        cls,
        indicator: str,
        operator: str,
        target: float | str,
        *,
        timeframe: str | None = None,
        max_count: int | None = None,
    ) -> Trigger:
        """`indicator <operator> target`, e.g. Trigger.technical("rsi_14", "<", 30)."""
        return cls(
            "technical",
            indicator=indicator,
            operator=operator,
            target=target,
            timeframe=timeframe,
            max_count=max_count,
        )

    @classmethod
    def pos_price_change(cls, value: str, *, max_count: int | None = None) -> Trigger:
        """Close vs the position's reference price, e.g. "+3%" or "-2%"."""
        return cls("pos_price_change", value=value, max_count=max_count)

    @classmethod
    def follow(cls, value: str, tolerance: str, *, max_count: int | None = None) -> Trigger:
        """pos_price_change_follow: activate at `value`, fire on a `tolerance` retrace."""
        return cls("pos_price_change_follow", value=value, tolerance=tolerance, max_count=max_count)

    @classmethod
    def trailing_stop(cls, value: str, *, max_count: int | None = None) -> Trigger:
        """Drop from the highest close since entry, e.g. "-3%"."""
        return cls("trailing_stop", value=value, max_count=max_count)

    @classmethod
    def price_change(
        cls,
        value: str,
        timeframe: str | None = None,
        *,
        lookback: int | None = None,
        max_value: str | None = None,
        max_count: int | None = None,
    ) -> Trigger:
        """Market move over `lookback` candles of `timeframe`, e.g. ("-5%", "1h")."""
        return cls(
            "price_change",
            value=value,
            timeframe=timeframe,
            lookback=lookback,
            max_value=max_value,
            max_count=max_count,
        )

    @classmethod
    def next_candle(cls, timeframe: str | None = None, *, max_count: int | None = None) -> Trigger:
        """Holds on the candle that completes a candle of `timeframe`."""
        return cls("next_candle", timeframe=timeframe, max_count=max_count)

    @classmethod
    def time_in_position(cls, value: str, *, max_count: int | None = None) -> Trigger:
        """The position has been open at least `value` ("90m", "24h", "7d")."""
        return cls("time_in_position", value=value, max_count=max_count)

    @classmethod
    def consecutive_candles(
        cls, value: str, timeframe: str | None = None, *, max_count: int | None = None
    ) -> Trigger:
        """The last n closed candles of `timeframe` are all red or green ("3_red")."""
        return cls("consecutive_candles", value=value, timeframe=timeframe, max_count=max_count)

    def to_dict(self) -> dict[str, Any]:
        """The trigger as a TOML-ready dict, without unset fields."""
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "type" and v is not None:
                out[f.name] = v
        return out

    def describe(self) -> str:
        """Short text for the trades log, e.g. "ema_12 cross_above ema_26 [1h]"."""
        tf = f" [{self.timeframe}]" if self.timeframe else ""
        mc = f" (max {self.max_count})" if self.max_count is not None else ""
        if self.type == "technical":
            tgt = f"{self.target:g}" if isinstance(self.target, float) else str(self.target)
            text = f"{self.indicator} {self.operator} {tgt}"
        elif self.type == "pos_price_change_follow":
            text = f"{self.type} {self.value} tol {self.tolerance}"
        elif self.type == "price_change":
            lb = f" x{self.lookback}" if self.lookback else ""
            cap = f" to {self.max_value}" if self.max_value else ""
            text = f"price_change {self.value}{cap}{lb}"
        elif self.type == "next_candle":
            text = "next_candle"
        else:
            text = f"{self.type} {self.value}"
        return text + tf + mc


@dataclass(frozen=True, slots=True)
class Action:
    """What to do (open_long, buy, sell), how much, and the triggers that must all hold."""

    type: str
    amount: str
    triggers: tuple[Trigger, ...] = ()
    average_price: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.triggers, tuple):
            object.__setattr__(self, "triggers", tuple(self.triggers))

    def to_dict(self) -> dict[str, Any]:
        """The action as a TOML-ready dict."""
        out: dict[str, Any] = {"type": self.type, "amount": self.amount}
        if self.average_price:
            out["average_price"] = True
        out["triggers"] = [t.to_dict() for t in self.triggers]
        return out

    def describe(self) -> str:
        """The triggers as one line, joined by AND."""
        return " AND ".join(t.describe() for t in self.triggers)


@dataclass(frozen=True, slots=True)
class Strategy:
    """A validated strategy: meta (name, description, max_open_positions) plus actions."""

    name: str
    actions: tuple[Action, ...] = field(default=())
    description: str = ""
    max_open_positions: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.actions, tuple):
            object.__setattr__(self, "actions", tuple(self.actions))
        from botq.backtest.validate import validate

        problems = validate(self.to_dict())
        if problems:
            raise StrategyError(problems)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Strategy:
        """Build from a dict shaped like the TOML ({"meta": {...}, "actions": [...]})."""
        from botq.backtest.validate import normalize

        return _build(normalize(spec))

    @classmethod
    def from_toml(cls, source: str | Path) -> Strategy:
        """Build from TOML text or from a path to a .toml file."""
        return cls.from_dict(load_toml(source))

    def to_dict(self) -> dict[str, Any]:
        """The strategy as a TOML-shaped dict; ``Strategy.from_dict`` reads it back."""
        meta: dict[str, Any] = {"name": self.name}
        if self.description:
            meta["description"] = self.description
        if self.max_open_positions is not None:
            meta["max_open_positions"] = self.max_open_positions
        return {"meta": meta, "actions": [a.to_dict() for a in self.actions]}

    def to_toml(self) -> str:
        """The strategy as TOML text; ``Strategy.from_toml`` reads it back."""
        return dump_toml(self.to_dict())

    def indicators(self) -> list[tuple[str, str | None]]:
        """Every (indicator name, timeframe) the technical triggers use, in order."""
        out: dict[tuple[str, str | None], None] = {}
        for a in self.actions:
            for t in a.triggers:
                if t.type == "technical":
                    out[(str(t.indicator), t.timeframe)] = None
                    if isinstance(t.target, str):
                        out[(t.target, t.timeframe)] = None
        return list(out)


def _build(spec: Mapping[str, Any]) -> Strategy:
    """Dataclasses from a normalized dict (as `validate.normalize` returns). The dict was just
    validated, so the Strategy is made without validating it a second time in __post_init__
    (that would double the cost of every load: 70 us per strategy, a sweep's grid has
    thousands)."""
    meta = spec["meta"]
    actions = []
    for a in spec["actions"]:
        trigs = tuple(Trigger(**t) for t in a["triggers"])
        actions.append(Action(a["type"], a["amount"], trigs, bool(a.get("average_price", False))))
    strategy = object.__new__(Strategy)
    for name, value in (
        ("name", meta["name"]),
        ("actions", tuple(actions)),
        ("description", meta.get("description", "")),
        ("max_open_positions", meta.get("max_open_positions")),
    ):
        object.__setattr__(strategy, name, value)
    return strategy


# ----------------------------------------------------------------------------- TOML


def load_toml(source: str | Path) -> dict[str, Any]:
    """Parse TOML text, or read a .toml file (a Path, or a one-line str ending in .toml)."""
    text: str
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.strip().endswith(".toml")
    ):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StrategyError(
                Problem("INVALID_TOML", "", f"cannot read strategy file {str(path)!r}: {exc}")
            ) from None
    elif isinstance(source, str):
        text = source
    else:
        raise StrategyError(
            Problem(
                "INVALID_TOML",
                "",
                f"expected TOML text or a path, got {type(source).__name__}; "
                "use Strategy.from_dict for dicts",
            )
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StrategyError(
            Problem("INVALID_TOML", "", f"the strategy is not valid TOML: {exc}")
        ) from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        out = ['"']
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(v, Sequence):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    bare = k.replace("_", "").replace("-", "").isalnum() and k.isascii() and k != ""
    return k if bare else _toml_value(k)


def dump_toml(spec: Mapping[str, Any]) -> str:
    """Write a strategy-shaped dict ({"meta": {...}, "actions": [...]}) as TOML text."""
    lines: list[str] = []
    meta = spec.get("meta", {})
    lines.append("[meta]")
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in meta.items()]
    for action in spec.get("actions", []):
        lines += ["", "[[actions]]"]
        for k, v in action.items():
            if k != "triggers":
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for trig in action.get("triggers", []):
            lines += ["", "  [[actions.triggers]]"]
            lines += [f"  {_toml_key(k)} = {_toml_value(v)}" for k, v in trig.items()]
    return "\n".join(lines) + "\n"
