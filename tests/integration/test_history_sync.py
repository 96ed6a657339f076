"""HistorySync: synthetic, file and Kraken sources; incremental, resumable, through the queue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import botq
from botq.db.database import Database
from botq.market import coverage, load, synthetic
from botq.market.files import write_candles_file
from botq.market.ratelimit import PUBLIC_BUCKET, PgRateLimiter
from botq.market.sync import sync_history
from botq.market.timeframes import NS_PER_MINUTE
from botq.market.trades_nb import trades_to_candles
from tests.support.fake_kraken import FakeKraken

START = "2026-01-01T00:00:00Z"


def no_gaps_no_dups(db: Database, pair: str) -> None:
    candles = load(db, pair)
    assert (np.diff(candles.time) == NS_PER_MINUTE).all()


def test_synthetic_sync_is_incremental_and_split_invariant(db: Database) -> None:
    first = sync_history(
        db, "BTC/USD", source="synthetic", since=START, until="2026-01-01T06:00:00Z"
    )
    assert first.candles_added == 360 and first.missing_minutes == 0
    second = sync_history(db, "BTC/USD", source="synthetic", until="2026-01-02T00:00:00Z")
    assert second.candles_added == 1440 - 360  # resumed after the last stored candle
    assert second.stored == 1440 and second.last == "2026-01-01T23:59:00+00:00"
    assert (
        sync_history(db, "BTC/USD", source="synthetic", until="2026-01-02T00:00:00Z").candles_added
        == 0
    )
    no_gaps_no_dups(db, "BTC/USD")
    # two runs give the same candles as one: the series is anchored at the first `since`
    one_go = synthetic("BTC/USD", START, 1440, seed=0)
    np.testing.assert_array_equal(load(db, "BTC/USD").close, one_go.close)


def test_file_sync_imports_csv_and_parquet(db: Database, tmp_path: Path) -> None:
    candles = synthetic("ETH/USD", START, 2000, seed=3)
    write_candles_file(candles, tmp_path / "eth.parquet")
    result = sync_history(db, "ETH/USD", source="file", path=tmp_path / "eth.parquet")
    assert result.candles_added == 2000
    np.testing.assert_array_equal(load(db, "ETH/USD").vwap, candles.vwap)
    kraken_csv = tmp_path / "SOLUSD_1.csv"
    frame = synthetic("SOL/USD", START, 100, seed=4).to_pandas()
    rows = [
        f"{int(t.timestamp())},{r.open},{r.high},{r.low},{r.close},{r.volume},{r.trades}"
        for t, r in frame.iterrows()
    ]
    kraken_csv.write_text("\n".join(rows) + "\n")
    assert sync_history(db, "SOL/USD", source="file", path=kraken_csv).candles_added == 100
    assert [c.pair for c in coverage(db)] == ["ETH/USD", "SOL/USD"]


def test_kraken_trades_sync_pages_resumes_and_matches_a_one_shot_build(db: Database) -> None:
    fake = FakeKraken(start_s=1_767_225_600, n=4500)  # 2026-01-01, ~5 hours of trades
    until = int(fake.time_ns[-1]) - int(fake.time_ns[-1]) % NS_PER_MINUTE
    since = int(fake.time_ns[0]) - int(fake.time_ns[0]) % NS_PER_MINUTE
    pages = 0

    def stop_after_two() -> bool:
        nonlocal pages
        pages += 1
        return pages >= 2

    partial = sync_history(
        db,
        "BTC/USD",
        source="kraken",
        since=since,
        until=until,
        client=fake.client(),
        should_stop=stop_after_two,
    )
    assert partial.stopped_early and partial.candles_added > 0
    rest = sync_history(db, "BTC/USD", source="kraken", until=until, client=fake.client())
    assert not rest.stopped_early
    assert fake.calls.count("/0/public/Trades") >= 5

    keep = fake.time_ns < until
    ref = trades_to_candles(
        fake.time_ns[keep], fake.price[keep], fake.volume[keep], cursor_ns=until
    )
    got = load(db, "BTC/USD")
    np.testing.assert_array_equal(got.time, ref["time"])
    for name in ("open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    np.testing.assert_allclose(got.volume, ref["volume"], rtol=1e-12)
    np.testing.assert_allclose(got.vwap, ref["vwap"], rtol=1e-12)


def test_history_sync_task_through_the_queue(db: Database, tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(
        "time,open,high,low,close,volume\n"
        "2026-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
        "2026-01-01T00:01:00Z,1,2,0.5,oops,10\n"
    )
    ok = db.queue.enqueue(
        "HistorySync",
        {"pair": "BTC/USD", "source": "synthetic", "since": START, "until": "2026-01-01T12:00:00Z"},
        priority="high",
    )
    no_pair = db.queue.enqueue("HistorySync", {"source": "synthetic"})
    bad_source = db.queue.enqueue("HistorySync", {"pair": "BTC/USD", "source": "ftp"})
    bad_file = db.queue.enqueue(
        "HistorySync", {"pair": "X/USD", "source": "file", "path": str(bad_csv)}, max_retries=0
    )
    with botq.Worker(db, schedule=False, poll_interval=0.2):
        tasks = {i: db.queue.wait(i, timeout=60) for i in (ok, no_pair, bad_source, bad_file)}
    done = tasks[ok]
    assert done.status == "completed", done.error
    assert done.result == {
        "pair": "BTC/USD",
        "source": "synthetic",
        "candles_added": 720,
        "first": "2026-01-01T00:00:00+00:00",
        "last": "2026-01-01T11:59:00+00:00",
        "stored": 720,
        "missing_minutes": 0,
        "stopped_early": False,
    }
    assert tasks[no_pair].status == "failed" and "payload field 'pair'" in tasks[no_pair].error
    assert tasks[no_pair].attempts == 1
    assert "'ftp' is not one of kraken, synthetic, file" in tasks[bad_source].error
    assert "bad.csv, line 3, column 'close': 'oops' is not a number" in tasks[bad_file].error
    lines = db.activity.list(category="sync")
    assert lines and lines[0].event == "sync completed" and lines[0].details["pair"] == "BTC/USD"
    assert pd.Timestamp(load(db, "BTC/USD").time[-1]) == pd.Timestamp("2026-01-01 11:59")


def test_concurrent_syncs_of_one_pair_take_turns(db: Database) -> None:
    import threading

    until = "2026-01-08T00:00:00Z"
    results = []

    def run() -> None:
        results.append(sync_history(db, "BTC/USD", source="synthetic", until=until))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    added = sorted(r.candles_added for r in results)
    assert added == [0, 30 * 1440]  # the second waited, then found nothing left to fetch
    no_gaps_no_dups(db, "BTC/USD")


def kraken_counter_peak(times: list[float], rate: float) -> float:
    """The highest value of Kraken's per-IP counter: +1 per request, decaying `rate` per s."""
    counter = peak = 0.0
    previous = None
    for t in sorted(times):
        if previous is not None:
            counter = max(0.0, counter - (t - previous) * rate)
        counter += 1
        peak = max(peak, counter)
        previous = t
    return peak


