"""Backtest results in PostgreSQL: one row per run, trades in their own table, equity packed.

The equity curve is stored downsampled to at most `EQUITY_POINTS` points (always keeping the
first and last bar and each stretch's lowest and highest value, so drawdowns still show); the
full curve is recomputable with `botq.backtest.run` from the stored spec, config and candles.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from botq.errors import MarketDataError
from botq.market.candles import utc_index

if TYPE_CHECKING:
    from botq.backtest.run import BacktestResult
    from botq.db.database import Database

EQUITY_POINTS = 4000

INSERT_RUN = """
INSERT INTO botq_backtest_runs (name, spec, spec_format, config, metrics, final_result, pair,
                                candle_start, candle_end, candles, task_id, bulk_id)
VALUES (%(name)s, %(spec)s, %(spec_format)s, %(config)s::jsonb, %(metrics)s::jsonb,
        %(final_result)s, %(pair)s, %(candle_start)s, %(candle_end)s, %(candles)s,
        %(task_id)s, %(bulk_id)s)
RETURNING id
"""
INSERT_TRADES = """
INSERT INTO botq_backtest_trades (run_id, seq, tick, ts, action, position, price, amount_quote,
                                  amount_base, trigger, portfolio_value, realized_pnl)
SELECT %(run_id)s, t.seq, t.tick, to_timestamp(t.ts_ns / 1e9), t.action, t.position, t.price,
       t.quote, t.base, t.trigger, t.value, t.pnl
FROM jsonb_to_recordset(%(trades)s::jsonb) AS t (seq int, tick int, ts_ns float8, action text,
     position int, price float8, quote float8, base float8, trigger text, value float8,
     pnl float8)
"""
INSERT_EQUITY = """
INSERT INTO botq_backtest_equity (run_id, n, full_n, ts, value)
VALUES (%(run_id)s, %(n)s, %(full_n)s, %(ts)s, %(value)s)
"""
INSERT_SUMMARIES = """
INSERT INTO botq_backtest_runs (name, spec, spec_format, config, metrics, final_result, pair,
                                candle_start, candle_end, candles, task_id, bulk_id)
SELECT r.name, r.spec, 'json', %(config)s::jsonb, r.metrics, r.final_result, %(pair)s,
       %(candle_start)s, %(candle_end)s, %(candles)s, %(task_id)s, %(bulk_id)s
FROM jsonb_to_recordset(%(runs)s::jsonb)
     AS r (n int, name text, spec text, metrics jsonb, final_result float8)
ORDER BY r.n
RETURNING id
"""
SELECT_BULK = """
SELECT id, name, final_result, metrics, created_at FROM botq_backtest_runs
WHERE bulk_id = %(bulk_id)s ORDER BY final_result DESC NULLS LAST, id
"""
SELECT_RUN = """
SELECT id, name, spec, spec_format, config, metrics, pair, candle_start, candle_end, candles,
       task_id, bulk_id, created_at
FROM botq_backtest_runs WHERE id = %(id)s
"""
SELECT_TRADES = """
SELECT seq, tick, ts, action, position, price, amount_quote, amount_base, trigger,
       portfolio_value, realized_pnl
