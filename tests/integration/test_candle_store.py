"""The candle store on a real PostgreSQL: exact round trips, idempotent writes, timeframes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest

from botq import MarketDataError
from botq.db.database import Database
from botq.market import Candles, coverage, last_candle_ns, load, synthetic, write_candles
from botq.market.timeframes import NS_PER_MINUTE

COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap")


def assert_same(a: Candles, b: Candles) -> None:
    assert len(a) == len(b)
    for name in COLUMNS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_round_trip_is_exact(db: Database) -> None:
    candles = synthetic("BTC/USD", "2026-01-01", 5000, seed=3)
    arrays = candles.arrays()
    arrays["vwap"] = arrays["vwap"].copy()
    arrays["vwap"][::7] = np.nan  # sources without a vwap
    candles = Candles.from_arrays("BTC/USD", arrays)
    assert write_candles(db, candles) == 5000
    assert_same(load(db, "BTC/USD"), candles)
    assert last_candle_ns(db, "BTC/USD") == candles.time[-1]
    assert last_candle_ns(db, "NOPE/USD") is None


def test_rewriting_a_range_replaces_rows_without_duplicates(db: Database) -> None:
    candles = synthetic("ETH/USD", "2026-02-01", 3000, seed=4)
    write_candles(db, candles)
    part = candles.between(candles.time[1000], candles.time[2500])
    changed = part.arrays()
    changed["close"] = changed["close"] * 1.01
    changed["high"] = np.maximum(changed["high"], changed["close"])
    write_candles(db, Candles.from_arrays("ETH/USD", changed))
    write_candles(db, Candles.from_arrays("ETH/USD", changed))
    loaded = load(db, "ETH/USD")
    assert len(loaded) == 3000
    np.testing.assert_array_equal(loaded.close[1000:2500], changed["close"])
    np.testing.assert_array_equal(loaded.close[:1000], candles.close[:1000])
    with db.connection() as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT ts) FROM botq_candles").fetchone()
        days = conn.execute("SELECT sum(n) FROM botq_candle_days").fetchone()
    assert rows == (3000, 3000) and days == (3000,)


def test_forming_candle_is_never_stored(db: Database) -> None:
    arrays = synthetic("SOL/USD", "2026-03-01", 10, seed=5).arrays()
    complete = np.ones(10, bool)
    complete[-1] = False
    assert write_candles(db, Candles.from_arrays("SOL/USD", arrays, complete=complete)) == 9
    assert len(load(db, "SOL/USD")) == 9


def test_load_bounds_and_higher_timeframes_match_pandas(db: Database) -> None:
    candles = synthetic("BTC/USD", "2026-01-01 00:00", 3 * 1440 + 130, seed=6)
    write_candles(db, candles)
    window = load(db, "BTC/USD", "2026-01-01 10:05", "2026-01-02 03:00")
    assert window.time[0] == pd.Timestamp("2026-01-01 10:05", tz="UTC").value
    assert window.time[-1] == pd.Timestamp("2026-01-02 02:59", tz="UTC").value

    frame = candles.to_pandas()
    for tf, rule in [("5m", "5min"), ("15m", "15min"), ("1h", "1h"), ("4h", "4h"), ("1d", "1D")]:
        got = load(db, "BTC/USD", timeframe=tf).to_pandas()
        ref = frame.resample(rule).agg(
            {
                "open": "first",
                "high": "max",
                "low": "min",
                "close": "last",
                "volume": "sum",
                "trades": "sum",
            }
        )
        pd.testing.assert_frame_equal(got[ref.columns], ref, check_freq=False, rtol=1e-12)
        # the data ends 2h10m into the fourth day: only a bucket it does not cover is forming
        last_end = got.index[-1] + pd.Timedelta(rule)
        assert got["complete"].iloc[-1] == (last_end <= frame.index[-1] + pd.Timedelta("1min"))
        assert got["complete"].iloc[:-1].all()
    day = load(db, "BTC/USD", "2026-01-02", "2026-01-03", timeframe="1d")
    assert len(day) == 1 and day.complete[0]  # `end` covers the whole day
    hours = load(db, "BTC/USD", "2026-01-02 00:30", "2026-01-02 05:30", timeframe="1h")
    assert hours.time[0] == pd.Timestamp("2026-01-02 00:00", tz="UTC").value  # whole buckets
    assert list(hours.complete) == [True] * 5 + [False]


def test_coverage_reports_gaps(db: Database) -> None:
    candles = synthetic("BTC/USD", "2026-01-01", 1000, seed=7)
    keep = np.ones(1000, bool)
    keep[100:160] = False  # an hour missing
    keep[500:505] = False
    write_candles(
        db, Candles.from_arrays("BTC/USD", {k: v[keep] for k, v in candles.arrays().items()})
    )
    write_candles(db, synthetic("ETH/USD", "2026-01-01", 10, seed=7))
    (btc, eth) = coverage(db)
    assert (btc.pair, btc.count, btc.missing_minutes) == ("BTC/USD", 935, 65)
    assert btc.first == pd.Timestamp("2026-01-01", tz="UTC")
    start, end = btc.largest_gaps[0]
    assert (end - start).total_seconds() == 60 * 60
    assert pd.Timestamp(start) == pd.Timestamp(candles.time[100], tz="UTC")
    assert (eth.count, eth.missing_minutes, eth.largest_gaps) == (10, 0, [])


def test_stored_range_finds_the_first_and_last_minute_in_a_window(db: Database) -> None:
    from botq.market.store import stored_range

    candles = synthetic("BTC/USD", "2026-01-01", 1000, seed=7)
    write_candles(db, candles)
    t = candles.time
    assert stored_range(db, "BTC/USD") == (int(t[0]), int(t[-1]))
    assert stored_range(db, "BTC/USD", "2026-01-01 01:00", int(t[200])) == (
        int(t[60]),
        int(t[199]),
    )
    assert stored_range(db, "BTC/USD", "2027-01-01") is None
    assert stored_range(db, "ETH/USD") is None  # no such pair stored


def test_days_stay_consistent_after_sql_deletes(db: Database) -> None:
    write_candles(db, synthetic("BTC/USD", "2026-01-01", 3 * 1440, seed=8))
    with db.connection() as conn:
        conn.execute("DELETE FROM botq_candles WHERE ts >= '2026-01-02 12:00+00'")
    loaded = load(db, "BTC/USD")
    assert len(loaded) == 1440 + 720
    assert (np.diff(loaded.time) == NS_PER_MINUTE).all()


def test_clear_errors(db: Database) -> None:
    with pytest.raises(MarketDataError, match="no candles stored for 'DOGE/USD'.*HistorySync"):
        load(db, "DOGE/USD")
    write_candles(db, synthetic("BTC/USD", "2026-01-01", 10))
    with pytest.raises(MarketDataError, match="timeframe '2h'"):
        load(db, "BTC/USD", timeframe="2h")
    with pytest.raises(MarketDataError, match="1-minute"):
        write_candles(db, synthetic("BTC/USD", "2026-01-01", 120).resample("1h"))


def test_days_packed_by_writes_match_a_server_rebuild(db: Database) -> None:
    rng = np.random.default_rng(8)
    candles = synthetic("BTC/USD", "2026-01-01 20:00", 4 * 1440, seed=7)
    arrays = candles.arrays()
    arrays["close"] = arrays["close"] * 1.001
    arrays["high"] = np.maximum(arrays["high"], arrays["close"])
    changed = Candles.from_arrays("BTC/USD", arrays)
    writes = [
        candles._take(rng.random(len(candles)) > 0.05),  # new minutes, some without trades
        changed.between(changed.time[240], changed.time[3000]),  # a whole day and parts
        changed._take(rng.random(len(changed)) > 0.5).between(changed.time[3100], None),
    ]
    expected = writes[0].to_pandas()
    for w in writes:
        write_candles(db, w)
        expected = w.to_pandas().combine_first(expected)
    with db.connection() as conn:
        packed = conn.execute("SELECT * FROM botq_candle_days ORDER BY day").fetchall()
        conn.execute(
            "SELECT botq_rebuild_candle_days(array_agg(pair_id), array_agg(day)) "
            "FROM botq_candle_days"
        )
        rebuilt = conn.execute("SELECT * FROM botq_candle_days ORDER BY day").fetchall()
    assert len(packed) == 5 and packed == rebuilt
    loaded = load(db, "BTC/USD").to_pandas()
    pd.testing.assert_frame_equal(loaded, expected[loaded.columns], check_freq=False)


def test_candles_of_unknown_pairs_and_deleting_pairs_with_candles_are_refused(db: Database) -> None:
    # botq_candles has no per-row foreign key (migration 0005); the packed days keep one.
    write_candles(db, synthetic("BTC/USD", "2026-01-01", 10, seed=1))
    with db.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO botq_candles (pair_id, ts, open, high, low, close, volume) "
                "VALUES (999, '2026-01-01', 1, 1, 1, 1, 0)"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("DELETE FROM botq_pairs WHERE name = 'BTC/USD'")


def test_range_version_changes_when_the_range_is_written(db: Database) -> None:
    from dataclasses import replace

    from botq.market.store import range_version

    candles = synthetic("BTC/USD", "2026-01-01", 3 * 1440, seed=7)
    write_candles(db, candles)
    whole = range_version(db, "BTC/USD")
    first_day = range_version(db, "BTC/USD", None, "2026-01-01 23:00")
    assert whole == range_version(db, "BTC/USD") and whole != first_day
    write_candles(db, candles)  # identical candles: nothing is written, nothing changes
    assert range_version(db, "BTC/USD") == whole
    close = candles.close.copy()
    close[2000] += 1.0  # a candle of the second day
    write_candles(db, replace(candles, close=close, high=np.maximum(candles.high, close)))
    assert range_version(db, "BTC/USD") != whole
    assert range_version(db, "ETH/USD") is None


def test_rewriting_identical_candles_writes_nothing(db: Database) -> None:
    candles = synthetic("BTC/USD", "2026-01-01 12:00", 2000, seed=9)
    write_candles(db, candles)
    versions = (  # the transaction that wrote each row version
        "SELECT (SELECT array_agg(xmin::text ORDER BY day) FROM botq_candle_days), "
        "count(DISTINCT xmin::text) FROM botq_candles"
    )
    with db.connection() as conn:
        before = conn.execute(versions).fetchone()
    assert write_candles(db, candles) == 2000
    with db.connection() as conn:
        after = conn.execute(versions).fetchone()
    assert before == after and after is not None and after[1] == 1


def test_a_database_with_candles_from_before_migration_5_upgrades(
    server: dict[str, object],
) -> None:
    from botq.db.migrate import CREATE_VERSIONS, INSERT_APPLIED, migrations
    from tests.conftest import drop_database, fresh_database

    admin = str(server["url"])
    url = fresh_database(admin, template=None)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(CREATE_VERSIONS)
            for mig in migrations():
                if mig.version < 5:
                    conn.execute(mig.sql)
                    conn.execute(INSERT_APPLIED, (mig.version, mig.name))
            conn.execute("INSERT INTO botq_pairs (name) VALUES ('BTC/USD')")
            conn.execute(  # two days of candles written by the old triggers
                "INSERT INTO botq_candles (pair_id, ts, open, high, low, close, volume) "
                "SELECT 1, t, 1, 2, 0.5, 1.5, 3 FROM generate_series("
                "'2026-01-01 00:00+00'::timestamptz, '2026-01-02 23:59+00', '1 minute') t"
            )
        with Database(url) as db:  # applies migration 5
            old = load(db, "BTC/USD")
            assert len(old) == 2 * 1440 and (old.close == 1.5).all()
            changed = old.arrays()
            changed["close"] = changed["close"] + 0.25
            write_candles(db, Candles.from_arrays("BTC/USD", changed).between(None, old.time[2000]))
            got = load(db, "BTC/USD")
            assert len(got) == 2 * 1440
            np.testing.assert_array_equal(got.close[:2000], 1.75)
            np.testing.assert_array_equal(got.close[2000:], 1.5)
    finally:
        drop_database(admin, url)
