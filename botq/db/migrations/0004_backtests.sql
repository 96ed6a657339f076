-- Backtest results: one row per run, its trades in their own table, its equity curve packed
-- and downsampled (the full curve is recomputable from the stored spec, config and candles).
CREATE TABLE botq_backtest_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    name          text NOT NULL,
    spec          text NOT NULL,       -- the strategy as written (TOML text or JSON)
    spec_format   text NOT NULL CHECK (spec_format IN ('toml', 'json')),
    config        jsonb NOT NULL,      -- pair, start, end, timeframe, capital, fee, fill
    metrics       jsonb NOT NULL,
    final_result  float8,              -- metrics' final result in %, for sorting a sweep
    pair          text,
    candle_start  timestamptz,
    candle_end    timestamptz,
    candles       integer NOT NULL,
    task_id       bigint REFERENCES botq_tasks (id) ON DELETE SET NULL,
    bulk_id       bigint REFERENCES botq_tasks (id) ON DELETE SET NULL
);
CREATE INDEX botq_backtest_runs_bulk ON botq_backtest_runs (bulk_id, final_result DESC)
    WHERE bulk_id IS NOT NULL;
CREATE INDEX botq_backtest_runs_created ON botq_backtest_runs (created_at);

CREATE TABLE botq_backtest_trades (
    run_id          bigint NOT NULL REFERENCES botq_backtest_runs (id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    tick            integer NOT NULL,
    ts              timestamptz NOT NULL,
    action          text NOT NULL,
    position        integer NOT NULL,
    price           float8 NOT NULL,
    amount_quote    float8 NOT NULL,
    amount_base     float8 NOT NULL,
    trigger         text NOT NULL,
    portfolio_value float8 NOT NULL,
    realized_pnl    float8 NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE botq_backtest_equity (
    run_id  bigint PRIMARY KEY REFERENCES botq_backtest_runs (id) ON DELETE CASCADE,
    n       integer NOT NULL,      -- points stored
    full_n  integer NOT NULL,      -- points in the full curve
    ts      bytea NOT NULL,        -- int64 big-endian, UTC nanoseconds
    value   bytea NOT NULL         -- float8 big-endian
);
