"""Compile strategies and candles into the plain arrays the numba engine walks.

A `Market` holds the candle columns; a `Columns` collects every column the triggers need
(indicators per timeframe, candle-close boundaries, price changes over a window, runs of
same-coloured candles), then computes each distinct one once into one matrix (columns x
candles), shared by every strategy compiled against it. A `Compiled` strategy is an action
table and a trigger table of numbers (``botq.backtest.enums``) pointing into that matrix.

Compile-time problems (a timeframe finer than the candles, an amount in a currency that is
neither side of the pair, an indicator input the candles lack) raise ``StrategyError`` with
the trigger's path, as validation does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from botq._memory import take_prefaulted
from botq.backtest.engine_nb import streak_nb
from botq.backtest.enums import (
    OPERATORS,
    UNLIMITED_POSITIONS,
    ActCol,
    ActionType,
    ActVal,
    AmountKind,
    TrigCol,
    TriggerKind,
    TrigVal,
)
from botq.backtest.strategy import Strategy
from botq.backtest.validate import (
    amount_kind,
    parse_amount,
    parse_consecutive,
    parse_duration_ns,
    parse_percent,
    target_number,
)
from botq.errors import MarketDataError, Problem, StrategyError
from botq.indicators import compute_array
from botq.market.candles import Candles
from botq.market.timeframes import NS_PER_MINUTE, TIMEFRAMES, resample_nb

NS_PER_YEAR = int(365.25 * 86_400 * 1_000_000_000)
_ACT_TYPES = {"open_long": ActionType.OPEN_LONG, "buy": ActionType.BUY, "sell": ActionType.SELL}


Key = tuple[Any, ...]


class ColumnCache:
    """Computed columns (indicators, boundaries, ...) of one set of candles, kept as the rows of
    one store (at most `max_bytes`) for later compiles. A compile whose columns are all in the
    store runs the engine on the store itself: no column is computed or copied twice, which is
    what lets a worker running chunk after chunk of one sweep cost little more than one call.
    A compile that finds the store full gets a private matrix, and the store starts afresh
    once no compile uses it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._store: np.ndarray | None = None
        self._view: np.ndarray | None = None  # the store, read-only, as the engine sees it
        self._slots: dict[Key, int] = {}
        self._next = 0  # first row not yet given out
        self._users = 0  # compiles whose matrix is the store
        self._full = False  # a compile found no room: start afresh once no compile uses it
        self.lock = threading.Lock()  # worker threads may compile against one Market

    def __len__(self) -> int:
        return len(self._slots)

    def slot(self, key: Key) -> int | None:
        """The store row holding `key`, or None (call with `lock` held)."""
        if self._full and not self._users:
            self._slots.clear()  # the working set outgrew the store: start afresh
            self._next = 0
            self._full = False
        return self._slots.get(key)

    def row(self, slot: int) -> np.ndarray:
        """A stored column (call with `lock` held)."""
        assert self._store is not None
        return self._store[slot]

    def reserve(self, count: int, n: int) -> tuple[int, np.ndarray] | None:
        """`count` consecutive free rows to compute columns into, as (first row, block), or
        None if they do not fit (call with `lock` held; then `commit` or `cancel`)."""
        if self._store is None:
            capacity = self.max_bytes // (8 * n) if n else 0
            if capacity == 0:
                return None
            self._store = _new_store(capacity, n)
            self._view = self._store.view()
            self._view.flags.writeable = False
        first = self._next
        if first + count > self._store.shape[0]:
            self._full = True
            return None
        self._next = first + count
        return first, self._store[first : first + count]

    def commit(self, first: int, keys: Sequence[Key]) -> None:
        """The reserved rows from `first` on now hold `keys`, in order."""
        for i, key in enumerate(keys):
            self._slots[key] = first + i

    def cancel(self, first: int) -> None:
        """Give back the rows reserved from `first` on (nothing was written to keep)."""
        self._next = first

    def use(self) -> np.ndarray:
        """The store as the engine's matrix, until `release()` (call with `lock` held)."""
        assert self._view is not None
        self._users += 1
        return self._view

    def release(self) -> None:
        """A compile is done with the store."""
        with self.lock:
            self._users -= 1


def _new_store(rows: int, n: int) -> np.ndarray:
    buf = take_prefaulted(rows * n * 8)  # a worker readies one ahead of its first sweep
    if buf is None:
        return np.empty((rows, n))  # pages are only taken as rows are written
    return buf[: rows * n].reshape(rows, n)


