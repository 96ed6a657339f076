"""Backtest and BulkBacktest through the queue: stored runs, chunks, cancel, missing data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import botq
from botq.backtest import Strategy, run
from botq.backtest.storage import load_run, results
from botq.backtest.templates import ema_cross
from botq.db.database import Database
from botq.market import load, synthetic, write_candles

CROSS = ema_cross()


@pytest.fixture
def with_candles(db: Database) -> Database:
    write_candles(db, synthetic("BTC/USD", "2026-01-01", 2 * 1440, seed=21))
    return db


def test_backtest_task_stores_the_run(with_candles: Database) -> None:
    db = with_candles
    spec = CROSS.replace("{fast}", "5").replace("{slow}", "20")
    payload = {"strategy": spec, "pair": "BTC/USD", "capital": 500, "fee": 0.002}
    task_id = db.queue.enqueue("Backtest", payload, priority="high")
    missing = db.queue.enqueue("Backtest", {**payload, "pair": "ETH/USD"})
    early = db.queue.enqueue("Backtest", {**payload, "end": "2025-06-01"})
    bad = db.queue.enqueue("Backtest", {**payload, "strategy": {"meta": {"name": "x"}}})
    with botq.Worker(db, schedule=False, poll_interval=0.2):
        tasks = {i: db.queue.wait(i, timeout=120) for i in (task_id, missing, early, bad)}
    task = tasks[task_id]
    assert task.status == "completed", task.error
    expected = run(Strategy.from_toml(spec), load(db, "BTC/USD"), capital=500, fee=0.002)
    assert task.result["final_result_pct"] == pytest.approx(
        expected.metrics["final_result_pct"], rel=1e-12
    )
    stored = load_run(db, task.result["run_id"])
    assert stored.spec == spec and stored.spec_format == "toml" and stored.task_id == task_id
    assert stored.config["capital"] == 500 and stored.config["fee"] == 0.002
    filled = expected.trades[expected.trades["status"] == "filled"]
    assert len(stored.trades) == len(filled) > 0
    np.testing.assert_allclose(stored.trades["price"], filled["price"])
    assert stored.equity_points_full == 2 * 1440 and len(stored.equity) <= 4000
    assert stored.equity.iloc[-1] == pytest.approx(expected.equity.iloc[-1])
    for failed, words in [(missing, "no candles are stored"), (early, "stored candles cover")]:
        t = tasks[failed]
        assert t.status == "failed" and t.attempts == 1, t.error
        assert "insufficient data" in t.error and words in t.error
    assert tasks[bad].status == "failed" and "REQUIRED" in tasks[bad].error


def test_bulk_backtest_fans_out_and_ranks(with_candles: Database) -> None:
    db = with_candles
    payload = {
        "template": CROSS, "grid": {"fast": [3, 5, 8], "slow": [13, 21, 34]},
        "pair": "BTC/USD", "chunk_size": 4,
    }  # fmt: skip
    bulk = db.queue.enqueue("BulkBacktest", payload, priority="high")
    with botq.Worker(db, concurrency=2, schedule=False, poll_interval=0.2):
        task = db.queue.wait(bulk, timeout=180)
    assert task.status == "completed", task.error
    assert task.result == {"bulk_id": bulk, "variants": 9, "chunks": 3, "children": 3,
                           "children_failed": 0, "children_cancelled": 0}  # fmt: skip
    table = results(db, bulk)
    assert len(table) == 9 and table["name"].is_unique
    ranked = table["final_result_pct"].to_numpy()
    assert (np.diff(ranked) <= 0).all()  # best first
    chunks = db.queue.list(type="BacktestChunk")
    assert {t.priority for t in chunks} == {"high"}
    # every chunk runs on the candles the parent saw: the range is pinned in their payloads
    stored = load(db, "BTC/USD")
    span = (int(stored.time[0]), int(stored.time[-1]) + 60 * 10**9)
    assert {(t.payload["start"], t.payload["end"]) for t in chunks} == {span}
    best = load_run(db, int(table["run_id"][0]))  # a sweep keeps metrics and the spec
    assert best.metrics["final_result_pct"] == ranked[0] and best.trades.empty
    rerun = run(Strategy.from_dict(__import__("json").loads(best.spec)), load(db, "BTC/USD"))
    assert rerun.metrics["final_result_pct"] == pytest.approx(ranked[0], rel=1e-12)

    detailed = db.queue.enqueue("BulkBacktest", {**payload, "grid": {"fast": [5], "slow": [21]},
                                                 "store_equity": True})  # fmt: skip
    with botq.Worker(db, schedule=False, poll_interval=0.2):
        assert db.queue.wait(detailed, timeout=120).status == "completed"
    kept = load_run(db, int(results(db, detailed)["run_id"][0]))
    assert kept.equity_points_full == 2 * 1440 and kept.trades.empty


def test_a_bulk_backtest_without_data_fails_before_any_chunk(with_candles: Database) -> None:
    db = with_candles
    payload = {"template": CROSS, "grid": {"fast": [3], "slow": [13]}, "chunk_size": 1}
    missing = db.queue.enqueue("BulkBacktest", {**payload, "pair": "ETH/USD"})
    early = db.queue.enqueue("BulkBacktest", {**payload, "pair": "BTC/USD", "end": "2025-06-01"})
    with botq.Worker(db, schedule=False, poll_interval=0.2):
        tasks = [db.queue.wait(i, timeout=120) for i in (missing, early)]
    for t, words in zip(tasks, ["no candles are stored", "stored candles cover"], strict=True):
        assert t.status == "failed" and "insufficient data" in (t.error or ""), t.error
        assert words in (t.error or "")
    assert db.queue.list(type="BacktestChunk") == []


def test_cancelling_a_bulk_backtest_stops_its_chunks(with_candles: Database) -> None:
    db = with_candles
    payload = {"template": CROSS, "grid": {"fast": list(range(2, 12)), "slow": [30, 40, 50]},
               "pair": "BTC/USD", "chunk_size": 1}  # fmt: skip
    bulk = db.queue.enqueue("BulkBacktest", payload)
    with botq.Worker(db, schedule=False, poll_interval=0.2):
        from tests.support.util import wait_until

        wait_until(lambda: db.queue.get(bulk).waiting_children, timeout=60)
        assert db.queue.cancel(bulk).status == "cancelled"
        wait_until(lambda: db.queue.children_counts(bulk)["running"] == 0, timeout=60)
    counts = db.queue.children_counts(bulk)
    assert counts["pending"] == 0 and counts["cancelled"] > 0
    assert len(results(db, bulk)) < 30


def test_a_worker_lets_a_finished_sweeps_columns_go(
    with_candles: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from botq.tasks import backtest as tasks

    monkeypatch.setattr(tasks, "SWEEP_IDLE_S", 0.5)
    payload = {"template": CROSS, "grid": {"fast": [3, 5], "slow": [13, 21]},
               "pair": "BTC/USD", "chunk_size": 1}  # fmt: skip
    bulk = with_candles.queue.enqueue("BulkBacktest", payload)
    with botq.Worker(with_candles, schedule=False, poll_interval=0.2):
        assert with_candles.queue.wait(bulk, timeout=120).status == "completed"
    ((served, market, _),) = tasks._sweep_market.values()  # kept for the sweep's next chunk
    assert market.cache is not None and len(market.cache) == 4  # ema_3, ema_5, ema_13, ema_21
    assert served == bulk and next(iter(tasks._sweep_market))[:2] == (with_candles.url, "BTC/USD")
    deadline = time.monotonic() + 10
    while tasks._sweep_market and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tasks._sweep_market  # released once idle


def test_a_later_sweep_over_unchanged_candles_reuses_the_computed_columns(
    with_candles: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botq.tasks import backtest as tasks

    db = with_candles
    loads: list[object] = []
    real_load = tasks._candles
    monkeypatch.setattr(tasks, "_candles", lambda *a: loads.append(a) or real_load(*a))

    def sweep(fast: list[int]) -> tuple[int, object]:
        payload = {"template": CROSS, "grid": {"fast": fast, "slow": [21]}, "pair": "BTC/USD",
                   "end": "2026-01-02 12:00"}  # fmt: skip
        bulk = db.queue.enqueue("BulkBacktest", payload)
        with botq.Worker(db, schedule=False, poll_interval=0.2):
            assert db.queue.wait(bulk, timeout=120).status == "completed"
        ((served, market, _),) = tasks._sweep_market.values()
        assert served == bulk
        return bulk, market

    first, market = sweep([3, 5])
    assert len(loads) == 1
    second, again = sweep([5, 8])
    assert again is market and len(market.cache) == 4  # ema_3, ema_5, ema_21 kept, + ema_8
    assert len(loads) == 1  # the candles were not written since: not even loaded again
    expected = run_many_table([5, 8], load(db, "BTC/USD", end="2026-01-02 12:00"))
    got = results(db, second).sort_values("name").reset_index(drop=True)
    assert list(got["final_value"]) == list(expected["final_value"])
    # a candle inside the range changes: the next sweep loads, compares and starts afresh
    changed = load(db, "BTC/USD", end="2026-01-02 12:00")
    close = changed.close.copy()
    close[100] *= 1.01
    write_candles(db, replace(changed, close=close, high=np.maximum(changed.high, close)))
    _, fresh = sweep([5, 8])
    assert fresh is not market and len(fresh.cache) == 3 and len(loads) == 2
    # rewritten days with the same candles: loaded again, compared, and the columns reused
    with db.connection() as conn:
        conn.execute("UPDATE botq_candle_days SET n = n")
    _, same = sweep([5, 8])
    assert same is fresh and len(loads) == 3


def run_many_table(fast: list[int], candles: object) -> object:
    from botq.backtest import Template, grid, run_many

    table = run_many(grid(Template(CROSS), {"fast": fast, "slow": [21]}), candles)
    return table.sort_values("name").reset_index(drop=True)


def test_the_column_cache_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from botq._env import column_cache_mb
    from botq.errors import ConfigError

    monkeypatch.delenv("BOTQ_COLUMN_CACHE_MB", raising=False)
    assert column_cache_mb() == 512
    monkeypatch.setenv("BOTQ_COLUMN_CACHE_MB", "0")
    assert column_cache_mb() == 0
    for bad in ("lots", "-5", "nan"):
        monkeypatch.setenv("BOTQ_COLUMN_CACHE_MB", bad)
        with pytest.raises(ConfigError, match="BOTQ_COLUMN_CACHE_MB must be a number"):
            column_cache_mb()
