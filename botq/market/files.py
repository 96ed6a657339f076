"""Candles from and to files: CSV (with a header, or Kraken's OHLCVT export) and Parquet.

Layouts read:
- Kraken's downloadable OHLCVT CSV: no header, 7 columns `time, open, high, low, close,
  volume, trades` with time in Unix seconds (files such as `XBTUSD_1.csv`);
- a CSV or Parquet with a header: a time column (`time`, `timestamp`, `date`, `datetime`,
  `ts` or `open_time`; Unix s/ms/us/ns or ISO 8601), `open high low close volume` and
  optionally `trades` (or `count`) and `vwap` (any letter case).

A bad row is reported by its line number (1-based, as an editor shows it) and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from botq.errors import MarketDataError
from botq.market.candles import Candles
from botq.market.timeframes import NS_PER_MINUTE

if TYPE_CHECKING:
    import pandas as pd

TIME_NAMES = ("time", "timestamp", "date", "datetime", "ts", "open_time")
KRAKEN_OHLCVT = ("time", "open", "high", "low", "close", "volume", "trades")
REQUIRED = ("open", "high", "low", "close", "volume")


def _format(path: Path, format: str | None) -> str:
    if format:
        return format
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    raise MarketDataError(f"{path}: unknown file type; name it .csv or .parquet, or pass format=")


def _read_frame(path: Path, fmt: str) -> tuple[pd.DataFrame, int]:
    """The raw table and the file line of its first row (for error messages)."""
    import pandas as pd

    if fmt == "parquet":
        return pd.read_parquet(path), 1
    first = pd.read_csv(path, header=None, nrows=1, dtype=str)
    has_header = not _is_number(str(first.iloc[0, 0]))
    if has_header:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        return frame, 2
    frame = pd.read_csv(path, header=None, dtype=str, skipinitialspace=True)
    if frame.shape[1] not in (6, 7):
        raise MarketDataError(
            f"{path}: a CSV without a header must be Kraken's OHLCVT layout (time, open, high, "
            f"low, close, volume[, trades]); this one has {frame.shape[1]} columns. Add a header "
            "line naming the columns"
        )
    frame.columns = list(KRAKEN_OHLCVT[: frame.shape[1]])
    return frame, 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric(frame: pd.DataFrame, column: str, path: Path, first_line: int) -> np.ndarray:
    import pandas as pd

    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & ~(raw.isna() & (column == "vwap"))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise MarketDataError(
            f"{path}, line {i + first_line}, column {column!r}: {raw.iloc[i]!r} is not a number"
        )
    return values.to_numpy(dtype=np.float64)


def _times(frame: pd.DataFrame, column: str, path: Path, first_line: int) -> np.ndarray:
    import pandas as pd

    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        index = pd.DatetimeIndex(raw)
        return (index if index.tz else index.tz_localize("UTC")).as_unit("ns").asi8
    numbers = pd.to_numeric(raw, errors="coerce")
    if numbers.notna().all():
        values = numbers.to_numpy(dtype=np.float64)
        scale = _epoch_scale(float(np.nanmax(np.abs(values))) if len(values) else 0.0)
        return np.rint(values * scale).astype(np.int64)
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise MarketDataError(
            f"{path}, line {i + first_line}, column {column!r}: {raw.iloc[i]!r} is not a time "
            "(use Unix seconds/milliseconds or ISO 8601 such as 2026-01-01T00:00:00Z)"
        )
    return parsed.dt.as_unit("ns").astype("int64").to_numpy()


def _epoch_scale(biggest: float) -> int:
    """Nanoseconds per unit of a Unix timestamp, guessed from its size."""
    if biggest < 1e11:
        return 1_000_000_000  # seconds
    if biggest < 1e14:
        return 1_000_000  # milliseconds
    if biggest < 1e17:
        return 1_000  # microseconds
    return 1


def read_candles(path: str | Path, pair: str = "", *, format: str | None = None) -> Candles:
    """1-minute candles from a CSV or Parquet file (see the module docstring for layouts)."""
    path = Path(path)
    if not path.exists():
        raise MarketDataError(f"{path}: no such file")
    fmt = _format(path, format)
    frame, first_line = _read_frame(path, fmt)
    time_col = next((c for c in TIME_NAMES if c in frame.columns), None)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if time_col is None or missing:
        need = ([] if time_col else ["a time column (" + "/".join(TIME_NAMES) + ")"]) + missing
        raise MarketDataError(
            f"{path}: missing {', '.join(need)}; found columns {', '.join(map(str, frame.columns))}"
        )
    if fmt == "parquet":
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
    time = _times(frame, time_col, path, first_line)
    cols = {c: _numeric(frame, c, path, first_line) for c in REQUIRED}
    trades_col = "trades" if "trades" in frame.columns else "count" if "count" in frame else None
    if trades_col:
        cols["trades"] = _numeric(frame, trades_col, path, first_line)
    if "vwap" in frame.columns:
        cols["vwap"] = _numeric(frame, "vwap", path, first_line)
    _check_rows(time, cols, path, first_line)
    order = np.argsort(time, kind="stable")
    arrays = {"time": time[order], **{k: v[order] for k, v in cols.items()}}
    return Candles.from_arrays(pair, arrays)


def _check_rows(time: np.ndarray, cols: dict[str, np.ndarray], path: Path, first: int) -> None:
    def fail(mask: np.ndarray, column: str, why: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise MarketDataError(f"{path}, line {i + first}, column {column!r}: {why}")

    fail(time % NS_PER_MINUTE != 0, "time", "not on a whole minute (1-minute candles expected)")
    o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
    fail(h < np.maximum(o, c), "high", "below the open or close")
    fail(lo > np.minimum(o, c), "low", "above the open or close")
    fail(cols["volume"] < 0, "volume", "negative")
    fail(np.minimum.reduce([o, h, lo, c]) <= 0, "close", "prices must be positive")
    _, first_seen, counts = np.unique(time, return_index=True, return_counts=True)
    dup = np.zeros(len(time), bool)
    dup[first_seen[counts > 1]] = True
    fail(dup, "time", "the same minute appears again later in the file")


def write_candles_file(candles: Candles, path: str | Path, *, format: str | None = None) -> Path:
    """Write candles to CSV (header, ISO times in UTC) or Parquet; return the path."""
    path = Path(path)
    fmt = _format(path, format)
    frame = candles.to_pandas().drop(columns="complete").reset_index()
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame["time"] = frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frame.to_csv(path, index=False)
    return path