@dataclass(frozen=True, slots=True, eq=False)
class Market:
    """The candle columns a backtest reads, as contiguous arrays, plus their spacing; with a
    `cache`, the columns computed for one compile are reused by the next."""

    candles: Candles
    time: np.ndarray
    open: np.ndarray
    close: np.ndarray
    step_ns: int
    cache: ColumnCache | None = None

    @classmethod
    def of(cls, candles: Any, *, cache_mb: float = 0) -> Market:
        """From Candles or an OHLCV DataFrame with a UTC DatetimeIndex; cache_mb > 0 keeps up
        to that many MB of computed columns for later compiles against this Market."""
        if isinstance(candles, Market):
            return candles
        if isinstance(candles, pd.DataFrame):
            candles = Candles.from_pandas(candles)
        if not isinstance(candles, Candles):
            raise MarketDataError(
                "candles must be a botq Candles or an OHLCV DataFrame with a UTC DatetimeIndex, "
                f"got {type(candles).__name__}"
            )
        if len(candles) == 0:
            raise MarketDataError("no candles to backtest on: load a non-empty range")
        t = np.ascontiguousarray(candles.time, dtype=np.int64)
        # the spacing from the first few thousand candles: enough to see it, cheap at 1M rows
        step = (
            int(np.diff(t[:4096]).min())
            if len(t) > 1
            else TIMEFRAMES[candles.timeframe] * NS_PER_MINUTE
        )
        return cls(
            candles=candles,
            time=t,
            open=np.ascontiguousarray(candles.open, dtype=np.float64),
            close=np.ascontiguousarray(candles.close, dtype=np.float64),
            step_ns=step,
            cache=ColumnCache(int(cache_mb * 2**20)) if cache_mb > 0 else None,
        )

    @property
    def n(self) -> int:
        """Number of candles."""
        return int(self.time.shape[0])

    @property
    def pair(self) -> str:
        """The pair's name ("" when unknown)."""
        return self.candles.pair

    @property
    def bars_per_year(self) -> float:
        """Candles in a 365.25-day year at this spacing (crypto trades around the clock)."""
        return NS_PER_YEAR / self.step_ns if self.step_ns > 0 else float("nan")

    def index(self) -> pd.DatetimeIndex:
        """The candle times as a UTC DatetimeIndex."""
        return self.candles.time_index()


