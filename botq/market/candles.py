"""`Candles`: OHLCV columns as NumPy arrays, the one candle type every botq layer passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from botq.errors import MarketDataError
from botq.market.timeframes import NS_PER_MINUTE, resample_arrays, timeframe_minutes

if TYPE_CHECKING:
    import pandas as pd


def utc_index(ns: np.ndarray, name: str | None = "time") -> pd.DatetimeIndex:
    """A UTC DatetimeIndex over int64 nanoseconds since the epoch."""
    import pandas as pd

    return pd.DatetimeIndex(
        np.asarray(ns, dtype=np.int64).view("datetime64[ns]"),
        dtype="datetime64[ns, UTC]",
        name=name,
    )


FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "vwap")
FIELDS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap")


@dataclass(frozen=True, slots=True, eq=False)
class Candles:
    """Candles of one pair and timeframe, oldest first.

    `time` is the bucket's opening time in int64 nanoseconds since the Unix epoch (UTC);
    `complete[i]` is False for a bucket whose period had not ended when the data stopped (a
    forming candle), so it is never mistaken for a closed one. `trades` counts trades
    (0 where the source has no count); `vwap` is NaN where the source has none.
    """

    pair: str
    timeframe: str
    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    vwap: np.ndarray
    complete: np.ndarray
    _index: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.time)
        for name in (*FIELDS[1:], "complete"):
            if len(getattr(self, name)) != n:
                raise MarketDataError(
                    f"Candles.{name} has {len(getattr(self, name))} values, time has {n}"
                )
        timeframe_minutes(self.timeframe)

    @classmethod
    def from_arrays(
        cls,
        pair: str,
        arrays: dict[str, Any],
        timeframe: str = "1m",
        complete: np.ndarray | None = None,
    ) -> Candles:
        """Build from a dict of columns (time as int64 ns, datetime64 or a DatetimeIndex)."""
        missing = [f for f in ("time", "open", "high", "low", "close", "volume") if f not in arrays]
        if missing:
            raise MarketDataError(f"candle columns missing: {', '.join(missing)}")
        time = _as_ns(arrays["time"])
        n = len(time)
        cols = {f: np.ascontiguousarray(arrays[f], dtype=np.float64) for f in FLOAT_FIELDS[:5]}
        vwap = arrays.get("vwap")
        trades = arrays.get("trades")
        return cls(
            pair=pair,
            timeframe=timeframe,
            time=time,
            trades=np.zeros(n, np.int64)
            if trades is None
            else np.ascontiguousarray(trades, dtype=np.int64),
            vwap=np.full(n, np.nan)
            if vwap is None
            else np.ascontiguousarray(vwap, dtype=np.float64),
            complete=np.ones(n, np.bool_) if complete is None else np.asarray(complete, np.bool_),
            **cols,
        )

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame, pair: str = "", timeframe: str = "1m") -> Candles:
        """From a DataFrame with open/high/low/close/volume columns and a UTC DatetimeIndex."""
        import pandas as pd

        if not isinstance(frame.index, pd.DatetimeIndex):
            raise MarketDataError(
                "the DataFrame needs a DatetimeIndex (UTC): frame.set_index(pd.to_datetime("
                "frame['time'], unit='s', utc=True))"
            )
        arrays: dict[str, Any] = {c: frame[c].to_numpy() for c in frame.columns if c in FIELDS}
        arrays["time"] = frame.index
        complete = frame["complete"].to_numpy() if "complete" in frame.columns else None
        return cls.from_arrays(pair, arrays, timeframe, complete)

    def __len__(self) -> int:
        return len(self.time)

    def __getitem__(self, column: str) -> np.ndarray:
        """A column by name: candles["close"]."""
        if column not in FIELDS and column != "complete":
            raise KeyError(f"{column!r} is not a candle column ({', '.join(FIELDS)}, complete)")
        return getattr(self, column)

    def __repr__(self) -> str:
        if not len(self):
            return f"Candles({self.pair!r}, {self.timeframe}, empty)"
        first, last = (np.datetime64(int(t), "ns") for t in (self.time[0], self.time[-1]))
        forming = "" if self.complete[-1] else ", last forming"
        span = f"{len(self)} from {first} to {last}{forming}"
        return f"Candles({self.pair!r}, {self.timeframe}, {span})"

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as a dict (time in int64 ns)."""
        return {f: getattr(self, f) for f in FIELDS}

    def time_index(self) -> pd.DatetimeIndex:
        """The times as a UTC DatetimeIndex named `time`, built once (a million rows take ~1 ms)."""
        if self._index is None:
            object.__setattr__(self, "_index", utc_index(self.time))
        return self._index

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame with a UTC DatetimeIndex named `time` and one column per field."""
        import pandas as pd

        index = self.time_index()
        data = {f: getattr(self, f) for f in FIELDS[1:]}
        data["complete"] = self.complete
        return pd.DataFrame(data, index=index, copy=False)

    def between(self, start_ns: int | None = None, end_ns: int | None = None) -> Candles:
        """The candles with start <= time < end."""
        lo = 0 if start_ns is None else int(np.searchsorted(self.time, start_ns, "left"))
        hi = len(self) if end_ns is None else int(np.searchsorted(self.time, end_ns, "left"))
        return self._take(slice(lo, hi))

    def closed(self) -> Candles:
        """Only the complete candles (a forming one is not final)."""
        return self if self.complete.all() else self._take(self.complete)

    def _take(self, index: slice | np.ndarray) -> Candles:
        cols = {f: getattr(self, f)[index] for f in (*FIELDS, "complete")}
        return Candles(pair=self.pair, timeframe=self.timeframe, **cols)

    def resample(self, timeframe: str, *, until_ns: int | None = None) -> Candles:
        """Aggregate 1-minute candles to `timeframe` (5m 15m 1h 4h 1d), UTC-aligned.

        open first, high max, low min, close last, volume and trades summed, vwap
        volume-weighted. A bucket is complete when the data reaches its end: when the last
        1-minute candle closes at or after the bucket's end, or `until_ns` (the moment the
        data is known to be complete up to) is at or after it.
        """
        if timeframe == self.timeframe:
            return self
        if self.timeframe != "1m":
            raise MarketDataError(
                f"resample works from 1m candles; these are {self.timeframe}. Load 1m candles "
                "and resample those"
            )
        width_ns = timeframe_minutes(timeframe) * NS_PER_MINUTE
        horizon = int(self.time[-1]) + NS_PER_MINUTE if len(self) else 0
        if until_ns is not None:
            horizon = max(horizon, int(until_ns))
        cols = resample_arrays(self.arrays(), width_ns, horizon)
        return Candles(pair=self.pair, timeframe=timeframe, **cols)


def _as_ns(values: Any) -> np.ndarray:
    """Times as int64 UTC nanoseconds, strictly increasing."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind == "M":
        out = arr.astype("datetime64[ns]").view(np.int64)
    elif arr is not None and arr.dtype.kind in "iu":
        out = arr.astype(np.int64, copy=False)
    else:
        import pandas as pd

        try:
            index = pd.DatetimeIndex(values)
        except (TypeError, ValueError) as exc:
            raise MarketDataError(
                f"candle times must be int64 nanoseconds or datetimes ({exc})"
            ) from None
        if index.tz is None:
            index = index.tz_localize("UTC")
        out = index.as_unit("ns").asi8
    out = np.ascontiguousarray(out, dtype=np.int64)
    if len(out) > 1 and np.any(np.diff(out) <= 0):
        raise MarketDataError("candle times must be strictly increasing (sort and de-duplicate)")
    return out
