"""History sync: fill the candle store for a pair from Kraken, synthetic data, or a file.

Kraken: a range that starts within the latest ~12 hours comes from one OHLC call (committed
minutes only, never the forming one); anything older is built from Trades pages.

Incremental and crash-safe: every page of candles is committed together with the sync's resume
point, so a sync interrupted anywhere resumes where the store stands, with no gap and no
duplicate. Plain library code: the HistorySync task calls it with a progress callback.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from botq.errors import MarketDataError
from botq.market.candles import Candles
from botq.market.store import last_candle_ns, sync_cursor, to_utc_ns, write_candles
from botq.market.synthetic import synthetic
from botq.market.timeframes import NS_PER_MINUTE

if TYPE_CHECKING:
    from botq.db.database import Database
    from botq.market.kraken import KrakenClient

SOURCES = ("kraken", "synthetic", "file")
DEFAULT_WINDOW_NS = 30 * 1440 * NS_PER_MINUTE  # what a first sync fetches when no `since`
PAGE_MINUTES = 100_000
# Kraken's OHLC keeps the latest 720 minutes; a sync starting within them (less a margin for
# clock differences) takes one OHLC call instead of paging through Trades.
OHLC_TAIL_NS = (720 - 10) * NS_PER_MINUTE

Progress = Callable[[float, str], None]
# Names the per-pair sync lock among advisory locks (the pair's CRC32 is the second key).
SYNC_LOCK_KEY = 0x73796E63  # "sync"
SYNC_LOCK = "SELECT pg_advisory_lock(%(key)s, %(pair)s)"
SYNC_UNLOCK = "SELECT pg_advisory_unlock(%(key)s, %(pair)s)"


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What a sync did: candles added, the range now stored, missing minutes in it."""

    pair: str
    source: str
    candles_added: int
    first: str | None
    last: str | None
    stored: int
    missing_minutes: int
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "source": self.source,
            "candles_added": self.candles_added,
            "first": self.first,
            "last": self.last,
            "stored": self.stored,
            "missing_minutes": self.missing_minutes,
            "stopped_early": self.stopped_early,
        }


def _floor_minute(ns: int) -> int:
    return ns - ns % NS_PER_MINUTE


def _now_ns() -> int:
    return _floor_minute(int(datetime.now().timestamp() * 1e9))