@dataclass(slots=True, eq=False)
class Columns:
    """Columns requested by triggers, computed once each by `build()`."""

    market: Market
    keys: dict[Key, int] = field(default_factory=dict)
    users: dict[Key, list[str]] = field(default_factory=dict)
    matrix: np.ndarray | None = None
    indicators_ms: float = 0.0
    # matrix row of each column when the matrix is the market's cache store (else None)
    rows_in_store: np.ndarray | None = None

    def _add(self, key: Key, path: str) -> int:
        if self.matrix is not None:
            raise RuntimeError("Columns.build() already ran; request columns before building")
        self.users.setdefault(key, []).append(path)
        return self.keys.setdefault(key, len(self.keys))

    def indicator(self, name: str, timeframe: str | None, path: str) -> int:
        """Row of indicator `name` on `timeframe` (None: the candles' own)."""
        return self._add(("ind", timeframe, name), path)

    def boundary(self, timeframe: str, path: str) -> int:
        """Row that is 1.0 on candles completing a candle of `timeframe`, else 0.0."""
        return self._add(("boundary", timeframe), path)

    def pct_change(self, window_ns: int, path: str) -> int:
        """Row of close / (close one window earlier) - 1."""
        return self._add(("pct", window_ns), path)

    def streak(self, timeframe: str | None, path: str) -> int:
        """Row of the signed run of same-coloured closed candles of `timeframe`."""
        return self._add(("streak", timeframe), path)

    def build(self) -> np.ndarray:
        """Compute every requested column once; the matrix is (columns, candles).

        With a cache on the market, columns computed by earlier compiles are reused and the
        matrix is the cache's store (see `rows_in_store`); call `release()` when done with it.
        """
        if self.matrix is not None:
            return self.matrix
        cache = self.market.cache
        if cache is None:
            return self._build(cache=None)
        with cache.lock:
            return self._build(cache)

    def _build(self, cache: ColumnCache | None) -> np.ndarray:
        import time as _time

        started = _time.perf_counter()
        m = self.market
        rows: dict[int, np.ndarray] = {}
        blocks: list[tuple[np.ndarray, list[int]]] = []
        by_tf: dict[str | None, list[str]] = {}
        stored = {} if cache is None else {k: cache.slot(k) for k in self.keys}
        in_store = cache is not None
        for key in self.keys:
            if stored.get(key) is None and key[0] == "ind":
                by_tf.setdefault(key[1], []).append(key[2])
        problems: list[Problem] = []
        for tf, names in by_tf.items():
            # computed straight into the store's rows when they fit
            spot = cache.reserve(len(names), m.n) if cache is not None and in_store else None
            in_store = spot is not None
            try:
                block, computed = compute_array(
                    m.candles, names, timeframe=tf, out=None if spot is None else spot[1]
                )
            except BaseException as exc:
                if spot is not None and cache is not None:
                    cache.cancel(spot[0])
                if not isinstance(exc, StrategyError):
                    raise
                problems += self._repath(exc.problems, tf)
                continue
            keys = [("ind", tf, nm) for nm in computed]
            if spot is not None and cache is not None:
                cache.commit(spot[0], keys)
            idx = [self.keys[key] for key in keys]
            blocks.append((block, idx))
            for r, j in zip(block, idx, strict=True):
                rows[j] = r
        if problems:
            raise StrategyError(problems)
        for key, j in self.keys.items():
            if j in rows or stored.get(key) is not None:
                continue
            if key[0] == "boundary":
                row = _boundary(m.time, m.step_ns, TIMEFRAMES[key[1]] * NS_PER_MINUTE)
            elif key[0] == "pct":
                row = _pct_change(m.time, m.close, key[1])
            else:
                row = _streak(m, key[1])
            spot = cache.reserve(1, m.n) if cache is not None and in_store else None
            in_store = spot is not None
            if spot is not None and cache is not None:
                spot[1][0] = row
                cache.commit(spot[0], [key])
                row = spot[1][0]
            rows[j] = row
        k = len(self.keys)
        if cache is not None and in_store:
            self.rows_in_store = np.array([cache.slot(key) for key in self.keys], dtype=np.int64)
            self.matrix = cache.use()
        elif (
            cache is None
            and len(blocks) == 1
            and k == len(blocks[0][1])
            and blocks[0][1] == list(range(k))
        ):
            self.matrix = blocks[0][0]  # one compute() call made every row: no copy
        else:
            self.matrix = np.empty((k, m.n), dtype=np.float64)
            for key, j in self.keys.items():
                slot = stored.get(key)
                self.matrix[j] = rows[j] if slot is None or cache is None else cache.row(slot)
        # read-only either way, so the engine is compiled for one array type only
        self.matrix.flags.writeable = False
        self.indicators_ms = (_time.perf_counter() - started) * 1000.0
        return self.matrix

    def release(self) -> None:
        """Done with the matrix: a cache store may start afresh when full again."""
        if self.rows_in_store is not None and self.market.cache is not None:
            self.market.cache.release()
            self.rows_in_store = None

    def _repath(self, problems: list[Problem], tf: str | None) -> list[Problem]:
        out = []
        for p in problems:
            users = self.users.get(("ind", tf, p.path)) or [
                u for key, us in self.users.items() if key[0] == "ind" and key[1] == tf for u in us
            ]
            out += [Problem(p.code, u, p.message) for u in dict.fromkeys(users)]
        return out


def _boundary(time: np.ndarray, step_ns: int, bucket_ns: int) -> np.ndarray:
    """1.0 where a candle's close completes a UTC-aligned bucket (or passes one, after a gap)."""
    done = (time + step_ns) // bucket_ns
    out = np.zeros(time.shape[0])
    if time.shape[0]:
        out[0] = 1.0 if (int(time[0]) + step_ns) % bucket_ns == 0 else 0.0
        out[1:] = done[1:] > done[:-1]
    return out


def _pct_change(time: np.ndarray, close: np.ndarray, window_ns: int) -> np.ndarray:
    """close / c0 - 1, c0 the close of the last candle opened at or before time - window."""
    ref = np.searchsorted(time, time - window_ns, side="right") - 1
    out = np.full(close.shape[0], np.nan)
    ok = ref >= 0
    out[ok] = close[ok] / close[ref[ok]] - 1.0
    return out


def _streak(m: Market, timeframe: str | None) -> np.ndarray:
    c = m.candles
    o = np.ascontiguousarray(c.open, dtype=np.float64)
    if timeframe is None:
        return streak_nb(o, m.close)
    bucket = TIMEFRAMES[timeframe] * NS_PER_MINUTE
    out = resample_nb(
        m.time,
        o,
        np.ascontiguousarray(c.high, dtype=np.float64),
        np.ascontiguousarray(c.low, dtype=np.float64),
        m.close,
        np.ascontiguousarray(c.volume, dtype=np.float64),
        np.zeros(m.n, np.int64),
        np.full(m.n, np.nan),
        bucket,
        0,
        m.step_ns,
        0,
    )
    bo, bc, visible = out[1], out[4], out[9]
    run = streak_nb(bo, bc)
    return np.where(visible >= 0, run[np.maximum(visible, 0)], 0.0)


