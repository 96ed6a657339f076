"""The candle store: 1-minute candles in PostgreSQL, written with COPY, read straight into NumPy.

Writes go through binary COPY (built with NumPy, no Python object per row): straight into
botq_candles when the minutes are new, else into a temporary table from which rows that
differ are updated and new minutes inserted, so re-writing a range replaces rows instead of
duplicating them and re-writing identical candles writes nothing. botq_candle_days holds the same
candles packed one row per pair and UTC day: a write packs the days its candles fill on the
client and has the server rebuild only days that also hold older candles; statement triggers
keep the days of any other writer (plain SQL) in step. Loads stream the day rows with binary
COPY and byte-swap them into NumPy columns: a million minutes arrive as ~700 rows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from botq.errors import MarketDataError
from botq.market.candles import Candles
from botq.market.timeframes import NS_PER_MINUTE, timeframe_minutes

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import psycopg

    from botq.db.database import Database

# PostgreSQL's binary timestamps count microseconds from 2000-01-01.
PG_EPOCH_US = 946_684_800_000_000
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = _COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_INT2 = struct.Struct(">h")
_INT4 = struct.Struct(">i")
_TOTAL_N = struct.Struct(">iqii")  # a COPY_DAYS_OUT row's first two fields: (8, total), (4, n)
# The fixed start of a botq_candle_days COPY row: 11 fields; pair_id int2; day int4; n int4.
_DAY_ROW = struct.Struct(">hihiiii")
MINUTES_PER_DAY = 1440
NS_PER_DAY = MINUTES_PER_DAY * NS_PER_MINUTE
PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's date epoch, in days since 1970-01-01
_EPOCH_DATE = date(1970, 1, 1)

# One row of the binary COPY stream: field count, then (length, value) per field.
_ROW_IN = np.dtype(
    [
        ("n", ">i2"),
        ("pair_len", ">i4"), ("pair", ">i2"),
        ("ts_len", ">i4"), ("ts", ">i8"),
        ("open_len", ">i4"), ("open", ">f8"),
        ("high_len", ">i4"), ("high", ">f8"),
        ("low_len", ">i4"), ("low", ">f8"),
        ("close_len", ">i4"), ("close", ">f8"),
        ("volume_len", ">i4"), ("volume", ">f8"),
        ("trades_len", ">i4"), ("trades", ">i4"),
        ("vwap_len", ">i4"), ("vwap", ">f8"),
    ]
)  # fmt: skip
_COLUMN_DTYPES = {
    "ts": ">i8", "open": ">f8", "high": ">f8", "low": ">f8", "close": ">f8",
    "volume": ">f8", "trades": ">i4", "vwap": ">f8",
}  # fmt: skip
_NATIVE = {name: np.int64 if name in ("ts", "trades") else np.float64 for name in _COLUMN_DTYPES}
# (packed dtype, native dtype) of each packed column of a COPY_DAYS_OUT row, in order
_DAY_COLUMNS = {name: (packed, _NATIVE[name]) for name, packed in _COLUMN_DTYPES.items()}

PAIR_ID = """
WITH found AS (SELECT id FROM botq_pairs WHERE name = %(name)s),
     made AS (
        INSERT INTO botq_pairs (name) SELECT %(name)s WHERE NOT EXISTS (SELECT 1 FROM found)
        ON CONFLICT (name) DO NOTHING RETURNING id)
SELECT id FROM found UNION ALL SELECT id FROM made
"""
FIND_PAIR = "SELECT id FROM botq_pairs WHERE name = %(name)s"
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS botq_candles_staging
    (LIKE botq_candles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
COPY_COLUMNS = "(pair_id, ts, open, high, low, close, volume, trades, vwap)"
COPY_IN = f"COPY botq_candles_staging {COPY_COLUMNS} FROM STDIN (FORMAT BINARY)"
COPY_DIRECT = f"COPY botq_candles {COPY_COLUMNS} FROM STDIN (FORMAT BINARY)"
# Names botq's per-pair write lock among advisory locks (with the pair id as second key).
WRITE_LOCK_KEY = 0x63616E64  # "cand"
# A rewrite changes only what differs: rows with other values are updated, new minutes
# inserted, identical rows left alone (no new row versions, no WAL), so re-syncing a range
# costs little. (INSERT ... ON CONFLICT DO UPDATE locked and rewrote every row: ~3x slower.)
UPDATE_CHANGED = """
UPDATE botq_candles c SET open = s.open, high = s.high, low = s.low, close = s.close,
    volume = s.volume, trades = s.trades, vwap = s.vwap
