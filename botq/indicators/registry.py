"""Indicator names ("rsi_14", "bb_upper_20_2.5", ...) to numbers, computed by the numba kernels.

``compute(candles, names, timeframe=None)`` parses every name, builds a small graph of kernel
calls in which shared intermediates appear once (``sma_20`` and ``bb_mid`` are served by
the middle line that the fused Bollinger pass of ``bb_upper`` computes anyway, ``ema_26`` by
the slow EMA of the fused MACD pass of ``macd_hist``), runs independent kernels in parallel
threads (the kernels release the GIL) and returns a DataFrame aligned to the candles.

Name grammar: ``<base>`` or ``<base>_<p1>[_<p2>...]``; ``available()`` lists every family
with parameters, defaults and allowed ranges. Classic (TA-Lib-defined) indicators take periods
1-200 (``bb_*`` width 0.1-10, default 20 / 2.0; ``macd_*`` default 12/26/9 with fast < slow;
``stoch_rsi_<p>`` fastk/fastd default 5/3; ``ttm_trend`` default 6). Statistical ranges:
``zscore``, ``vwap_dev``, ``yz_vol``, ``prank`` 2-1000; ``parkinson``, ``gk_vol`` 1-1000;
``skew`` 3-1000; ``kurt`` 4-1000; ``hurst`` 32-1000; ``halflife`` 10-1000; ``vol_regime``
20-1000 (terciles of the 20-bar return std); ``autocorr_<lag>[_<window>]`` lag 1-100, window
10-1000 (default 100), lag < window. ``skew``, ``kurt``, ``hurst`` and ``autocorr`` are taken
on log returns of close; ``vwap`` restarts each UTC day.

Higher timeframe: with ``timeframe="1h"`` on 1-minute candles, the indicators are computed on
closed 1-hour candles (UTC-aligned buckets: open first, high max, low min, close last, volume
sum) and mapped back so that the row of minute t only sees buckets that are complete when
minute t's candle closes. Convention: the bucket [10:00, 11:00) becomes visible on the 10:59
row (that candle's close completes it) and rows 10:00-10:58 still see the bucket that ended at
10:00. If the last candle of a bucket is missing, the bucket becomes visible on the first row
of a later bucket. Candle spacing is taken as the smallest gap between consecutive times.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from botq.errors import MarketDataError, Problem, StrategyError
from botq.indicators import kernels as K
from botq.market.candles import utc_index
from botq.market.timeframes import NS_PER_MINUTE, resample_nb

COLUMNS = ("open", "high", "low", "close", "volume")
NS_PER_DAY = 1440 * NS_PER_MINUTE
# Below this many rows the thread pool costs more than it saves.
PARALLEL_MIN_ROWS = 50_000

CLASSIC = (1, 200)

# ----------------------------------------------------------------------------- name specs


@dataclass(frozen=True, slots=True)
class Param:
    """One numeric parameter of an indicator name: allowed range and default (None = required)."""

    name: str
    lo: float
    hi: float
    default: int | float | None = None
    is_float: bool = False


@dataclass(frozen=True, slots=True)
class IndicatorInfo:
    """What ``available()`` lists for one indicator family."""

    template: str
    example: str
    family: str
    params: tuple[Param, ...]
    inputs: tuple[str, ...]
    description: str

    def usage(self) -> str:
        """Human description of the parameters, e.g. 'period 1-200'."""
        parts = []
        for p in self.params:
            rng = f"{p.lo:g}-{p.hi:g}"
            dflt = "" if p.default is None else f", default {p.default:g}"
            parts.append(f"{p.name} {rng}{dflt}")
        return "; ".join(parts) if parts else "no parameters"


# A node of the evaluation graph: (kind, dependency keys, parameters). Columns are
# ("col", name, ()) nodes. Equal nodes are computed once per compute() call.
Key = tuple[Any, ...]


def _col(name: str) -> Key:
    return ("col", name, ())


def _node(kind: str, deps: tuple[Key, ...], *params: Any) -> Key:
    return (kind, deps, tuple(params))


CLOSE = _col("close")


def _sma(src: Key, p: int) -> Key:
    return _node("sma", (src,), p)


def _rstd(src: Key, p: int) -> Key:
    return _node("rstd", (src,), p)


def _rsi(p: int) -> Key:
    return _node("rsi", (CLOSE,), p)


def _ema(p: int) -> Key:
    return _node("ema", (CLOSE,), p)


def _logret() -> Key:
    return _node("logret", (CLOSE,))


def _obv() -> Key:
    return _node("obv", (CLOSE, _col("volume")))


def _vwap() -> Key:
    return _node("vwap", tuple(_col(c) for c in ("high", "low", "close", "volume", "session")))


def _macd(f: int, s: int, g: int) -> Key:
    # one fused pass; its 4th output is the slow EMA, which also serves a requested ema_<s>
    return _node("macd", (CLOSE,), f, s, g)


def _bb(p: int, w: float) -> Key:
    # one fused pass; outputs (upper, lower, middle), the middle also serves sma_<p> / bb_mid
    return _node("bands", (CLOSE,), p, float(w))


def _stochrsi(p: int, k: int, d: int) -> Key:
    return _node("stochf", (_rsi(p),), k, d)


HLC = (_col("high"), _col("low"), CLOSE)
OHLC = (_col("open"), *HLC)

# builder(params) -> (node key, output index or None)
Builder = Callable[[tuple[Any, ...]], tuple[Key, int | None]]


@dataclass(frozen=True, slots=True)
class _Spec:
    info: IndicatorInfo
    build: Builder
    all_or_none: bool = False  # optional parameters must be given all together
    check: Callable[[tuple[Any, ...]], str | None] | None = None


def _period(lo: int, hi: int, default: int | None = None, name: str = "period") -> Param:
    return Param(name, lo, hi, default)


def _classic(default: int | None = None, name: str = "period") -> Param:
    return _period(CLASSIC[0], CLASSIC[1], default, name)


def _macd_check(v: tuple[Any, ...]) -> str | None:
    if v[0] >= v[1]:
        return f"fast period {v[0]} must be below slow period {v[1]} (e.g. macd_hist_12_26_9)"
    return None


def _autocorr_check(v: tuple[Any, ...]) -> str | None:
    if v[0] >= v[1]:
        return f"lag {v[0]} must be below the window {v[1]} (e.g. autocorr_1_100)"
    return None


_MACD = (_classic(12, "fast"), _classic(26, "slow"), _classic(9, "signal"))
_BB = (_classic(20), Param("width", 0.1, 10.0, 2.0, is_float=True))
_STOCH = (_classic(None), _classic(5, "fastk"), _classic(3, "fastd"))


def _spec(
    template: str,
    example: str,
    family: str,
    params: tuple[Param, ...],
    inputs: tuple[str, ...],
    description: str,
    build: Builder,
    **kw: Any,
) -> _Spec:
    info = IndicatorInfo(template, example, family, params, inputs, description)
    return _Spec(info, build, **kw)


_C, _S = "classic", "statistical"
_SPEC_LIST: list[tuple[str, _Spec]] = [
    ("price", _spec("price", "price", _C, (), ("close",), "the close", lambda v: (CLOSE, None))),
    ("sma", _spec("sma_<period>", "sma_20", _C, (_classic(),), ("close",),
                  "simple moving average of close (TA-Lib SMA)",
                  lambda v: (_sma(CLOSE, v[0]), None))),
    ("ema", _spec("ema_<period>", "ema_20", _C, (_classic(),), ("close",),
                  "exponential moving average of close (TA-Lib EMA)",
                  lambda v: (_ema(v[0]), None))),
    ("rsi", _spec("rsi_<period>", "rsi_14", _C, (_classic(),), ("close",),
                  "Wilder RSI of close, 0-100 (TA-Lib RSI)", lambda v: (_rsi(v[0]), None))),
    ("macd_line", _spec("macd_line[_<fast>_<slow>_<signal>]", "macd_line", _C, _MACD,
                        ("close",), "MACD line (TA-Lib MACD, default 12/26/9)",
                        lambda v: (_macd(*v), 0), all_or_none=True, check=_macd_check)),
    ("macd_signal", _spec("macd_signal[_<fast>_<slow>_<signal>]", "macd_signal", _C, _MACD,
                          ("close",), "MACD signal line (TA-Lib MACD)",
                          lambda v: (_macd(*v), 1), all_or_none=True, check=_macd_check)),
    ("macd_hist", _spec("macd_hist[_<fast>_<slow>_<signal>]", "macd_hist_12_26_9", _C, _MACD,
                        ("close",), "MACD histogram (TA-Lib MACD)",
                        lambda v: (_macd(*v), 2), all_or_none=True, check=_macd_check)),
    ("bb_upper", _spec("bb_upper[_<period>[_<width>]]", "bb_upper_20_2.5", _C, _BB, ("close",),
                       "upper Bollinger band, SMA + width * population std (TA-Lib BBANDS)",
                       lambda v: (_bb(*v), 0))),
    ("bb_mid", _spec("bb_mid[_<period>[_<width>]]", "bb_mid", _C, _BB, ("close",),
                     "middle Bollinger band = SMA (TA-Lib BBANDS)",
                     lambda v: (_sma(CLOSE, v[0]), None))),
    ("bb_lower", _spec("bb_lower[_<period>[_<width>]]", "bb_lower", _C, _BB, ("close",),
                       "lower Bollinger band, SMA - width * population std (TA-Lib BBANDS)",
                       lambda v: (_bb(*v), 1))),
    ("stoch_rsi", _spec("stoch_rsi_<period>[_<fastk>_<fastd>]", "stoch_rsi_14", _C, _STOCH,
                        ("close",), "StochRSI fast %K, 0-100 (TA-Lib STOCHRSI, default 5/3)",
                        lambda v: (_stochrsi(*v), 0), all_or_none=True)),
    ("stoch_rsi_d", _spec("stoch_rsi_d_<period>[_<fastk>_<fastd>]", "stoch_rsi_d_14", _C,
                          _STOCH, ("close",), "StochRSI fast %D (TA-Lib STOCHRSI)",
                          lambda v: (_stochrsi(*v), 1), all_or_none=True)),
    ("roc", _spec("roc_<period>", "roc_10", _C, (_classic(),), ("close",),
                  "rate of change of close in percent (TA-Lib ROC)",
                  lambda v: (_node("roc", (CLOSE,), v[0]), None))),
    ("atr", _spec("atr_<period>", "atr_14", _C, (_classic(),), ("high", "low", "close"),
                  "Wilder average true range (TA-Lib ATR)",
                  lambda v: (_node("atr", HLC, v[0]), None))),
    ("obv", _spec("obv", "obv", _C, (), ("close", "volume"), "on-balance volume (TA-Lib OBV)",
                  lambda v: (_obv(), None))),
    ("obv_sma", _spec("obv_sma_<period>", "obv_sma_20", _C, (_classic(),), ("close", "volume"),
                      "SMA of on-balance volume", lambda v: (_sma(_obv(), v[0]), None))),
    ("vol_sma", _spec("vol_sma_<period>", "vol_sma_20", _C, (_classic(),), ("volume",),
                      "SMA of volume", lambda v: (_sma(_col("volume"), v[0]), None))),
    ("ttm_trend", _spec("ttm_trend[_<period>]", "ttm_trend", _C, (_classic(6),),
                        ("high", "low", "close"),
                        "TTM trend: +1 close above mean (h+l)/2 of the previous bars, -1 below",
                        lambda v: (_node("ttm", HLC, v[0]), None))),
    ("rstd", _spec("rstd_<period>", "rstd_20", _C, (_classic(),), ("close",),
                   "rolling population std of close (TA-Lib STDDEV)",
                   lambda v: (_rstd(CLOSE, v[0]), None))),
    ("zscore", _spec("zscore_<period>", "zscore_20", _S, (_period(2, 1000),), ("close",),
                     "(close - SMA) / population std",
                     lambda v: (_node("zscore", (CLOSE,), v[0]), None))),
    ("prank", _spec("prank_<period>", "prank_50", _S, (_period(2, 1000),), ("close",),
                    "percentile rank of close in its window, 0-100",
                    lambda v: (_node("prank", (CLOSE,), v[0]), None))),
    ("parkinson", _spec("parkinson_<period>", "parkinson_20", _S, (_period(1, 1000),),
                        ("high", "low"), "Parkinson range volatility per bar",
                        lambda v: (_node("parkinson", HLC[:2], v[0]), None))),
    ("gk_vol", _spec("gk_vol_<period>", "gk_vol_20", _S, (_period(1, 1000),),
                     ("open", "high", "low", "close"), "Garman-Klass volatility per bar",
                     lambda v: (_node("gk", OHLC, v[0]), None))),
    ("yz_vol", _spec("yz_vol_<period>", "yz_vol_20", _S, (_period(2, 1000),),
                     ("open", "high", "low", "close"), "Yang-Zhang volatility per bar",
                     lambda v: (_node("yz", OHLC, v[0]), None))),
    ("hurst", _spec("hurst_<period>", "hurst_200", _S, (_period(32, 1000),), ("close",),
                    "Hurst exponent of log returns by rescaled range (R/S)",
                    lambda v: (_node("hurst", (_logret(),), v[0]), None))),
    ("halflife", _spec("halflife_<period>", "halflife_200", _S, (_period(10, 1000),),
                       ("close",), "AR(1) mean-reversion half-life of close in bars (inf: none)",
                       lambda v: (_node("halflife", (CLOSE,), v[0]), None))),
    ("vol_regime", _spec("vol_regime_<period>", "vol_regime_100", _S, (_period(20, 1000),),
                         ("close",),
                         "1/2/3 = low/normal/high tercile of 20-bar return std in its window",
                         lambda v: (_node("regime", (_rstd(_logret(), 20),), v[0]), None))),
    ("vwap", _spec("vwap", "vwap", _S, (), ("high", "low", "close", "volume", "time"),
                   "session VWAP of typical price, session = UTC day",
                   lambda v: (_vwap(), None))),
    ("vwap_dev", _spec("vwap_dev_<period>", "vwap_dev_20", _S, (_period(2, 1000),),
                       ("high", "low", "close", "volume", "time"),
                       "(close - VWAP) / population std of close over the period",
                       lambda v: (_node("zfrom", (CLOSE, _vwap(), _rstd(CLOSE, v[0]))), None))),
    ("skew", _spec("skew_<period>", "skew_60", _S, (_period(3, 1000),), ("close",),
                   "sample skewness of log returns (pandas/scipy bias-corrected)",
                   lambda v: (_node("skew", (_logret(),), v[0]), None))),
    ("kurt", _spec("kurt_<period>", "kurt_60", _S, (_period(4, 1000),), ("close",),
                   "sample excess kurtosis of log returns (pandas/scipy bias-corrected)",
                   lambda v: (_node("kurt", (_logret(),), v[0]), None))),
    ("autocorr", _spec("autocorr_<lag>[_<window>]", "autocorr_1", _S,
                       (_period(1, 100, name="lag"), _period(10, 1000, 100, "window")),
                       ("close",), "autocorrelation of log returns at a lag over a window",
                       lambda v: (_node("autocorr", (_logret(),), v[0], v[1]), None),
                       check=_autocorr_check)),
]  # fmt: skip
_SPECS: dict[str, _Spec] = dict(_SPEC_LIST)
_BASES_LONGEST_FIRST = sorted(_SPECS, key=len, reverse=True)


def _upper_lower_mid(bands: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[Any, ...]:
    up, mid, lo = bands
    return up, lo, mid


def _pair(
    kernel: Callable[..., None], x: np.ndarray, a: int, b: int, o1: np.ndarray, o2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A two-output kernel that writes into o1 and o2, as a node returning both."""
    kernel(x, a, b, o1, o2)
    return o1, o2


