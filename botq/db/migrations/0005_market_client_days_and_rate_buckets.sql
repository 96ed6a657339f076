-- 1. write_candles packs whole days of candles on the client (NumPy) and writes them to
--    botq_candle_days itself; the statement triggers skip (WHEN) statements of a transaction
--    that set the transaction-local setting botq.candle_days = 'client'. Every other writer
--    (plain SQL, COPY by hand) still gets the server-side rebuild. The packed format does not
--    change, so existing databases keep their packed days as they are.
DROP TRIGGER botq_candles_days_insert ON botq_candles;
DROP TRIGGER botq_candles_days_update ON botq_candles;
DROP TRIGGER botq_candles_days_delete ON botq_candles;
CREATE TRIGGER botq_candles_days_insert AFTER INSERT ON botq_candles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (current_setting('botq.candle_days', true) IS DISTINCT FROM 'client')
    EXECUTE FUNCTION botq_candles_changed();
CREATE TRIGGER botq_candles_days_update AFTER UPDATE ON botq_candles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (current_setting('botq.candle_days', true) IS DISTINCT FROM 'client')
    EXECUTE FUNCTION botq_candles_changed();
CREATE TRIGGER botq_candles_days_delete AFTER DELETE ON botq_candles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    WHEN (current_setting('botq.candle_days', true) IS DISTINCT FROM 'client')
    EXECUTE FUNCTION botq_candles_changed();

-- 2. The per-row foreign key on botq_candles.pair_id cost about two thirds of a 1M-candle COPY
--    (a lookup and a KEY SHARE lock on the pair per row: ~13 s -> ~3 s without it). The same
--    guarantee remains at day granularity: every candle's (pair, day) has a botq_candle_days
--    row, written in the same statement or transaction, and that table keeps its foreign key,
--    so candles of an unknown pair are refused and a pair with candles cannot be deleted.
ALTER TABLE botq_candles DROP CONSTRAINT IF EXISTS botq_candles_pair_id_fkey;

-- 3. Kraken's public budget is per IP, so every process on this machine (and every worker
--    against this database) takes its request slots from one token bucket per name here, in
--    one guarded UPDATE on the database clock (see botq.market.ratelimit).
CREATE TABLE botq_rate_buckets (
    name       text PRIMARY KEY,
    tokens     float8 NOT NULL,          -- may go negative: slots reserved ahead of time
    updated_at timestamptz NOT NULL
);
