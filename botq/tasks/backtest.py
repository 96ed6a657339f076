"""Backtest, BulkBacktest and BacktestChunk: strategies run on stored candles, results stored.

Backtest payload: {"strategy": TOML text or dict, "pair", "start"?, "end"?, "timeframe"?,
"capital"?, "fee"?, "fill"?}. Result: the metrics plus `run_id`.

BulkBacktest payload: {"strategies": [TOML text or dict, ...]} or {"template": TOML text or
dict with {placeholders}, "grid": {"name": [values, ...], ...}}, plus the Backtest fields,
"chunk_size"? (variants per child task, default 20), "store_equity"? and "store_trades"?
(default false: a sweep keeps each run's metrics; its equity and trades are recomputable from
the stored spec with `botq.backtest.run`). It
enqueues BacktestChunk children with its own priority, each running several variants on
candles and indicators loaded once, and waits for them (see `Context.wait_for_children`):
its progress follows them, it completes when all have finished (its result says how many
failed), cancelling it cancels them.
`botq.backtest.storage.results(db, bulk_id)` compares the runs side by side.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pandas as pd

from botq._env import column_cache_mb
from botq.backtest import Strategy, Template, grid, run, run_many
from botq.backtest.compile import Market
from botq.backtest.storage import json_safe, save_run, save_summaries
from botq.errors import MarketDataError, PayloadError, StrategyError
from botq.market import Candles, coverage, load
from botq.market.candles import FIELDS, FLOAT_FIELDS
from botq.market.store import range_version, stored_range
from botq.market.timeframes import NS_PER_MINUTE, TIMEFRAMES
from botq.queue.handlers import Context, handler
from botq.tasks._payload import choice, optional_time, required_str

DEFAULT_CHUNK = 20
MAX_CHUNK = 500
MIN_CANDLES = 2


def _spec(value: Any, field: str) -> tuple[Strategy, str, str]:
    """(strategy, spec as written, its format) from TOML text or a dict."""
    if isinstance(value, str) and value.strip():
        return Strategy.from_toml(value), value, "toml"
    if isinstance(value, dict):
        return Strategy.from_dict(value), json.dumps(value), "json"
    raise PayloadError(field, "required: the strategy as TOML text or as a dict")


def _number(payload: dict[str, Any], field: str, default: float, low: float, high: float) -> float:
    value = payload.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PayloadError(field, f"must be a number from {low} to {high}, got {value!r}")
    return float(value)


def _settings(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "pair": required_str(payload, "pair", "BTC/USD"),
        "start": optional_time(payload, "start"),
        "end": optional_time(payload, "end"),
        "timeframe": choice(payload, "timeframe", tuple(TIMEFRAMES), "1m"),
        "capital": _number(payload, "capital", 1000.0, 1e-6, 1e15),
        "fee": _number(payload, "fee", 0.001, 0.0, 0.5),
        "fill": choice(payload, "fill", ("close", "next_open"), "close"),
    }


# The candles (and computed columns) of the sweep this worker process last ran a chunk of: the
# chunks of one BulkBacktest that land on the same worker load the candles once and compute
# each indicator once, and so does a later sweep over the same, unchanged candles (see
# _sweep_candles). One candle range at a time; its columns take up to BOTQ_COLUMN_CACHE_MB
# (default 512), released when no chunk has used them for SWEEP_IDLE_S seconds.
SWEEP_IDLE_S = 60.0
# (database, pair, timeframe, start, end) -> (id of the sweep last served, its Market, the
# candles' range_version when they were loaded)
_sweep_market: dict[tuple[Any, ...], tuple[int, Market, str | None]] = {}
_sweep_lock = threading.Lock()
_sweep_loading = threading.Lock()
_sweep_timer: threading.Timer | None = None


def _sweep_key(ctx: Context, s: dict[str, Any]) -> tuple[Any, ...]:
    # the database too: the same pair and range in another database are other candles
    return (ctx.db.url, s["pair"], s["timeframe"], s["start"], s["end"])


def _forget_sweep() -> None:
    with _sweep_lock:
        _sweep_market.clear()


def _touch_sweep() -> None:
    """(Re)start the idle clock of the kept sweep; call with _sweep_lock held."""
    global _sweep_timer
    if _sweep_timer is not None:
        _sweep_timer.cancel()
    _sweep_timer = threading.Timer(SWEEP_IDLE_S, _forget_sweep)
    _sweep_timer.daemon = True
    _sweep_timer.start()


def _remember(key: tuple[Any, ...], bulk_id: int, market: Market, version: str | None) -> Market:
    with _sweep_lock:
        _sweep_market.clear()
        _sweep_market[key] = (bulk_id, market, version)
        _touch_sweep()
    return market


def _same_candles(a: Candles, b: Candles) -> bool:
    """Whether two loads returned the same candles, value for value."""
    return (
        (a.pair, a.timeframe, len(a)) == (b.pair, b.timeframe, len(b))
        and all(
            np.array_equal(getattr(a, f), getattr(b, f), equal_nan=f in FLOAT_FIELDS)
            for f in FIELDS
        )
        and np.array_equal(a.complete, b.complete)
    )


def _sweep_candles(ctx: Context, s: dict[str, Any], bulk_id: Any) -> Market:
    """The chunk's candles as a Market, shared by the chunks of its sweep in this process, and
    by a later sweep over the same range if its candles have not been written since (their
    range_version) or, loaded again, are value for value the same."""
    if not isinstance(bulk_id, int):
        return Market.of(_candles(ctx, s))
    key = _sweep_key(ctx, s)
    with _sweep_loading:  # chunks starting together in this process: one loads, the rest wait
        with _sweep_lock:
            kept = _sweep_market.get(key)
            if kept is not None and kept[0] == bulk_id:
                _touch_sweep()
                return kept[1]
        version = range_version(ctx.db, s["pair"], s["start"], s["end"])  # before the load
        if kept is not None and version is not None and version == kept[2]:
            return _remember(key, bulk_id, kept[1], version)  # its computed columns too
        candles = _candles(ctx, s)
        if kept is not None and _same_candles(kept[1].candles, candles):
            return _remember(key, bulk_id, kept[1], version)
        return _remember(key, bulk_id, Market.of(candles, cache_mb=column_cache_mb()), version)


def _candles(ctx: Context, s: dict[str, Any]) -> Candles:
    """Closed candles for the settings, or an 'insufficient data' error naming what exists."""
    try:
        candles = load(ctx.db, s["pair"], s["start"], s["end"], timeframe=s["timeframe"]).closed()
    except MarketDataError:
        candles = None
    if candles is not None and len(candles) >= MIN_CANDLES:
        return candles
    raise _insufficient(ctx, s)


def _insufficient(ctx: Context, s: dict[str, Any]) -> MarketDataError:
    """The 'insufficient data' error, naming the range that is stored."""
    stored = coverage(ctx.db, s["pair"], gaps=0)
    have = (
        f"stored candles cover {stored[0].first:%Y-%m-%d %H:%M} to {stored[0].last:%Y-%m-%d %H:%M}"
        f" UTC ({stored[0].count:,} one-minute candles)"
        if stored
        else "no candles are stored for it"
    )
    return MarketDataError(
        f"insufficient data for {s['pair']} {s['timeframe']} from {s['start'] or 'the start'} "
        f"to {s['end'] or 'now'}: {have}. Sync them first with a HistorySync task"
    )


@handler("Backtest", builtin=True)
def backtest(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    strategy, spec, spec_format = _spec(payload.get("strategy"), "strategy")
    s = _settings(payload)
    candles = _candles(ctx, s)
    ctx.progress(0.3, f"running on {len(candles):,} candles")
    result = run(strategy, candles, capital=s["capital"], fee=s["fee"], fill=s["fill"])
    run_id = save_run(ctx.db, result, spec=spec, spec_format=spec_format, task_id=ctx.task.id)
    return {"run_id": run_id, **json_safe(dict(result.metrics))}


def _variants(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every variant as a strategy dict, validated (all problems at once)."""
    if "strategies" in payload:
        specs = payload["strategies"]
        if not isinstance(specs, list) or not specs:
            raise PayloadError("strategies", "a non-empty list of strategies (TOML or dicts)")
        out, problems = [], []
        for i, spec in enumerate(specs):
            try:
                out.append(_spec(spec, f"strategies[{i}]")[0].to_dict())
            except StrategyError as exc:
                problems += [
                    type(p)(p.code, f"strategies[{i}].{p.path}".rstrip("."), p.message)
                    for p in exc.problems
                ]
        if problems:
            raise StrategyError(problems)
        return out
    if "template" in payload:
        params = payload.get("grid")
        if not isinstance(params, dict) or not params:
            raise PayloadError("grid", "a dict of parameter lists, e.g. {'fast': [5, 12]}")
        return [s.to_dict() for s in grid(Template(payload["template"]), params)]
    raise PayloadError("strategies", "give 'strategies' (a list) or 'template' and 'grid'")