# kind -> function(alloc, *dependency arrays, *params); alloc(i) gives the array that output
# i is written to (a row of the result block when the output is requested, else a new NumPy
# array: NumPy allocates on huge pages, numba's allocator would page-fault every 4 KiB);
# alloc(i, True) gives an empty array instead, which tells the kernel to skip that output.
# Looked up at call time, so tests may wrap entries.
_EVAL: dict[str, Callable[..., Any]] = {
    "sma": lambda o, x, p: K.sma_nb(x, p, o(0)),
    "ema": lambda o, x, p: K.ema_nb(x, p, o(0)),
    "ema2": lambda o, x, a, b: _pair(K.ema_pair_nb, x, a, b, o(0), o(1)),
    "rsi": lambda o, x, p: K.rsi_nb(x, p, o(0)),
    "macd": lambda o, x, f, s, g: K.macd_slow_nb(x, f, s, g, o(0), o(1), o(2), o(3, True)),
    "rstd": lambda o, x, p: K.rolling_std_nb(x, p, o(0)),
    "bands": lambda o, x, p, w: _upper_lower_mid(K.bbands_nb(x, p, w, o(0), o(2, True), o(1))),
    "stochf": lambda o, x, k, d: K.stochf_nb(x, k, d, o(0), o(1)),
    "roc": lambda o, x, p: K.roc_nb(x, p, o(0)),
    "atr": lambda o, h, lo, c, p: K.atr_nb(h, lo, c, p, o(0)),
    "obv": lambda o, c, v: K.obv_nb(c, v, o(0)),
    "ttm": lambda o, h, lo, c, p: K.ttm_trend_nb(h, lo, c, p, o(0)),
    "zscore": lambda o, x, p: K.zscore_nb(x, p, o(0)),
    "zfrom": lambda o, x, m, s: K.zscore_from_nb(x, m, s, o(0)),
    "prank": lambda o, x, p: K.percentile_rank_nb(x, p),
    "parkinson": lambda o, h, lo, p: K.parkinson_nb(h, lo, p, o(0)),
    "gk": lambda o, op, h, lo, c, p: K.garman_klass_nb(op, h, lo, c, p, o(0)),
    "yz": lambda o, op, h, lo, c, p: K.yang_zhang_nb(op, h, lo, c, p),
    "logret": lambda o, x: K.log_returns_nb(x, o(0)),
    "hurst": lambda o, r, p: K.hurst_nb(r, p),
    "halflife": lambda o, x, p: K.half_life_nb(x, p),
    "regime": lambda o, v, p: K.tercile_regime_nb(v, p),
    "vwap": lambda o, h, lo, c, v, session: K.vwap_nb(h, lo, c, v, session, o(0)),
    "skew": lambda o, r, p: K.skew_nb(r, p, o(0)),
    "kurt": lambda o, r, p: K.kurt_nb(r, p, o(0)),
    "autocorr": lambda o, r, lag, w: K.autocorr_nb(r, lag, w, o(0)),
}


