"""run_many: the same numbers as run, shared indicator columns, threads, details."""

from __future__ import annotations

import numpy as np
import pytest

from botq.backtest import BacktestResult, Template, grid, run, run_many
from botq.backtest.compile import Market, compile_all
from botq.market.synthetic import synthetic
from tests.unit.backtest import action, strategy, trig

TEMPLATE = Template(
    {
        "meta": {"name": "ema", "max_open_positions": 1},
        "actions": [
            {
                "type": "open_long",
                "amount": "100%",
                "triggers": [
                    {"indicator": "ema_{fast}", "operator": "cross_above", "target": "ema_{slow}"}
                ],
            },
            {
                "type": "sell",
                "amount": "100%",
                "triggers": [
                    {"indicator": "ema_{fast}", "operator": "cross_below", "target": "ema_{slow}"}
                ],
            },
            {
                "type": "sell",
                "amount": "100%",
                "triggers": [{"type": "trailing_stop", "value": "-{stop}%"}],
            },
        ],
    }
)


@pytest.fixture(scope="module")
def candles():
    return synthetic("BTC/USD", "2026-01-01", 20_000, seed=2)


def test_run_many_matches_run(candles) -> None:
    variants = grid(
        TEMPLATE,
        {"fast": [5, 12, 20], "slow": [26, 50], "stop": [1, 2.5]},
        where=lambda p: p["fast"] < p["slow"],
    )
    table = run_many(variants, candles, capital=500.0, fee=0.002)
    assert len(table) == 12 and list(table.name) == [v.name for v in variants]
    assert table.trades.dtype == np.int64
    for v, (_, row) in zip(variants[::5], table.iloc[::5].iterrows(), strict=True):
        one = run(v, candles, capital=500.0, fee=0.002).metrics
        for k in ("final_value", "fees", "trades", "sharpe", "max_drawdown_pct", "exposure_pct"):
            assert row[k] == pytest.approx(one[k], rel=1e-12, nan_ok=True), k
    assert table.attrs["engine_ms"] > 0 and table.attrs["runs_per_s"] > 0
    serial = run_many(variants, candles, capital=500.0, fee=0.002, workers=1)
    assert serial.drop(columns=[]).equals(table)


def test_distinct_columns_are_computed_once(candles) -> None:
    variants = grid(TEMPLATE, {"fast": [5, 12], "slow": [26, 50], "stop": [1, 2]})
    compiled, columns = compile_all(variants, Market.of(candles))
    inds = sorted(k[2] for k in columns.keys if k[0] == "ind")
    assert inds == ["ema_12", "ema_26", "ema_5", "ema_50"]
    assert columns.matrix is not None and columns.matrix.shape == (4, 20_000)
    # every variant points into the same matrix
    assert {int(c.trig_int[0, 2]) for c in compiled} == {
        columns.keys[("ind", None, "ema_5")],
        columns.keys[("ind", None, "ema_12")],
    }


def test_details_and_next_open(candles) -> None:
    variants = grid(TEMPLATE, {"fast": [5], "slow": [26, 50], "stop": [2]})
    results = run_many(variants, candles, fill="next_open", details=True)
    assert all(isinstance(r, BacktestResult) for r in results)
    table = run_many(variants, candles, fill="next_open")
    for r, fv in zip(results, table.final_value, strict=True):
        assert r.metrics["final_value"] == fv
        assert len(r.equity) == 20_000


def test_mixed_timeframes_share_one_matrix(candles) -> None:
    a = strategy(
        action("open_long", "50%", trig(indicator="rsi_14", operator="<", target=35,
                                        timeframe="1h")),
        action("sell", "100%", trig("pos_price_change", value="+1%")),
        name="a",
    )  # fmt: skip
    b = strategy(
        action("open_long", "50%", trig(indicator="rsi_14", operator="<", target=35)),
        action("sell", "100%", trig("consecutive_candles", value="3_green", timeframe="15m")),
        name="b",
    )
    table = run_many([a, b], candles)
    assert list(table.name) == ["a", "b"]
    assert table.final_value.tolist() == [run(a, candles).metrics["final_value"],
                                          run(b, candles).metrics["final_value"]]  # fmt: skip