# ----------------------------------------------------------------------------- strategies


@dataclass(frozen=True, slots=True, eq=False)
class Compiled:
    """A strategy as tables of numbers; rows of `Columns.matrix` are referred to by index."""

    strategy: Strategy
    act_int: np.ndarray  # (actions, len(ActCol)) int64
    act_f: np.ndarray  # (actions, len(ActVal)) float64
    trig_int: np.ndarray  # (triggers, len(TrigCol)) int64
    trig_f: np.ndarray  # (triggers, len(TrigVal)) float64
    stateful: np.ndarray  # trigger rows keeping per-position state (trailing, follow)
    max_positions: int
    labels: tuple[str, ...]  # per action: its triggers as text


def _effective_tf(
    tf: str | None, market: Market, path: str, problems: list[Problem]
) -> str | None | bool:
    """None for the candles' own timeframe, the name for a coarser one, False if invalid."""
    if tf is None:
        return None
    bucket = TIMEFRAMES[tf] * NS_PER_MINUTE
    step = market.step_ns
    if bucket == step:
        return None
    if bucket < step or bucket % step:
        problems.append(
            Problem(
                "INVALID_TIMEFRAME",
                f"{path}.timeframe",
                f"timeframe {tf!r} is not a whole multiple of the candle spacing "
                f"({step // NS_PER_MINUTE} min); use a coarser timeframe or finer candles",
            )
        )
        return False
    return tf


def compile_strategy(strategy: Strategy, columns: Columns) -> Compiled:
    """Turn a validated strategy into action and trigger tables over `columns`."""
    market = columns.market
    problems: list[Problem] = []
    n_act = len(strategy.actions)
    n_trig = sum(len(a.triggers) for a in strategy.actions)
    act_int = np.zeros((n_act, len(ActCol)), np.int64)
    act_f = np.zeros((n_act, len(ActVal)), np.float64)
    trig_int = np.full((n_trig, len(TrigCol)), -1, np.int64)
    trig_f = np.zeros((n_trig, len(TrigVal)), np.float64)
    stateful: list[int] = []
    t = 0
    for ai, action in enumerate(strategy.actions):
        apath = f"actions[{ai}]"
        act_int[ai, ActCol.TYPE] = _ACT_TYPES[action.type]
        amount = parse_amount(action.amount)
        assert amount is not None  # validated
        kind = amount_kind(amount[1], market.pair)
        if kind is None:
            problems.append(
                Problem(
                    "INVALID_AMOUNT_CURRENCY",
                    f"{apath}.amount",
                    f"{amount[1]} is neither side of {market.pair}; give the amount in "
                    f"{market.pair.replace('-', '/').split('/')[-1]} or "
                    f"{market.pair.replace('-', '/').split('/')[0]}, or as a percentage",
                )
            )
            kind = AmountKind.QUOTE
        act_int[ai, ActCol.AMOUNT_KIND] = kind
        act_f[ai, ActVal.AMOUNT] = amount[0]
        act_int[ai, ActCol.AVERAGE] = int(action.average_price)
        act_int[ai, ActCol.FIRST_TRIG] = t
        act_int[ai, ActCol.N_TRIG] = len(action.triggers)
        caps = [tr.max_count for tr in action.triggers if tr.max_count is not None]
        act_f[ai, ActVal.MAX_COUNT] = float(min(caps)) if caps else np.inf
        for ti, trig in enumerate(action.triggers):
            path = f"{apath}.triggers[{ti}]"
            _compile_trigger(trig, path, columns, market, trig_int[t], trig_f[t], problems)
            if trig_int[t, TrigCol.KIND] in (TriggerKind.TRAILING, TriggerKind.FOLLOW):
                stateful.append(t)
            t += 1
    if problems:
        raise StrategyError(problems)
    return Compiled(
        strategy=strategy,
        act_int=act_int,
        act_f=act_f,
        trig_int=trig_int,
        trig_f=trig_f,
        stateful=np.array(stateful, dtype=np.int64),
        max_positions=strategy.max_open_positions or UNLIMITED_POSITIONS,
        labels=tuple(a.describe() for a in strategy.actions),
    )