def test_concurrent_syncs_of_different_pairs_share_one_public_budget(db: Database) -> None:
    import threading

    rate, burst = 10.0, 2.0  # a faster budget than Kraken's 1/s, so the test takes ~2 s
    fake = FakeKraken(start_s=1_767_225_600, n=9000)  # 9 Trades pages per pair
    until = int(fake.time_ns[-1]) - int(fake.time_ns[-1]) % NS_PER_MINUTE
    results = {}

    def run(pair: str) -> None:  # like a worker process: its own client and limiter object
        limiter = PgRateLimiter(db, public_rate=rate, public_burst=burst, jitter=0.0)
        client = fake.client(limiter)
        results[pair] = sync_history(db, pair, source="kraken", since=0, until=until, client=client)

    threads = [threading.Thread(target=run, args=(p,)) for p in ("BTC/USD", "ETH/USD")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {p: r.candles_added > 0 for p, r in results.items()} == {
        "BTC/USD": True,
        "ETH/USD": True,
    }
    assert fake.calls.count("/0/public/Trades") == 2 * 9
    # Together they stay within one budget (two per-client limiters would reach twice the
    # rate); one request of slack, because a thread may send its request a moment after its
    # slot and so land closer to the next one.
    assert kraken_counter_peak(fake.times, rate) <= burst + 1


def test_history_sync_takes_krakens_budget_from_the_database(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    import botq.market.kraken as kraken

    fake = FakeKraken(start_s=1_767_225_600, n=300)
    monkeypatch.setattr(
        kraken,
        "default_http_client",
        lambda: httpx.Client(transport=httpx.MockTransport(fake.handler)),
    )
    until = int(fake.time_ns[-1]) - int(fake.time_ns[-1]) % NS_PER_MINUTE
    assert sync_history(db, "BTC/USD", source="kraken", since=0, until=until).candles_added > 0
    with db.connection() as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM botq_rate_buckets")]
    assert names == [PUBLIC_BUCKET]


def test_a_recent_tail_comes_from_one_ohlc_call_without_the_forming_minute(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botq.market.sync as sync

    fake = FakeKraken(start_s=1_767_225_600, n=15_000)  # ~17 hours of trades
    fake.now_ns = int(fake.time_ns[-1]) + 1
    forming = fake.now_ns - fake.now_ns % NS_PER_MINUTE
    monkeypatch.setattr(sync, "_now_ns", lambda: forming)
    since = forming - 300 * NS_PER_MINUTE
    early = sync_history(
        db,
        "BTC/USD",
        source="kraken",
        since=since,
        until=forming - 60 * NS_PER_MINUTE,
        client=fake.client(),
    )
    tail = sync_history(db, "BTC/USD", source="kraken", client=fake.client())  # resumes: up to now
    assert fake.calls.count("/0/public/OHLC") == 2 and "/0/public/Trades" not in fake.calls
    assert early.candles_added > 0 and tail.candles_added > 0

    done = fake.time_ns < forming  # what Kraken had committed
    ref = trades_to_candles(fake.time_ns[done], fake.price[done], fake.volume[done])
    keep = ref["time"] >= since
    got = load(db, "BTC/USD")
    assert got.time[-1] < forming  # the forming minute is not stored
    np.testing.assert_array_equal(got.time, ref["time"][keep])
    for name in ("open", "high", "low", "close", "trades", "volume", "vwap"):
        np.testing.assert_array_equal(got[name], ref[name][keep], err_msg=name)