def test_empty_sweep(candles) -> None:
    table = run_many([], candles)
    assert len(table) == 0 and "final_value" in table.columns


def test_a_market_cache_computes_each_column_once_across_compiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import botq.backtest.compile as compile_module

    candles = synthetic("BTC/USD", "2026-01-01", 3000, seed=4)
    asked: list[str] = []
    real = compile_module.compute_array

    def counting(c: object, names: list[str], **kwargs: object) -> object:
        asked.extend(names)
        return real(c, names, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compile_module, "compute_array", counting)
    first = grid(TEMPLATE, {"fast": [3, 5], "slow": [20], "stop": [2]})
    second = grid(TEMPLATE, {"fast": [5, 8], "slow": [20], "stop": [2]})
    market = Market.of(candles, cache_mb=64)
    a = run_many(first, market)
    b = run_many(second, market)
    assert sorted(asked) == ["ema_20", "ema_3", "ema_5", "ema_8"]  # ema_5, ema_20 reused
    # cached columns give exactly what a fresh compile gives
    for strategies, table in ((first, a), (second, b)):
        fresh = run_many(strategies, candles)
        assert table.drop(columns="name").equals(fresh.drop(columns="name"))
    assert market.cache is not None and len(market.cache) == 4


def test_a_full_column_store_gives_a_private_matrix_then_starts_afresh() -> None:
    candles = synthetic("BTC/USD", "2026-01-01", 3000, seed=4)
    market = Market.of(candles, cache_mb=3 * 3000 * 8 / 2**20)  # room for three columns
    first = grid(TEMPLATE, {"fast": [3], "slow": [20], "stop": [2]})
    second = grid(TEMPLATE, {"fast": [5], "slow": [30], "stop": [2]})
    _, using = compile_all(first, market)
    assert using.rows_in_store is not None and using.matrix is not None
    assert using.matrix.shape[0] == 3  # the engine reads the store itself
    # two more columns do not fit while the first compile still reads the store
    _, private = compile_all(second, market)
    assert private.rows_in_store is None and private.matrix is not None
    assert private.matrix.shape == (2, 3000)
    assert (
        run_many(second, market)
        .drop(columns="name")
        .equals(run_many(second, candles).drop(columns="name"))
    )
    using.release()
    _, fresh = compile_all(second, market)  # nobody reads the store now: it starts afresh
    assert fresh.rows_in_store is not None and market.cache is not None
    assert len(market.cache) == 2
    fresh.release()
    assert (
        run_many(first, market)
        .drop(columns="name")
        .equals(run_many(first, candles).drop(columns="name"))
    )


def test_a_prefaulted_store_serves_the_next_market_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from botq import _memory

    monkeypatch.setattr(_memory, "_taken", False)
    monkeypatch.setattr(_memory, "_spare", [])
    candles = synthetic("BTC/USD", "2026-01-01", 3000, seed=4)
    size = 4 * 3000 * 8  # four columns
    assert _memory.prefault(size)
    spare = _memory._spare[0]
    first = grid(TEMPLATE, {"fast": [3, 5], "slow": [20], "stop": [2]})
    market = Market.of(candles, cache_mb=size / 2**20)
    _, cols = compile_all(first, market)
    assert cols.matrix is not None and np.shares_memory(cols.matrix, spare)
    other = Market.of(candles, cache_mb=size / 2**20)  # given once: this one gets new memory
    _, cols2 = compile_all(first, other)
    assert cols2.matrix is not None and not np.shares_memory(cols2.matrix, spare)
    assert (
        run_many(first, market)
        .drop(columns="name")
        .equals(run_many(first, candles).drop(columns="name"))
    )
    cols.release()
    cols2.release()