def _compile_trigger(
    trig: Any,
    path: str,
    columns: Columns,
    market: Market,
    ti: np.ndarray,
    tf_row: np.ndarray,
    problems: list[Problem],
) -> None:
    eff = _effective_tf(trig.timeframe, market, path, problems)
    if eff is False:
        return
    tf: str | None = eff if isinstance(eff, str) else None
    kind = trig.type
    if kind in ("pos_price_change", "pos_price_change_follow", "trailing_stop", "time_in_position"):
        ti[TrigCol.GATE] = columns.boundary(tf, path) if tf else -1
    if kind == "technical":
        ti[TrigCol.KIND] = TriggerKind.COMPARE
        ti[TrigCol.OP] = OPERATORS[trig.operator]
        ti[TrigCol.COL_A] = columns.indicator(trig.indicator, tf, f"{path}.indicator")
        num = target_number(trig.target)
        if num is None:
            ti[TrigCol.COL_B] = columns.indicator(str(trig.target), tf, f"{path}.target")
        else:
            tf_row[TrigVal.P0] = num
    elif kind == "pos_price_change":
        ti[TrigCol.KIND] = TriggerKind.POS_CHANGE
        tf_row[TrigVal.P0] = _pct(trig.value)
    elif kind == "pos_price_change_follow":
        ti[TrigCol.KIND] = TriggerKind.FOLLOW
        tf_row[TrigVal.P0] = _pct(trig.value)
        tf_row[TrigVal.P1] = abs(_pct(trig.tolerance))
    elif kind == "trailing_stop":
        ti[TrigCol.KIND] = TriggerKind.TRAILING
        tf_row[TrigVal.P0] = _pct(trig.value)
    elif kind == "time_in_position":
        ti[TrigCol.KIND] = TriggerKind.TIME_IN_POS
        dur = parse_duration_ns(trig.value)
        assert dur is not None
        tf_row[TrigVal.P0] = float(dur)
    elif kind == "price_change":
        unit = TIMEFRAMES[tf] * NS_PER_MINUTE if tf else market.step_ns
        window = unit * (trig.lookback or 1)
        v = _pct(trig.value)
        cap = _pct(trig.max_value) if trig.max_value is not None else None
        ti[TrigCol.KIND] = TriggerKind.RANGE
        ti[TrigCol.COL_A] = columns.pct_change(window, path)
        lo, hi = (
            (v, np.inf if cap is None else cap)
            if v >= 0
            else (
                -np.inf if cap is None else cap,
                v,
            )
        )
        tf_row[TrigVal.P0] = lo
        tf_row[TrigVal.P1] = hi
    elif kind == "next_candle":
        if tf is None:
            ti[TrigCol.KIND] = TriggerKind.ALWAYS
        else:
            ti[TrigCol.KIND] = TriggerKind.RANGE
            ti[TrigCol.COL_A] = columns.boundary(tf, path)
            tf_row[TrigVal.P0] = 0.5
            tf_row[TrigVal.P1] = np.inf
    elif kind == "consecutive_candles":
        pattern = parse_consecutive(trig.value)
        assert pattern is not None
        count, green = pattern
        ti[TrigCol.KIND] = TriggerKind.RANGE
        ti[TrigCol.COL_A] = columns.streak(tf, path)
        tf_row[TrigVal.P0] = count if green else -np.inf
        tf_row[TrigVal.P1] = np.inf if green else -count
    else:  # pragma: no cover - validation rejects unknown kinds
        raise AssertionError(kind)


def _pct(text: str | None) -> float:
    parsed = parse_percent(text)
    assert parsed is not None  # validated
    return parsed[0]


def compile_all(strategies: Sequence[Strategy], market: Market) -> tuple[list[Compiled], Columns]:
    """Compile strategies against one shared column set (each distinct column once)."""
    columns = Columns(market)
    compiled: list[Compiled] = []
    problems: list[Problem] = []
    for i, s in enumerate(strategies):
        if not isinstance(s, Strategy):
            raise TypeError(
                f"strategies[{i}] is a {type(s).__name__}; pass Strategy objects "
                "(Strategy.from_toml / from_dict, or botq.backtest.grid)"
            )
        try:
            compiled.append(compile_strategy(s, columns))
        except StrategyError as exc:
            prefix = f"strategies[{i}]." if len(strategies) > 1 else ""
            problems += [Problem(p.code, prefix + p.path, p.message) for p in exc.problems]
    if problems:
        raise StrategyError(problems)
    columns.build()
    rows = columns.rows_in_store
    if rows is not None:  # the matrix is the cache's store: point the triggers at its rows
        compiled = [replace(c, trig_int=_remap_columns(c.trig_int, rows)) for c in compiled]
    return compiled, columns


def _remap_columns(trig_int: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = trig_int.copy()
    for col in (TrigCol.COL_A, TrigCol.COL_B, TrigCol.GATE):
        used = out[:, col] >= 0
        out[used, col] = rows[out[used, col]]
    return out