def available() -> list[IndicatorInfo]:
    """Every indicator family: name template, example, parameters with ranges, inputs."""
    return [s.info for s in _SPECS.values()]


def names() -> list[str]:
    """Name templates of every indicator, e.g. 'rsi_<period>', 'bb_upper[_<period>[_<width>]]'."""
    return [s.info.template for s in _SPECS.values()]


# ----------------------------------------------------------------------------- parsing

_INT_RE = re.compile(r"^[0-9]+$")
_FLOAT_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A validated indicator name: its family, parameter values and graph node."""

    name: str
    base: str
    values: tuple[Any, ...]
    key: Key
    output: int | None
    inputs: tuple[str, ...]


def _unknown(name: str) -> Problem:
    examples = [s.info.example for s in _SPECS.values()]
    guess = difflib.get_close_matches(name, examples + list(_SPECS), n=1, cutoff=0.6)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return Problem(
        "INVALID_INDICATOR",
        name,
        f"unknown indicator {name!r}{hint}; valid names are " + ", ".join(names()),
    )


def parse(name: str) -> Parsed:
    """Parse and validate one indicator name; raise StrategyError naming the fix if bad."""
    out = _parse(name)
    if isinstance(out, Problem):
        raise StrategyError(out)
    return out


def _parse(name: str) -> Parsed | Problem:
    if not isinstance(name, str) or not name:
        return Problem(
            "INVALID_INDICATOR",
            str(name),
            "indicator names are non-empty strings "
            "such as 'rsi_14'; valid names are " + ", ".join(names()),
        )
    return _parse_name(name)


@functools.lru_cache(maxsize=4096)
def _parse_name(name: str) -> Parsed | Problem:
    """`_parse` of a non-empty string, remembered: validating a 1,000-variant sweep parses the
    same few names thousands of times (both results are immutable)."""
    for base in _BASES_LONGEST_FIRST:
        if name == base:
            toks: list[str] = []
        elif name.startswith(base + "_"):
            toks = name[len(base) + 1 :].split("_")
        else:
            continue
        return _parse_params(name, base, _SPECS[base], toks)
    return _unknown(name)


def _parse_params(name: str, base: str, spec: _Spec, toks: list[str]) -> Parsed | Problem:
    info = spec.info
    params = info.params
    required = sum(1 for p in params if p.default is None)
    counts = {required, len(params)} if spec.all_or_none else set(range(required, len(params) + 1))
    if len(toks) not in counts:
        if not params:
            msg = f"{base!r} takes no parameters; write {info.example!r}"
        else:
            msg = (
                f"{base!r} takes {' or '.join(str(c) for c in sorted(counts))} parameter(s) "
                f"({info.template}, {info.usage()}), got {len(toks)}; e.g. {info.example!r}"
            )
        return Problem("INVALID_PERIOD", name, msg)
    values: list[Any] = []
    for p, tok in zip(params, toks, strict=False):
        rx = _FLOAT_RE if p.is_float else _INT_RE
        if not rx.match(tok):
            kind = "a number like 2.5" if p.is_float else "a whole number"
            return Problem(
                "INVALID_PERIOD",
                name,
                f"{p.name} {tok!r} of {base!r} must be {kind} in {p.lo:g}-{p.hi:g}; "
                f"e.g. {info.example!r}",
            )
        val: int | float = float(tok) if p.is_float else int(tok)
        if not (p.lo <= val <= p.hi):
            return Problem(
                "INVALID_PERIOD_RANGE",
                name,
                f"{p.name} {val:g} of {base!r} is out of range; use {p.lo:g}-{p.hi:g} "
                f"(e.g. {info.example!r})",
            )
        values.append(val)
    for p in params[len(toks) :]:
        values.append(p.default)
    vals = tuple(values)
    if spec.check is not None:
        why = spec.check(vals)
        if why:
            return Problem("INVALID_PERIOD", name, why)
    key, output = spec.build(vals)
    return Parsed(name, base, vals, key, output, info.inputs)


# ----------------------------------------------------------------------------- candles


class _Alias:
    """The memory of a read-only array under a writeable flag, keeping the array alive."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr
        iface = dict(arr.__array_interface__)
        iface["data"] = (iface["data"][0], False)
        self.__array_interface__ = iface