FROM botq_candles_staging s
WHERE c.pair_id = %(pair_id)s AND c.ts >= %(first)s AND c.ts <= %(last)s
  AND c.pair_id = s.pair_id AND c.ts = s.ts
  AND (c.open, c.high, c.low, c.close, c.volume, c.trades, c.vwap)
      IS DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume, s.trades, s.vwap)
"""
INSERT_NEW = """
INSERT INTO botq_candles SELECT s.* FROM botq_candles_staging s
WHERE NOT EXISTS (
    SELECT 1 FROM botq_candles c
    WHERE c.pair_id = %(pair_id)s AND c.ts >= %(first)s AND c.ts <= %(last)s
      AND c.pair_id = s.pair_id AND c.ts = s.ts
)
"""
# Day rows as a binary COPY stream: one message per day, read without a Python object per value.
# Each row also carries the total number of candles, so the reader can allocate its columns
# at the first row and decode while the server is still sending.
COPY_DAYS_OUT = """
COPY (
    SELECT sum(n) OVER ()::int8, n, ts, open, high, low, close, volume, trades, vwap
    FROM botq_candle_days
    WHERE pair_id = %(pair_id)s
      AND day >= coalesce((%(start)s::timestamptz AT TIME ZONE 'UTC')::date, '-infinity')
      AND day <= coalesce((%(end)s::timestamptz AT TIME ZONE 'UTC')::date, 'infinity')
    ORDER BY day
) TO STDOUT (FORMAT BINARY)
"""
LOCK_PAIR = "SELECT pg_advisory_xact_lock(%(key)s, %(pair_id)s)"
# Tells the botq_candles triggers (migration 0005) that this transaction packs its own days.
CLIENT_PACKS_DAYS = "SELECT set_config('botq.candle_days', 'client', true)"
# How many candles each of some days holds now (to see which a write's candles fill alone).
DAY_COUNTS = """
SELECT (ts AT TIME ZONE 'UTC')::date, count(*) FROM botq_candles
WHERE pair_id = %(pair_id)s AND ts >= %(from)s AND ts < %(to)s
  AND (ts AT TIME ZONE 'UTC')::date = ANY(%(days)s)
GROUP BY 1
"""
DELETE_DAYS = "DELETE FROM botq_candle_days WHERE pair_id = %(pair_id)s AND day = ANY(%(days)s)"
COPY_DAYS_IN = """
COPY botq_candle_days (pair_id, day, n, ts, open, high, low, close, volume, trades, vwap)
FROM STDIN (FORMAT BINARY)
"""
REBUILD_DAYS = "SELECT botq_rebuild_candle_days(%(pairs)s::smallint[], %(days)s::date[])"
OVERLAP = """
SELECT EXISTS (
    SELECT 1 FROM botq_candles WHERE pair_id = %(pair_id)s AND ts >= %(first)s AND ts <= %(last)s
)
"""
LAST_TS = "SELECT max(ts) FROM botq_candles WHERE pair_id = %(pair_id)s"
STORED_RANGE = """
SELECT min(ts), max(ts) FROM botq_candles
WHERE pair_id = %(pair_id)s
  AND ts >= coalesce(%(start)s::timestamptz, '-infinity')
  AND ts < coalesce(%(end)s::timestamptz, 'infinity')
