"""Indicator series in PostgreSQL: what IndicatorCalc stores, packed one row per UTC day.

A stored day always holds every value of that day that was computed in one run (a run works
on whole UTC days), so a later run over an overlapping range replaces days, never mixes them.
Values near the start of a run's range are NaN while the indicator warms up; a run that
starts earlier recomputes those days with the history they need.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from botq.errors import MarketDataError
from botq.market.candles import utc_index
from botq.market.store import PG_EPOCH_US, decode_day_rows, pair_id_of, to_utc_ns
from botq.market.timeframes import timeframe_minutes

if TYPE_CHECKING:
    from botq.db.database import Database

NS_PER_DAY = 86_400 * 1_000_000_000

UPSERT_DAYS = """
INSERT INTO botq_indicator_days (pair_id, timeframe, name, day, n, ts, value)
SELECT %(pair_id)s, %(timeframe)s, %(name)s, d.day, d.n, d.ts, d.value
FROM unnest(%(days)s::date[], %(ns)s::int[], %(tss)s::bytea[], %(values)s::bytea[])
     AS d (day, n, ts, value)
ON CONFLICT (pair_id, timeframe, name, day) DO UPDATE
SET n = EXCLUDED.n, ts = EXCLUDED.ts, value = EXCLUDED.value, computed_at = now()
"""
# Day rows as a binary COPY stream, read like the candle store's (market.store.decode_day_rows)
COPY_DAYS_OUT = """
COPY (
    SELECT sum(n) OVER ()::int8, n, ts, value FROM botq_indicator_days
    WHERE pair_id = %(pair_id)s AND timeframe = %(timeframe)s AND name = %(name)s
      AND day >= coalesce((%(start)s::timestamptz AT TIME ZONE 'UTC')::date, '-infinity')
      AND day <= coalesce((%(end)s::timestamptz AT TIME ZONE 'UTC')::date, 'infinity')
    ORDER BY day
) TO STDOUT (FORMAT BINARY)
"""
_DAY_COLUMNS = {"ts": (">i8", np.int64), "value": (">f8", np.float64)}
STORED_NAMES = """
SELECT d.name, min(d.day), max(d.day), sum(d.n)
FROM botq_indicator_days d JOIN botq_pairs p ON p.id = d.pair_id
WHERE p.name = %(pair)s AND d.timeframe = %(timeframe)s
GROUP BY d.name ORDER BY d.name
"""


def store_series(
    db: Database, pair: str, timeframe: str, name: str, time_ns: np.ndarray, values: np.ndarray
) -> int:
    """Store one indicator's values (times in int64 UTC ns), replacing the days they cover."""
    timeframe_minutes(timeframe)
    if len(time_ns) != len(values):
        raise MarketDataError(f"{name}: {len(values)} values for {len(time_ns)} times")
    if not len(time_ns):
        return 0
    day_index = time_ns // NS_PER_DAY
    cuts = np.flatnonzero(np.diff(day_index)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(time_ns)]])
    ts_be = ((time_ns // 1000) - PG_EPOCH_US).astype(">i8")
    val_be = np.asarray(values, dtype=">f8")
    days = [datetime.fromtimestamp(int(day_index[a]) * 86_400, UTC).date() for a in starts]
    params: dict[str, Any] = {
        "timeframe": timeframe,
        "name": name,
        "days": days,
        "ns": [int(b - a) for a, b in zip(starts, ends, strict=True)],
        "tss": [ts_be[a:b].tobytes() for a, b in zip(starts, ends, strict=True)],
        "values": [val_be[a:b].tobytes() for a, b in zip(starts, ends, strict=True)],
    }
    with db.connection() as conn, conn.transaction():
        params["pair_id"] = pair_id_of(conn, pair, create=True)
        conn.execute(UPSERT_DAYS, params)
    return len(time_ns)


def load_series(
    db: Database,
    pair: str,
    name: str,
    timeframe: str = "1m",
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> pd.Series:
    """A stored indicator as a Series with a UTC DatetimeIndex (start <= time < end)."""
    start_ns, end_ns = to_utc_ns(start), to_utc_ns(end)
    start_ts = None if start_ns is None else pd.Timestamp(start_ns, tz="UTC")
    end_ts = None if end_ns is None else pd.Timestamp(end_ns, tz="UTC")
    columns = {"ts": np.empty(0, np.int64), "value": np.empty(0)}
    with db.connection() as conn:
        pair_id = pair_id_of(conn, pair, create=False)
        if pair_id is not None:
            params = {"pair_id": pair_id, "timeframe": timeframe, "name": name,
                      "start": start_ts, "end": end_ts}  # fmt: skip
            with conn.cursor().copy(COPY_DAYS_OUT, params) as copy:
                columns = decode_day_rows(copy, _DAY_COLUMNS)
    if not len(columns["ts"]):
        raise MarketDataError(
            f"no stored values of {name!r} for {pair} {timeframe}; compute them with "
            f"db.queue.enqueue('IndicatorCalc', {{'pair': {pair!r}, 'timeframe': "
            f"{timeframe!r}, 'indicators': [{name!r}]}})"
        )
    ns = columns["ts"]
    ns += PG_EPOCH_US  # in place: microseconds since 2000 -> nanoseconds since 1970
    ns *= 1000
    series = pd.Series(columns["value"], index=utc_index(ns), name=name)
    mask = np.ones(len(series), bool)
    if start_ts is not None:
        mask &= series.index >= start_ts
    if end_ts is not None:
        mask &= series.index < end_ts
    return series[mask]


def stored(db: Database, pair: str, timeframe: str = "1m") -> pd.DataFrame:
    """Which indicators are stored for a pair and timeframe: first and last day, values."""
    with db.connection() as conn:
        rows = conn.execute(STORED_NAMES, {"pair": pair, "timeframe": timeframe}).fetchall()
    return pd.DataFrame(rows, columns=["name", "first_day", "last_day", "values"])
