"""Integer codes shared by the compiler and the numba engine, and the trade record dtype.

The compiled strategy is two tables of plain numbers: one row per action (`ActCol` int fields,
`ActVal` float fields) and one row per trigger (`TrigCol`, `TrigVal`). The engine reports
per-run statistics as a float vector indexed by `Stat` and every fill (and, in verbose mode,
every order it could not carry out) as one `TRADE_DTYPE` record whose `reason` is a `Reason`.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class ActionType(IntEnum):
    """What an action does: open a new position, add to one, or sell from one."""

    OPEN_LONG = 0
    BUY = 1
    SELL = 2


class AmountKind(IntEnum):
    """How an action's amount is given: quote currency, base currency, or percent."""

    QUOTE = 0  # "100 USDC": cash spent (fee included) or gross value sold
    BASE = 1  # "0.01 BTC": quantity bought or sold
    PERCENT = 2  # "50%": of available cash (open_long, buy) or of the position (sell)


class TriggerKind(IntEnum):
    """The engine's trigger kinds (the strategy's eight kinds compile onto these)."""

    ALWAYS = 0  # next_candle on the candles' own timeframe
    COMPARE = 1  # column <op> column-or-constant (technical)
    RANGE = 2  # lo <= column <= hi (price_change, next_candle, consecutive_candles)
    POS_CHANGE = 3  # close vs the position's reference price
    FOLLOW = 4  # pos_price_change_follow: activate, trail an extreme, fire on retrace
    TRAILING = 5  # trailing_stop: drop from the highest close since entry
    TIME_IN_POS = 6  # time since the position opened


class Op(IntEnum):
    """Comparison operators of technical triggers."""

    GT = 0
    LT = 1
    EQ = 2
    CROSS_ABOVE = 3
    CROSS_BELOW = 4


OPERATORS: dict[str, Op] = {
    ">": Op.GT,
    "<": Op.LT,
    "=": Op.EQ,
    "cross_above": Op.CROSS_ABOVE,
    "cross_below": Op.CROSS_BELOW,
}


class Reason(IntEnum):
    """Outcome of an order: filled, or why it could not be carried out."""

    FILLED = 0
    MAX_POSITIONS = 1  # open_long while max_open_positions are open
    NO_CASH = 2  # a buy with no cash left
    INSUFFICIENT_CASH = 3  # a fixed-amount buy costing more than the cash left
    EXCEEDS_POSITION = 4  # a fixed-amount sell larger than the position
    NOTHING_TO_SELL = 5  # a sell whose amount rounds to nothing
    NO_NEXT_BAR = 6  # fill="next_open" on the last candle
    NO_PRICE = 7  # the fill price is missing (NaN candle)
    POSITION_CLOSED = 8  # fill="next_open": the position closed before this order's fill


class ActCol(IntEnum):
    """Integer fields of an action row."""

    TYPE = 0
    AMOUNT_KIND = 1
    AVERAGE = 2  # 1: a buy moves the position's reference price to the average entry
    FIRST_TRIG = 3  # index of the action's first trigger row
    N_TRIG = 4


class ActVal(IntEnum):
    """Float fields of an action row."""

    AMOUNT = 0  # quote amount, base quantity, or a fraction (0.5 for "50%")
    MAX_COUNT = 1  # fills allowed per position: the smallest max_count of its triggers


class TrigCol(IntEnum):
    """Integer fields of a trigger row."""

    KIND = 0
    OP = 1
    COL_A = 2  # column of the indicator matrix compared (-1: none)
    COL_B = 3  # column compared against (-1: the constant P0)
    GATE = 4  # boundary column: evaluate only when that timeframe's candle closes (-1: always)


class TrigVal(IntEnum):
    """Float fields of a trigger row (meaning depends on the kind)."""

    P0 = 0  # constant / threshold / lower bound / duration ns
    P1 = 1  # upper bound / tolerance


class Stat(IntEnum):
    """Slots of the statistics vector the engine fills for each run."""

    FINAL_VALUE = 0
    CASH = 1
    HOLDINGS = 2  # base quantity held at the end
    FEES = 3
    REALISED = 4
    FILLS = 5
    BUYS = 6
    SELLS = 7
    OPENED = 8
    WINNING = 9
    LOSING = 10
    REJECTED = 11
    RET_SUM = 12
    RET_SQ = 13
    DOWN_SQ = 14
    N_RET = 15
    MAX_DD = 16
    EXPOSED_BARS = 17
    LAST_FILL_VALUE = 18
    RECORDS = 19  # records produced (may exceed the capacity given: then run again)
    GROSS_PROFIT = 20
    GROSS_LOSS = 21
    MAX_DD_VALUE = 22
    CAPPED = 23  # open_long signals skipped because max_open_positions were open


N_STATS = len(Stat)

# One row per fill, or (verbose) per order that could not be carried out.
TRADE_DTYPE = np.dtype(
    [
        ("tick", np.int64),  # candle index of the fill (or of the decision for a rejection)
        ("action", np.int64),  # index of the action in the strategy
        ("position", np.int64),  # position number, 1-based in opening order (0: none)
        ("reason", np.int64),  # Reason
        ("price", np.float64),
        ("qty", np.float64),  # base quantity
        ("quote", np.float64),  # qty * price, before the fee
        ("fee", np.float64),
        ("cash", np.float64),  # cash after the fill
        ("value", np.float64),  # cash + everything held, valued at the fill price
        ("pnl", np.float64),  # realised PnL of a sell, after fees (0 for buys)
    ],
    align=True,
)

# Positions allowed open at once when a strategy sets no max_open_positions.
UNLIMITED_POSITIONS = 1000