@handler("BulkBacktest", builtin=True)
def bulk_backtest(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    variants = _variants(payload)
    s = _settings(payload)
    chunk = int(_number(payload, "chunk_size", DEFAULT_CHUNK, 1, MAX_CHUNK))
    # every chunk runs on exactly the minutes stored now, even if a sync adds newer ones
    # meanwhile; found with two index lookups, so the chunks start without waiting for a load
    span = stored_range(ctx.db, s["pair"], s["start"], s["end"])
    if span is None or span[0] == span[1]:
        raise _insufficient(ctx, s)  # fail now, not in every child, when the data is missing
    pinned = {"start": span[0], "end": span[1] + NS_PER_MINUTE}
    skip = ("strategies", "template", "grid", "start", "end")
    common = {**{k: v for k, v in payload.items() if k not in skip}, **pinned}
    children = [
        ("BacktestChunk", {**common, "strategies": variants[i : i + chunk], "bulk_id": ctx.task.id})
        for i in range(0, len(variants), chunk)
    ]
    ctx.db.queue.enqueue_many(children, priority=ctx.task.priority.value, parent_id=ctx.task.id)
    ctx.wait_for_children()
    return {"bulk_id": ctx.task.id, "variants": len(variants), "chunks": len(children)}


@handler("BacktestChunk", builtin=True)
def backtest_chunk(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    strategies = [Strategy.from_dict(spec) for spec in payload.get("strategies", [])]
    if not strategies:
        raise PayloadError("strategies", "a non-empty list of strategy dicts")
    s = _settings(payload)
    market = _sweep_candles(ctx, s, payload.get("bulk_id"))
    candles = market.candles
    specs = [json.dumps(strategy.to_dict()) for strategy in strategies]
    options = {"capital": s["capital"], "fee": s["fee"], "fill": s["fill"]}
    if not (payload.get("store_trades") or payload.get("store_equity")):
        table = run_many(strategies, market, **options)
        first = pd.Timestamp(int(candles.time[0]), tz="UTC")
        last = pd.Timestamp(int(candles.time[-1]), tz="UTC")
        config = {**options, "pair": s["pair"], "timeframe": s["timeframe"],
                  "start": first.isoformat(), "end": last.isoformat()}  # fmt: skip
        run_ids = save_summaries(
            ctx.db, table, specs, config=config, candle_range=(first, last, len(candles)),
            task_id=ctx.task.id, bulk_id=payload.get("bulk_id"),
        )  # fmt: skip
        return {"run_ids": run_ids, "variants": len(strategies), "candles": len(candles)}
    results = run_many(strategies, market, **options, details=True)
    run_ids = []
    for i, (spec, result) in enumerate(zip(specs, results, strict=True)):
        if ctx.cancelled:
            break
        run_ids.append(
            save_run(
                ctx.db, result, spec=spec, spec_format="json", task_id=ctx.task.id,
                bulk_id=payload.get("bulk_id"), store_trades=bool(payload.get("store_trades")),
            )
        )  # fmt: skip
        ctx.progress((i + 1) / len(strategies), f"{i + 1}/{len(strategies)} variants stored")
    return {"run_ids": run_ids, "variants": len(strategies), "candles": len(candles)}
