-- 1-minute candles, one row per (pair, minute), and where each pair's history sync stands.

CREATE TABLE botq_pairs (
    id   smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE botq_candles (
    pair_id smallint NOT NULL REFERENCES botq_pairs (id),
    ts      timestamptz NOT NULL,
    open    float8 NOT NULL,
    high    float8 NOT NULL,
    low     float8 NOT NULL,
    close   float8 NOT NULL,
    volume  float8 NOT NULL,
    trades  integer NOT NULL DEFAULT 0,   -- 0 where the source has no count
    vwap    float8 NOT NULL DEFAULT 'NaN', -- NaN where the source has none
    PRIMARY KEY (pair_id, ts)
);

CREATE TABLE botq_sync_state (
    pair_id    smallint PRIMARY KEY REFERENCES botq_pairs (id),
    source     text NOT NULL,
    cursor     text,                 -- the source's own resume point (Kraken: trades `last`, ns)
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The same candles packed one row per (pair, UTC day), each column one bytea of big-endian
-- values (ts: microseconds since 2000-01-01, as timestamptz_send writes it). Loading a year of
-- minutes reads ~365 rows instead of ~525,000. Statement triggers on botq_candles rebuild the
-- days a write touched, in the same transaction, whatever wrote them.
CREATE TABLE botq_candle_days (
    pair_id smallint NOT NULL REFERENCES botq_pairs (id),
    day     date NOT NULL,
    n       integer NOT NULL,
    ts      bytea NOT NULL,
    open    bytea NOT NULL,
    high    bytea NOT NULL,
    low     bytea NOT NULL,
    close   bytea NOT NULL,
    volume  bytea NOT NULL,
    trades  bytea NOT NULL,
    vwap    bytea NOT NULL,
    PRIMARY KEY (pair_id, day)
);
-- Float bytes barely compress: store them out of line, uncompressed (faster both ways).
ALTER TABLE botq_candle_days
    ALTER COLUMN ts SET STORAGE EXTERNAL, ALTER COLUMN open SET STORAGE EXTERNAL,
    ALTER COLUMN high SET STORAGE EXTERNAL, ALTER COLUMN low SET STORAGE EXTERNAL,
    ALTER COLUMN close SET STORAGE EXTERNAL, ALTER COLUMN volume SET STORAGE EXTERNAL,
    ALTER COLUMN trades SET STORAGE EXTERNAL, ALTER COLUMN vwap SET STORAGE EXTERNAL;

CREATE FUNCTION botq_rebuild_candle_days(touched_pair smallint[], touched_day date[])
RETURNS void LANGUAGE sql SET work_mem = '64MB' AS $$
    DELETE FROM botq_candle_days d
    USING unnest(touched_pair, touched_day) AS t (pair_id, day)
    WHERE d.pair_id = t.pair_id AND d.day = t.day;
    INSERT INTO botq_candle_days (pair_id, day, n, ts, open, high, low, close, volume, trades, vwap)
    SELECT c.pair_id, t.day, count(*),
           string_agg(timestamptz_send(c.ts), ''::bytea ORDER BY c.ts),
           string_agg(float8send(c.open), ''::bytea ORDER BY c.ts),
           string_agg(float8send(c.high), ''::bytea ORDER BY c.ts),
           string_agg(float8send(c.low), ''::bytea ORDER BY c.ts),
           string_agg(float8send(c.close), ''::bytea ORDER BY c.ts),
           string_agg(float8send(c.volume), ''::bytea ORDER BY c.ts),
           string_agg(int4send(c.trades), ''::bytea ORDER BY c.ts),
           string_agg(float8send(c.vwap), ''::bytea ORDER BY c.ts)
    FROM unnest(touched_pair, touched_day) AS t (pair_id, day)
    JOIN botq_candles c
      ON c.pair_id = t.pair_id
     AND c.ts >= t.day::timestamp AT TIME ZONE 'UTC'
     AND c.ts < (t.day + 1)::timestamp AT TIME ZONE 'UTC'
    GROUP BY c.pair_id, t.day;
$$;

CREATE FUNCTION botq_candles_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pairs smallint[];
    days date[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(pair_id), array_agg(day) INTO pairs, days FROM (
            SELECT DISTINCT pair_id, (ts AT TIME ZONE 'UTC')::date AS day FROM new_rows) s;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(pair_id), array_agg(day) INTO pairs, days FROM (
            SELECT DISTINCT pair_id, (ts AT TIME ZONE 'UTC')::date AS day FROM old_rows) s;
    ELSE  -- an update may move a candle from one day to another: rebuild both
        SELECT array_agg(pair_id), array_agg(day) INTO pairs, days FROM (
            SELECT pair_id, (ts AT TIME ZONE 'UTC')::date AS day FROM old_rows
            UNION
            SELECT pair_id, (ts AT TIME ZONE 'UTC')::date AS day FROM new_rows) s;
    END IF;
    IF pairs IS NOT NULL THEN
        PERFORM botq_rebuild_candle_days(pairs, days);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER botq_candles_days_insert AFTER INSERT ON botq_candles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION botq_candles_changed();
CREATE TRIGGER botq_candles_days_update AFTER UPDATE ON botq_candles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION botq_candles_changed();
CREATE TRIGGER botq_candles_days_delete AFTER DELETE ON botq_candles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION botq_candles_changed();