"""
# The row versions of the packed days a load of the range reads: writing one (an insert, an
# update, a rebuild) gives it a new xmin, so an equal fingerprint means the same candles.
RANGE_VERSION = """
SELECT md5(coalesce(string_agg(day::text || ':' || xmin::text, ',' ORDER BY day), ''))
FROM botq_candle_days
WHERE pair_id = %(pair_id)s
  AND day >= coalesce((%(start)s::timestamptz AT TIME ZONE 'UTC')::date, '-infinity')
  AND day <= coalesce((%(end)s::timestamptz AT TIME ZONE 'UTC')::date, 'infinity')
"""
COVERAGE = """
SELECT p.name, min(c.ts), max(c.ts), count(*)
FROM botq_candles c JOIN botq_pairs p ON p.id = c.pair_id
WHERE %(name)s::text IS NULL OR p.name = %(name)s
GROUP BY p.name ORDER BY p.name
"""
GAPS = """
SELECT ts + interval '1 minute' AS gap_start, next_ts AS gap_end FROM (
    SELECT ts, lead(ts) OVER (ORDER BY ts) AS next_ts
    FROM botq_candles WHERE pair_id = (SELECT id FROM botq_pairs WHERE name = %(name)s)
) s
WHERE next_ts - ts > interval '1 minute'
ORDER BY next_ts - ts DESC LIMIT %(limit)s
"""
GET_CURSOR = "SELECT source, cursor FROM botq_sync_state WHERE pair_id = %(pair_id)s"
SET_CURSOR = """
INSERT INTO botq_sync_state (pair_id, source, cursor) VALUES (%(pair_id)s, %(source)s, %(cursor)s)
ON CONFLICT (pair_id) DO UPDATE SET source = EXCLUDED.source, cursor = EXCLUDED.cursor,
    updated_at = now()
