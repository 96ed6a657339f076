"""Technical and statistical indicators: numba kernels plus a registry of names like "rsi_14".

    >>> from botq.indicators import compute
    >>> compute(candles_df, ["rsi_14", "bb_upper", "macd_hist"], timeframe="1h")

``available()`` lists every indicator with its parameters and allowed ranges; the kernels
themselves are in ``botq.indicators.kernels``.
"""

from __future__ import annotations

from botq.indicators.registry import (
    IndicatorInfo,
    Param,
    Parsed,
    available,
    compute,
    compute_array,
    names,
    parse,
    parse_timeframe,
)

__all__ = [
    "IndicatorInfo",
    "Param",
    "Parsed",
    "available",
    "compute",
    "compute_array",
    "names",
    "parse",
    "parse_timeframe",
]