def sync_history(
    db: Database,
    pair: str,
    *,
    source: str = "kraken",
    since: datetime | str | int | None = None,
    until: datetime | str | int | None = None,
    path: str | Path | None = None,
    client: KrakenClient | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SyncResult:
    """Bring `pair`'s 1-minute candles up to `until` (default: now).

    Without `since`, a sync resumes after the newest stored candle (or, the first time, starts
    30 days before `until`); with `since` it (re)fetches [since, until), which is harmless
    since writes replace rows. `source="file"` imports `path` whole. Without a `client`,
    Kraken calls take their slots from a `PgRateLimiter`: one budget for every process
    syncing against this database, whatever the pair.
    """
    if source not in SOURCES:
        raise MarketDataError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    report = progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    until_ns = _floor_minute(to_utc_ns(until) or _now_ns())
    # One sync per pair at a time, across every worker process: a second one waits here, then
    # resumes from what the first stored. (It also keeps Kraken's per-pair limit per pair.)
    with db.connection() as lock_conn:
        lock_conn.execute(SYNC_LOCK, {"key": SYNC_LOCK_KEY, "pair": _pair_lock_id(pair)})
        try:
            return _sync_locked(db, pair, source, since, until_ns, path, client, report, stop)
        finally:
            lock_conn.execute(SYNC_UNLOCK, {"key": SYNC_LOCK_KEY, "pair": _pair_lock_id(pair)})


def _pair_lock_id(pair: str) -> int:
    return zlib.crc32(pair.encode()) - 2**31  # an int4 for the two-key advisory lock


def _sync_locked(
    db: Database,
    pair: str,
    source: str,
    since: datetime | str | int | None,
    until_ns: int,
    path: str | Path | None,
    client: KrakenClient | None,
    report: Progress,
    stop: Callable[[], bool],
) -> SyncResult:
    if source == "file":
        if path is None:
            raise MarketDataError("source 'file' needs a path to a CSV or Parquet file")
        added, stopped = _sync_file(db, pair, Path(path), report, stop)
    else:
        resume = last_candle_ns(db, pair)
        start_ns = (
            _floor_minute(to_utc_ns(since))  # type: ignore[arg-type]
            if since is not None
            else resume + NS_PER_MINUTE
            if resume is not None
            else until_ns - DEFAULT_WINDOW_NS
        )
        if source == "synthetic":
            added, stopped = _sync_synthetic(db, pair, start_ns, until_ns, report, stop)
        else:
            added, stopped = _sync_kraken(db, pair, start_ns, until_ns, client, report, stop)
    return _summary(db, pair, source, added, stopped)


def _pages(start_ns: int, until_ns: int) -> list[tuple[int, int]]:
    step = PAGE_MINUTES * NS_PER_MINUTE
    return [(a, min(a + step, until_ns)) for a in range(start_ns, until_ns, step)]


def _sync_synthetic(
    db: Database, pair: str, start_ns: int, until_ns: int, report: Progress, stop: Any
) -> tuple[int, bool]:
    # The series is anchored where the pair's synthetic history began, so that minute t has
    # the same candle however the sync is split into runs.
    saved = sync_cursor(db, pair)
    anchor = start_ns
    if saved is not None and saved[0] == "synthetic" and saved[1]:
        anchor = min(int(json.loads(saved[1])["anchor"]), start_ns)
    cursor = ("synthetic", json.dumps({"anchor": anchor}))
    added = 0
    pages = _pages(start_ns, until_ns)
    for i, (a, b) in enumerate(pages):
        if stop():
            return added, True
        offset = (a - anchor) // NS_PER_MINUTE
        full = synthetic(pair, anchor, offset + (b - a) // NS_PER_MINUTE, seed=0)
        added += write_candles(db, full.between(a, b), pair, cursor=cursor)
        report((i + 1) / len(pages), f"{added:,} candles written")
    return added, False


def _sync_file(
    db: Database, pair: str, path: Path, report: Progress, stop: Any
) -> tuple[int, bool]:
    from botq.market.files import read_candles

    candles = read_candles(path, pair)
    report(0.05, f"read {len(candles):,} candles from {path.name}")
    if not len(candles):
        return 0, False
    added = 0
    pages = _pages(int(candles.time[0]), int(candles.time[-1]) + NS_PER_MINUTE)
    for i, (a, b) in enumerate(pages):
        if stop():
            return added, True
        added += write_candles(db, candles.between(a, b), pair, cursor=("file", str(path)))
        report(0.05 + 0.95 * (i + 1) / len(pages), f"{added:,} candles written")
    return added, False


def _sync_kraken(
    db: Database,
    pair: str,
    start_ns: int,
    until_ns: int,
    client: KrakenClient | None,
    report: Progress,
    stop: Any,
) -> tuple[int, bool]:
    from botq.market.kraken import KrakenClient, default_http_client
    from botq.market.ratelimit import PgRateLimiter
    from botq.market.trades_nb import trades_to_candles

    http = default_http_client() if client is None else None
    # Kraken's public budget is per IP: take it from the database, shared by every worker.
    kraken = client or KrakenClient(http, limiter=PgRateLimiter(db))  # type: ignore[arg-type]
    added = 0
    carry = (np.empty(0, np.int64), np.empty(0), np.empty(0))  # trades of an unfinished minute
    try:
        if start_ns >= _now_ns() - OHLC_TAIL_NS:  # recent minutes only: one OHLC call
            return _sync_kraken_ohlc(db, kraken, pair, start_ns, until_ns, report), False
        for page in kraken.iter_trades(pair, since=str(start_ns), until_ns=until_ns):
            t = np.concatenate([carry[0], page.time_ns])
            p = np.concatenate([carry[1], page.price])
            v = np.concatenate([carry[2], page.volume])
            cursor_ns = int(page.last)
            if not len(t):
                continue
            built = trades_to_candles(t, p, v, cursor_ns=cursor_ns)
            final = built.pop("final")
            candles = Candles.from_arrays(pair, built, complete=final)
            open_minute = int(built["time"][-1]) if not final[-1] else None
            resume = str(open_minute if open_minute is not None else cursor_ns)
            added += write_candles(db, candles, pair, cursor=("kraken", resume))
            keep = t >= open_minute if open_minute is not None else np.zeros(len(t), bool)
            carry = (t[keep], p[keep], v[keep])
            done = min(max(cursor_ns - start_ns, 0) / max(until_ns - start_ns, 1), 1.0)
            report(done, f"{added:,} candles from Kraken trades")
            if stop():
                return added, True
    finally:
        if http is not None:
            http.close()
    return added, False


def _sync_kraken_ohlc(
    db: Database, kraken: KrakenClient, pair: str, start_ns: int, until_ns: int, report: Progress
) -> int:
    """Store Kraken's committed 1-minute OHLC candles in [start, until); never the forming one.

    Kraken keeps only the latest 720 minutes, which is why this serves short tails only. Like
    the Trades path it stores minutes with trades only (`KrakenClient.ohlc` drops flat rows).
    """
    from botq.market.kraken import NS_PER_SECOND

    page = kraken.ohlc(pair, 1, since=start_ns // NS_PER_SECOND - 60)  # since is exclusive
    final = page.final
    keep = (final["time"] >= start_ns) & (final["time"] < until_ns)
    candles = Candles.from_arrays(pair, {k: v[keep] for k, v in final.items()})
    covered = min((page.last + 60) * NS_PER_SECOND, until_ns)  # trades before this are in
    added = write_candles(db, candles, pair, cursor=("kraken", str(covered)))
    report(1.0, f"{added:,} candles from Kraken OHLC")
    return added


def _summary(db: Database, pair: str, source: str, added: int, stopped: bool) -> SyncResult:
    from botq.market.store import coverage

    mine = coverage(db, pair=pair, gaps=0)
    if not mine:
        return SyncResult(pair, source, added, None, None, 0, 0, stopped)
    cov = mine[0]
    return SyncResult(
        pair,
        source,
        added,
        cov.first.isoformat(),
        cov.last.isoformat(),
        cov.count,
        cov.missing_minutes,
        stopped,
    )