def _as_float(a: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise MarketDataError(f"candle columns must be 1-D, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        return np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        # pandas hands out read-only views (copy-on-write). numba types read-only arrays
        # apart and would compile every kernel a second time; copying cost ~1 ms per column
        # at 1M rows. Kernels never write their inputs, so alias the memory instead.
        return np.asarray(_Alias(arr))
    return arr


def _as_ns(t: Any) -> np.ndarray:
    arr = np.asarray(t)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").view(np.int64)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    else:
        raise MarketDataError(
            f"candle times must be datetime64 or int64 nanoseconds, got dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr)


def _columns(candles: Any, wanted: Iterable[str] = (*COLUMNS, "time")) -> dict[str, np.ndarray]:
    """Candle columns as float64 NumPy arrays, plus "time" as int64 UTC ns when known.

    Accepts a pandas DataFrame (open/high/low/close/volume columns; a DatetimeIndex, naive
    taken as UTC, gives the times) or any object with attributes open, high, low, close,
    volume and time (a ``Candles``). Only `wanted` columns are converted; missing ones are
    simply absent from the result.
    """
    want = set(wanted)
    cols: dict[str, np.ndarray] = {}
    if isinstance(candles, pd.DataFrame):
        for c in COLUMNS:
            if c in want and c in candles.columns:
                cols[c] = _as_float(candles[c].to_numpy(dtype=np.float64, na_value=np.nan))
        idx = candles.index
        if "time" in want and isinstance(idx, pd.DatetimeIndex):
            if idx.tz is None:
                idx = idx.tz_localize("UTC")
            cols["time"] = np.ascontiguousarray(idx.as_unit("ns").asi8)
        return cols
    if all(hasattr(candles, a) for a in ("close", "time")):
        for c in COLUMNS:
            v = getattr(candles, c, None)
            if c in want and v is not None:
                cols[c] = _as_float(v)
        if "time" in want:
            cols["time"] = _as_ns(candles.time)
        return cols
    raise MarketDataError(
        "candles must be a pandas DataFrame with open/high/low/close/volume columns and a UTC "
        f"DatetimeIndex, or a Candles object; got {type(candles).__name__}"
    )


def _strictly_increasing(candles: Any, t: np.ndarray) -> bool:
    if isinstance(candles, pd.DataFrame) and isinstance(candles.index, pd.DatetimeIndex):
        idx = candles.index  # pandas caches both answers on the index: free after the first
        return bool(idx.is_monotonic_increasing and idx.is_unique)
    return t.shape[0] < 2 or bool(np.all(t[1:] > t[:-1]))


def _length(candles: Any) -> int:
    if isinstance(candles, pd.DataFrame):
        return len(candles)
    return int(np.asarray(candles.close).shape[0])


def _index(candles: Any, n: int) -> pd.Index:
    if isinstance(candles, pd.DataFrame):
        return candles.index
    time_index = getattr(candles, "time_index", None)
    if time_index is not None:
        return time_index()  # Candles build theirs once
    t = getattr(candles, "time", None)
    if t is not None:
        return utc_index(_as_ns(t), name=None)
    return pd.RangeIndex(n)


# ----------------------------------------------------------------------------- timeframes

_TF_RE = re.compile(r"^([1-9][0-9]*)(m|h|d|w)$")
_TF_UNIT = {"m": NS_PER_MINUTE, "h": 60 * NS_PER_MINUTE, "d": NS_PER_DAY, "w": 7 * NS_PER_DAY}


def parse_timeframe(timeframe: str) -> tuple[int, int]:
    """'15m' / '1h' / '4h' / '1d' / '1w' -> (bucket length ns, bucket offset ns).

    Buckets are aligned to the Unix epoch (so to UTC hours and days); weeks start on Monday
    00:00 UTC (offset 4 days, since 1970-01-01 was a Thursday).
    """
    m = _TF_RE.match(timeframe) if isinstance(timeframe, str) else None
    if not m:
        raise StrategyError(
            Problem(
                "INVALID_TIMEFRAME",
                "timeframe",
                f"timeframe {timeframe!r} is not understood; write <n><unit> with unit m, h, d "
                "or w, e.g. '5m', '1h', '4h', '1d'",
            )
        )
    unit = m.group(2)
    offset = 4 * NS_PER_DAY if unit == "w" else 0
    return int(m.group(1)) * _TF_UNIT[unit], offset


def _step_ns(t: np.ndarray) -> int:
    """Candle spacing: the smallest gap between consecutive times (0 if unknown)."""
    if t.shape[0] < 2:
        return 0
    return int(np.diff(t).min())


# ----------------------------------------------------------------------------- evaluation


def _collect(keys: list[Key]) -> list[Key]:
    """All non-column nodes needed for keys, dependencies before dependents."""
    order: list[Key] = []
    seen: set[Key] = set()

    def visit(k: Key) -> None:
        if k in seen or k[0] == "col":
            return
        seen.add(k)
        for d in k[1]:
            visit(d)
        order.append(k)

    for k in keys:
        visit(k)
    return order


# Per node, the outputs that were asked for: the array to write each into, or None for a new one.
Dests = dict[Key, dict[int | None, np.ndarray | None]]


def _run_node(key: Key, deps: dict[Key, Any], dest: dict[int | None, np.ndarray | None]) -> Any:
    kind, dep_keys, params = key
    arrays = [deps[d] for d in dep_keys]
    n = arrays[0].shape[0]

    def alloc(i: int, optional: bool = False) -> np.ndarray:
        d = dest.get(i)
        if d is not None:
            return d
        skip = optional and i not in dest
        return np.empty(0 if skip else n, dtype=np.float64)

    return _EVAL[kind](alloc, *arrays, *params)


def _evaluate(
    keys: list[Key],
    base: dict[Key, Any],
    n: int,
    workers: int | None,
    dests: Dests,
) -> dict[Key, Any]:
    """Evaluate every node once; independent nodes run concurrently in a thread pool."""
    results = dict(base)
    order = _collect(keys)
    nthreads = workers if workers is not None else (os.cpu_count() or 1)
    if nthreads <= 1 or n < PARALLEL_MIN_ROWS or len(order) < 2:
        for k in order:
            results[k] = _run_node(k, results, dests.get(k, {}))
        return results
    pending = list(order)
    running: dict[Future[Any], Key] = {}
    with ThreadPoolExecutor(max_workers=nthreads, thread_name_prefix="botq-ind") as pool:
        while pending or running:
            for k in [k for k in pending if all(d in results for d in k[1])]:
                pending.remove(k)
                # results is written only by this thread; workers get their inputs
                deps = {d: results[d] for d in k[1]}
                running[pool.submit(_run_node, k, deps, dests.get(k, {}))] = k
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                results[running.pop(f)] = f.result()
    return results


def _share_fused_outputs(parsed: list[Parsed]) -> list[Parsed]:
    """Serve ema_<p> from a requested MACD with slow period p, and sma_<p> / bb_mid_<p> from
    requested Bollinger bands of period p: their fused passes compute those anyway. Other EMAs
    are computed two at a time."""
    slow = {p.key[2][1]: p.key for p in parsed if p.key[0] == "macd"}
    bands = {p.key[2][0]: p.key for p in parsed if p.key[0] == "bands"}
    out = []
    for p in parsed:
        if p.key[1] == (CLOSE,) and p.output is None:
            if p.key[0] == "ema" and p.key[2][0] in slow:
                p = replace(p, key=slow[p.key[2][0]], output=3)
            elif p.key[0] == "sma" and p.key[2][0] in bands:
                p = replace(p, key=bands[p.key[2][0]], output=2)
        out.append(p)
    # the remaining EMAs in pairs, each pair one pass (see ema_pair_nb)
    periods = sorted({p.key[2][0] for p in out if p.key[0] == "ema" and p.output is None})
    pairs = {}
    for a, b in zip(periods[0::2], periods[1::2], strict=False):
        pairs[a] = (_node("ema2", (CLOSE,), a, b), 0)
        pairs[b] = (_node("ema2", (CLOSE,), a, b), 1)
    return [
        replace(p, key=pairs[p.key[2][0]][0], output=pairs[p.key[2][0]][1])
        if p.key[0] == "ema" and p.output is None and p.key[2][0] in pairs
        else p
        for p in out
    ]


def _missing(parsed: list[Parsed], cols: dict[str, np.ndarray]) -> list[Problem]:
    problems = []
    bad: dict[str, bool] = {}

    def absent(c: str) -> bool:
        if c not in bad:
            a = cols.get(c)
            bad[c] = a is None or (
                c != "time" and a.shape[0] > 0 and bool(np.isnan(a[0])) and bool(np.isnan(a).all())
            )
        return bad[c]

    for p in parsed:
        for c in p.inputs:
            if absent(c):
                what = "a UTC DatetimeIndex (or Candles.time)" if c == "time" else f"column {c!r}"
                extra = "" if c == "time" else " (or it is all NaN)"
                problems.append(
                    Problem(
                        "MISSING_INPUT",
                        p.name,
                        f"{p.name!r} needs {what}, which the candles lack{extra}; "
                        f"add it or drop {p.name!r}",
                    )
                )
                break
    return problems


def compute(
    candles: Any,
    names: Sequence[str] | str,
    timeframe: str | None = None,
    *,
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> pd.DataFrame:
    """Compute indicators by name; one column per distinct name, aligned to the candles.
    See `compute_array` for the parameters; the DataFrame is a view of its array."""
    block, columns = compute_array(candles, names, timeframe, workers=workers, out=out)
    return pd.DataFrame(block.T, index=_index(candles, block.shape[1]), columns=columns, copy=False)


def compute_array(
    candles: Any,
    names: Sequence[str] | str,
    timeframe: str | None = None,
    *,
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Compute indicators by name into a (distinct names x candles) float64 array; returns it
    and the names of its rows. What `compute` does without building a DataFrame (~0.4 ms per
    call), for callers that work on arrays (the backtest engine).

    candles: a DataFrame with open/high/low/close/volume and a UTC DatetimeIndex, or a
    Candles-like object (attributes open, high, low, close, volume, time). timeframe: compute
    on closed candles of that timeframe (e.g. "1h") and map back without look-ahead (see the
    module docstring). workers: threads to use (default: all cores; 1 = serial). out: a
    float64 array (distinct names x candles, C-contiguous) to write the columns into instead
    of new memory, for callers that keep columns in a store of their own.
    Raises StrategyError (codes INVALID_INDICATOR, INVALID_PERIOD, INVALID_PERIOD_RANGE,
    MISSING_INPUT, INVALID_TIMEFRAME) listing every bad name with its fix.
    """
    wanted = [names] if isinstance(names, str) else list(names)
    wanted = list(dict.fromkeys(wanted))
    parsed: list[Parsed] = []
    problems: list[Problem] = []
    for nm in wanted:
        r = _parse(nm)
        if isinstance(r, Problem):
            problems.append(r)
        else:
            parsed.append(r)
    needed = {c for p in parsed for c in p.inputs}
    if timeframe is not None:
        needed |= {"time", *(c for c in COLUMNS if c in needed)}
    cols = _columns(candles, needed)
    n = _length(candles)
    for c, a in cols.items():
        if a.shape[0] != n:
            raise MarketDataError(f"candle column {c!r} has {a.shape[0]} rows, expected {n}")
    problems += _missing(parsed, cols)
    if timeframe is not None and "time" not in cols:
        problems.append(
            Problem(
                "MISSING_INPUT",
                "timeframe",
                "a higher timeframe needs candle times: give a UTC DatetimeIndex (or "
                "Candles.time), or drop timeframe",
            )
        )
    if problems:
        raise StrategyError(problems)
    parsed = _share_fused_outputs(parsed)
    t = cols.get("time")
    if t is not None and not _strictly_increasing(candles, t):
        raise MarketDataError("candles must be sorted by time with no duplicate times")

    closed: np.ndarray | None = None
    if timeframe is not None:
        assert t is not None
        closed, cols = _resample(cols, t, timeframe)
        t = cols["time"]
    base: dict[Key, Any] = {_col(k): a for k, a in cols.items()}
    if t is not None and "session" in {
        d[1] for p in parsed for d in _collect([p.key]) for d in d[1]
    }:
        base[_col("session")] = np.floor_divide(t, NS_PER_DAY)
    m = next(iter(cols.values())).shape[0] if cols else n

    # requested outputs are written straight into the rows of one block, which becomes the
    # DataFrame without a copy (pandas would otherwise consolidate the columns: 16 ms at 1M)
    if out is None:
        block = np.empty((len(parsed), n), dtype=np.float64)
    elif out.shape != (len(parsed), n) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float64 array of shape {(len(parsed), n)} (distinct "
            f"names x candles), got {out.dtype} {out.shape}"
        )
    else:
        block = out
    dests: Dests = {}
    owner: dict[tuple[Key, int | None], int] = {}
    for j, p in enumerate(parsed):
        if (p.key, p.output) not in owner and p.key[0] != "col":
            owner[(p.key, p.output)] = j
            # on a higher timeframe the outputs are mapped back into the block afterwards
            row = block[j] if closed is None else None
            dests.setdefault(p.key, {})[p.output if p.output is not None else 0] = row
    results = _evaluate([p.key for p in parsed], base, m, workers, dests)
    for j, p in enumerate(parsed):
        arr = results[p.key] if p.output is None else results[p.key][p.output]
        if closed is not None:
            K.take_closed_nb(arr, closed, block[j])
        elif arr is not block[j]:
            np.copyto(block[j], arr)
    return block, [p.name for p in parsed]


def _resample(
    cols: dict[str, np.ndarray], t: np.ndarray, timeframe: str
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Closed higher-timeframe candles and, per row, the last bucket closed by that row."""
    bucket, offset = parse_timeframe(timeframe)
    step = _step_ns(t)
    if step and (bucket < step or bucket % step):
        raise StrategyError(
            Problem(
                "INVALID_TIMEFRAME",
                "timeframe",
                f"timeframe {timeframe!r} is not a whole multiple of the candle spacing "
                f"({step // NS_PER_MINUTE} min); pick a coarser multiple or drop timeframe",
            )
        )
    if bucket == step:
        return None, cols
    filler = np.full(t.shape[0], np.nan)
    o_in, h_in, lo_in, c_in, v_in = (cols.get(k, filler) for k in COLUMNS)
    no_trades = np.zeros(t.shape[0], np.int64)
    bt, o, h, lo, c, v, _, _, _, closed = resample_nb(
        t, o_in, h_in, lo_in, c_in, v_in, no_trades, filler, bucket, offset, step, 0
    )
    agg = {"open": o, "high": h, "low": lo, "close": c, "volume": v, "time": bt}
    return closed, {k: a for k, a in agg.items() if k in cols}