FROM botq_backtest_trades WHERE run_id = %(id)s ORDER BY seq
"""
SELECT_EQUITY = "SELECT ts, value, full_n FROM botq_backtest_equity WHERE run_id = %(id)s"


def json_safe(value: Any) -> Any:
    """JSON-safe: NumPy scalars to Python, NaN and infinities to None, times to ISO text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def downsample(values: np.ndarray, points: int = EQUITY_POINTS) -> np.ndarray:
    """Indices of at most `points` samples: first, last, and each stretch's min and max."""
    n = len(values)
    if n <= points:
        return np.arange(n)
    stretches = max((points - 2) // 2, 1)
    edges = np.linspace(0, n, stretches + 1).astype(np.int64)
    keep = [0, n - 1]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b > a:
            part = values[a:b]
            keep += [a + int(np.argmin(part)), a + int(np.argmax(part))]
    return np.unique(np.asarray(keep, dtype=np.int64))


def save_run(
    db: Database,
    result: BacktestResult,
    *,
    spec: str,
    spec_format: str,
    task_id: int | None = None,
    bulk_id: int | None = None,
    store_trades: bool = True,
) -> int:
    """Store a run (its row, trades and downsampled equity) in one transaction; return its id.

    `store_trades=False` keeps only the metrics and equity (what a sweep compares): a
    crossover on a million minutes fills tens of thousands of orders, and the trades of any
    run can be recomputed from its stored spec and config.
    """
    trades = result.trades if store_trades else result.trades.iloc[:0]
    if "status" in trades.columns:
        trades = trades[trades["status"] == "filled"]
    equity = result.equity
    metrics = json_safe(dict(result.metrics))
    config = json_safe(dict(result.config))
    keep = downsample(equity.to_numpy())
    times = equity.index.asi8[keep] if len(equity) else np.empty(0, np.int64)
    trade_rows = [
        {
            "seq": i,
            "tick": int(row.tick),
            "ts_ns": float(pd.Timestamp(row.time).value),
            "action": str(row.action),
            "position": int(row.position),
            "price": float(row.price),
            "quote": float(row.amount_quote),
            "base": float(row.amount_base),
            "trigger": str(row.trigger),
            "value": float(row.portfolio_value),
            "pnl": float(row.realised_pnl),
        }
        for i, row in enumerate(trades.itertuples(index=False))
    ]
    params = {
        "name": result.strategy.name,
        "spec": spec,
        "spec_format": spec_format,
        "config": json.dumps(config),
        "metrics": json.dumps(metrics),
        "final_result": metrics.get("final_result_pct"),
        "pair": config.get("pair"),
        "candle_start": equity.index[0] if len(equity) else None,
        "candle_end": equity.index[-1] if len(equity) else None,
        "candles": len(equity),
        "task_id": task_id,
        "bulk_id": bulk_id,
    }
    with db.connection() as conn, conn.transaction():
        row = conn.execute(INSERT_RUN, params).fetchone()
        assert row is not None
        run_id = int(row[0])
        if trade_rows:
            conn.execute(INSERT_TRADES, {"run_id": run_id, "trades": json.dumps(trade_rows)})
        conn.execute(
            INSERT_EQUITY,
            {
                "run_id": run_id,
                "n": len(keep),
                "full_n": len(equity),
                "ts": times.astype(">i8").tobytes(),
                "value": equity.to_numpy()[keep].astype(">f8").tobytes(),
            },
        )
    return run_id


def save_summaries(
    db: Database,
    table: pd.DataFrame,
    specs: list[str],
    *,
    config: dict[str, Any],
    candle_range: tuple[pd.Timestamp, pd.Timestamp, int],
    task_id: int | None = None,
    bulk_id: int | None = None,
) -> list[int]:
    """Store many runs' metrics (a `run_many` table, one spec per row) in one statement.

    What a sweep compares; each run's trades and equity are recomputable from its spec.
    """
    runs: list[dict[str, Any]] = []
    for spec, record in zip(specs, table.to_dict("records"), strict=True):
        metrics = json_safe({k: v for k, v in record.items() if k != "name"})
        runs.append({"n": len(runs), "name": record["name"], "spec": spec, "metrics": metrics,
                     "final_result": metrics.get("final_result_pct")})  # fmt: skip
    first, last, count = candle_range
    with db.connection() as conn:
        rows = conn.execute(
            INSERT_SUMMARIES,
            {"runs": json.dumps(runs), "config": json.dumps(json_safe(config)),
             "pair": config.get("pair"), "candle_start": first, "candle_end": last,
             "candles": count, "task_id": task_id, "bulk_id": bulk_id},
        ).fetchall()  # fmt: skip
    return [int(r[0]) for r in rows]


def results(db: Database, bulk_id: int) -> pd.DataFrame:
    """The runs of a bulk backtest side by side, best final result first (one row per run)."""
    with db.connection() as conn:
        rows = conn.execute(SELECT_BULK, {"bulk_id": bulk_id}).fetchall()
    records = [
        {"run_id": run_id, "name": name, **(metrics or {}), "created_at": created}
        for run_id, name, _, metrics, created in rows
    ]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=["run_id", "name", "final_result_pct"])
    return frame.reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class StoredRun:
    """A stored backtest: its spec as written, config, metrics, trades and equity curve."""

    id: int
    name: str
    spec: str
    spec_format: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    trades: pd.DataFrame
    equity: pd.Series
    equity_points_full: int
    task_id: int | None
    bulk_id: int | None


def load_run(db: Database, run_id: int) -> StoredRun:
    """A stored run by id, with its trades and (downsampled) equity curve."""
    with db.connection() as conn:
        row = conn.execute(SELECT_RUN, {"id": run_id}).fetchone()
        if row is None:
            raise MarketDataError(f"no backtest run with id {run_id}")
        trades = conn.execute(SELECT_TRADES, {"id": run_id}).fetchall()
        eq = conn.execute(SELECT_EQUITY, {"id": run_id}).fetchone()
    (rid, name, spec, spec_format, config, metrics, *_, task_id, bulk_id, _created) = row
    columns = ["seq", "tick", "time", "action", "position", "price", "amount_quote",
               "amount_base", "trigger", "portfolio_value", "realised_pnl"]  # fmt: skip
    trade_frame = pd.DataFrame(trades, columns=columns)
    full_n = 0
    equity = pd.Series(dtype=float, name="equity")
    if eq is not None:
        ts = np.frombuffer(eq[0], ">i8").astype(np.int64)
        values = np.frombuffer(eq[1], ">f8").astype(np.float64)
        equity = pd.Series(values, index=utc_index(ts), name="equity")
        full_n = int(eq[2])
    return StoredRun(
        rid, name, spec, spec_format, config, metrics, trade_frame, equity, full_n, task_id, bulk_id
    )