"""


def pair_id_of(conn: psycopg.Connection, pair: str, *, create: bool) -> int | None:
    """The id of `pair` in botq_pairs (created when `create`), or None."""
    row = conn.execute(PAIR_ID if create else FIND_PAIR, {"name": pair}).fetchone()
    if row is None and create:  # lost a race with another writer: the row exists now
        row = conn.execute(FIND_PAIR, {"name": pair}).fetchone()
    return None if row is None else int(row[0])


def encode_copy(pair_id: int, candles: Candles) -> bytes:
    """Candles as a PostgreSQL binary COPY stream for botq_candles (vectorised)."""
    n = len(candles)
    rows = np.empty(n, _ROW_IN)
    rows["n"] = 9
    sizes = {"pair": 2, "ts": 8, "trades": 4}
    for name in ("pair", "ts", "open", "high", "low", "close", "volume", "trades", "vwap"):
        rows[f"{name}_len"] = sizes.get(name, 8)
    rows["pair"] = pair_id
    rows["ts"] = candles.time // 1000 - PG_EPOCH_US
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        rows[name] = getattr(candles, name)
    rows["trades"] = np.clip(candles.trades, 0, 2**31 - 1)
    return _HEADER + rows.tobytes() + _TRAILER


def decode_day_rows(
    messages: Iterable[bytes | bytearray | memoryview],
    columns: Mapping[str, tuple[str, type[np.generic]]],
) -> dict[str, np.ndarray]:
    """Columns from the binary COPY stream of day-packed rows read as
    ``SELECT sum(n) OVER ()::int8, n, <packed columns...>``; `columns` gives each packed
    column's (big-endian dtype, native dtype), in order.

    PostgreSQL sends one COPY message per day row (the file header and trailer may come alone
    or with a row). The columns are allocated at the first row (which says how many values
    follow), and each day's packed bytes are byte-swapped straight from its message into
    them as it arrives: no join, no per-value copy, decoding overlaps the server's sending.
    """
    out = {name: np.empty(0, native) for name, (_, native) in columns.items()}
    pos = 0
    for message in messages:
        view = memoryview(message)
        offset = 0
        if view[: len(_COPY_SIGNATURE)] == _COPY_SIGNATURE:
            offset = len(_HEADER) + _INT4.unpack_from(view, len(_HEADER) - 4)[0]
        while offset < len(view):
            (fields,) = _INT2.unpack_from(view, offset)
            if fields == -1:  # trailer
                break
            if fields != 2 + len(columns):
                raise MarketDataError(f"unexpected day row with {fields} fields in the COPY stream")
            _, total, _, n = _TOTAL_N.unpack_from(view, offset + 2)
            offset += 2 + _TOTAL_N.size
            if pos == 0:
                out = {name: np.empty(total, native) for name, (_, native) in columns.items()}
            for name, (packed, _) in columns.items():
                (size,) = _INT4.unpack_from(view, offset)
                out[name][pos : pos + n] = np.frombuffer(view, packed, n, offset + 4)
                offset += 4 + size
            pos += n
    return out


def decode_days(messages: Iterable[bytes | bytearray | memoryview]) -> dict[str, np.ndarray]:
    """Candle columns from the binary COPY stream of COPY_DAYS_OUT (see `decode_day_rows`),
    times as int64 ns since 1970."""
    out = decode_day_rows(messages, _DAY_COLUMNS)
    time = out.pop("ts")
    time += PG_EPOCH_US  # in place: microseconds since 2000 -> nanoseconds since 1970
    time *= 1000
    return {"time": time, **out}


def _big_endian_columns(candles: Candles) -> dict[str, np.ndarray]:
    """The packed-day byte layout of each column (what timestamptz_send/float8send write)."""
    cols = {"ts": (candles.time // 1000 - PG_EPOCH_US).astype(">i8")}
    for name in ("open", "high", "low", "close", "volume"):
        cols[name] = candles[name].astype(">f8")
    cols["trades"] = np.clip(candles.trades, 0, 2**31 - 1).astype(">i4")
    cols["vwap"] = candles.vwap.astype(">f8")
    return cols


def encode_days_copy(pair_id: int, candles: Candles, starts: np.ndarray, keep: np.ndarray) -> bytes:
    """Packed botq_candle_days rows for the UTC days of `candles` beginning at `starts[keep]`,
    as a binary COPY stream: the same bytes the server's string_agg rebuild would store."""
    cols = _big_endian_columns(candles)
    ends = np.append(starts[1:], len(candles))
    parts = [_HEADER]
    for lo, hi in zip(starts[keep].tolist(), ends[keep].tolist(), strict=True):
        day = int(candles.time[lo]) // NS_PER_DAY - PG_EPOCH_DAYS
        parts.append(_DAY_ROW.pack(11, 2, pair_id, 4, day, 4, hi - lo))
        for col in cols.values():
            chunk = col[lo:hi].tobytes()
            parts.append(_INT4.pack(len(chunk)))
            parts.append(chunk)
    parts.append(_TRAILER)
    return b"".join(parts)


def _store_days(conn: psycopg.Connection, pair_id: int, candles: Candles) -> None:
    """Bring the packed days that `candles` (just written) touch up to date.

    A day whose stored candles are exactly the ones written (all 1,440 minutes, or as many as
    botq_candles now holds that day) is packed here from the arrays at hand; any other day
    (old candles in minutes the write did not cover) is rebuilt by the server from its rows.
    """
    day = candles.time // NS_PER_DAY
    starts = np.flatnonzero(np.diff(day, prepend=day[0] - 1))
    counts = np.diff(np.append(starts, len(day)))
    days = day[starts]
    keep = counts == MINUTES_PER_DAY
    if not keep.all():
        partial = days[~keep]
        rows = conn.execute(
            DAY_COUNTS,
            {
                "pair_id": pair_id,
                "from": _as_datetime(int(partial[0]) * NS_PER_DAY),
                "to": _as_datetime(int(partial[-1] + 1) * NS_PER_DAY),
                "days": [_as_date(d) for d in partial],
            },
        ).fetchall()
        stored: dict[date, int] = {day: count for day, count in rows}
        keep |= np.array([stored.get(_as_date(d)) == c for d, c in zip(days, counts, strict=True)])
    if keep.any():
        conn.execute(DELETE_DAYS, {"pair_id": pair_id, "days": [_as_date(d) for d in days[keep]]})
        with conn.cursor().copy(COPY_DAYS_IN) as copy:
            copy.write(encode_days_copy(pair_id, candles, starts, keep))
    if not keep.all():
        rebuild = [_as_date(d) for d in days[~keep]]
        conn.execute(REBUILD_DAYS, {"pairs": [pair_id] * len(rebuild), "days": rebuild})


def _as_date(epoch_day: int | np.integer) -> date:
    return _EPOCH_DATE + timedelta(days=int(epoch_day))


def write_candles(
    db: Database,
    candles: Candles,
    pair: str | None = None,
    *,
    cursor: tuple[str, str | None] | None = None,
) -> int:
    """Store 1-minute candles (replacing rows of the same minutes); return how many.

    Forming candles (`complete` False) are not stored: only closed minutes are final.
    `cursor=(source, position)` saves a sync's resume point in the same transaction, so a
    crash never leaves candles without their cursor or the reverse.
    """
    pair = pair or candles.pair
    if not pair:
        raise MarketDataError("write_candles needs a pair name (Candles.pair or pair=...)")
    if candles.timeframe != "1m":
        raise MarketDataError(
            f"the store keeps 1-minute candles; these are {candles.timeframe}. "
            "Store 1m candles and resample on load"
        )
    closed = candles.closed()
    if not len(closed) and cursor is None:
        return 0
    if np.any(closed.time % NS_PER_MINUTE):
        raise MarketDataError("candle times must fall on whole minutes (UTC)")
    with db.connection() as conn, conn.transaction():
        pair_id = pair_id_of(conn, pair, create=True)
        assert pair_id is not None
        if len(closed):
            conn.execute(LOCK_PAIR, {"key": WRITE_LOCK_KEY, "pair_id": pair_id})
            conn.execute(CLIENT_PACKS_DAYS)
            bounds = {
                "pair_id": pair_id,
                "first": _as_datetime(int(closed.time[0])),
                "last": _as_datetime(int(closed.time[-1])),
            }
            data = encode_copy(pair_id, closed)
            if conn.execute(OVERLAP, bounds).fetchone() == (False,):
                with conn.cursor().copy(COPY_DIRECT) as copy:  # new minutes only: straight in
                    copy.write(data)
                changed = len(closed)
            else:
                conn.execute(CREATE_STAGING)
                with conn.cursor().copy(COPY_IN) as copy:
                    copy.write(data)
                changed = conn.execute(UPDATE_CHANGED, bounds).rowcount
                changed += conn.execute(INSERT_NEW, bounds).rowcount
            if changed:  # else the packed days already hold exactly these candles
                _store_days(conn, pair_id, closed)
        if cursor is not None:
            conn.execute(SET_CURSOR, {"pair_id": pair_id, "source": cursor[0], "cursor": cursor[1]})
    return len(closed)


def to_utc_ns(value: datetime | str | int | np.datetime64 | None) -> int | None:
    """A time as int64 UTC nanoseconds: ints are taken as ns, naive times as UTC."""
    if value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    import pandas as pd

    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.as_unit("ns").value)


def _as_datetime(ns: int | None) -> datetime | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC)


def load(
    db: Database,
    pair: str,
    start: datetime | str | int | None = None,
    end: datetime | str | int | None = None,
    timeframe: str = "1m",
) -> Candles:
    """Candles of `pair` with start <= time < end (UTC; int = ns), aggregated to `timeframe`.

    Buckets are UTC-aligned; a trailing bucket that `end` (or the data) does not cover to its
    close is marked incomplete (`complete[-1]` False).
    """
    width = timeframe_minutes(timeframe) * NS_PER_MINUTE
    start_ns, end_ns = to_utc_ns(start), to_utc_ns(end)
    if start_ns is not None and timeframe != "1m":
        start_ns -= start_ns % width  # whole buckets only
    with db.connection() as conn:
        pair_id = pair_id_of(conn, pair, create=False)
        if pair_id is None:
            raise MarketDataError(
                f"no candles stored for {pair!r}; sync them first with "
                f"db.queue.enqueue('HistorySync', {{'pair': {pair!r}}}), or store some with "
                "botq.market.write_candles"
            )
        params = {"pair_id": pair_id, "start": _as_datetime(start_ns), "end": _as_datetime(end_ns)}
        with conn.cursor().copy(COPY_DAYS_OUT, params) as copy:
            columns = decode_days(copy)
    candles = Candles.from_arrays(pair, columns).between(start_ns, end_ns)
    if timeframe == "1m":
        return candles
    return candles.resample(timeframe, until_ns=end_ns)


@dataclass(frozen=True, slots=True)
class Coverage:
    """What is stored for one pair: first and last candle, count, and missing minutes."""

    pair: str
    first: datetime
    last: datetime
    count: int
    missing_minutes: int
    largest_gaps: list[tuple[datetime, datetime]]


def coverage(db: Database, pair: str | None = None, *, gaps: int = 5) -> list[Coverage]:
    """Per pair (or just `pair`): first and last candle, count, missing minutes, largest gaps."""
    out = []
    with db.connection() as conn:
        for name, first, last, count in conn.execute(COVERAGE, {"name": pair}).fetchall():
            span = int((last - first).total_seconds() // 60) + 1
            holes = conn.execute(GAPS, {"name": name, "limit": gaps}).fetchall() if gaps else []
            largest = [(a, b) for a, b in holes]
            out.append(Coverage(name, first, last, int(count), span - int(count), largest))
    return out


def last_candle_ns(db: Database, pair: str) -> int | None:
    """The time of the newest stored candle of `pair` (ns), or None."""
    with db.connection() as conn:
        pair_id = pair_id_of(conn, pair, create=False)
        if pair_id is None:
            return None
        row = conn.execute(LAST_TS, {"pair_id": pair_id}).fetchone()
    if row is None or row[0] is None:
        return None
    return to_utc_ns(row[0])


def _range_row(
    db: Database,
    query: str,
    pair: str,
    start: datetime | str | int | None,
    end: datetime | str | int | None,
) -> tuple[Any, ...] | None:
    """The one row `query` returns for pair_id, start and end; None if the pair is unknown."""
    with db.connection() as conn:
        pair_id = pair_id_of(conn, pair, create=False)
        if pair_id is None:
            return None
        params = {
            "pair_id": pair_id,
            "start": _as_datetime(to_utc_ns(start)),
            "end": _as_datetime(to_utc_ns(end)),
        }
        return conn.execute(query, params).fetchone()


def range_version(
    db: Database,
    pair: str,
    start: datetime | str | int | None = None,
    end: datetime | str | int | None = None,
) -> str | None:
    """A fingerprint of the stored candles that `load(db, pair, start, end)` reads (None if
    the pair is unknown): it changes whenever any of them is written, so what was computed
    from a load can be kept until then. One index scan over the days, nothing loaded."""
    row = _range_row(db, RANGE_VERSION, pair, start, end)
    return None if row is None else str(row[0])


def stored_range(
    db: Database,
    pair: str,
    start: datetime | str | int | None = None,
    end: datetime | str | int | None = None,
) -> tuple[int, int] | None:
    """(first, last) stored 1-minute candle times of `pair` (ns) with start <= time < end, or
    None if there is none: two index lookups, without loading anything."""
    row = _range_row(db, STORED_RANGE, pair, start, end)
    if row is None or row[0] is None:
        return None
    return to_utc_ns(row[0]), to_utc_ns(row[1])  # type: ignore[return-value]


def sync_cursor(db: Database, pair: str) -> tuple[str, str | None] | None:
    """(source, cursor) saved by the last history sync of `pair`, or None."""
    with db.connection() as conn:
        pair_id = pair_id_of(conn, pair, create=False)
        if pair_id is None:
            return None
        row = conn.execute(GET_CURSOR, {"pair_id": pair_id}).fetchone()
    return None if row is None else (row[0], row[1])
