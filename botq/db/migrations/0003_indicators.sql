-- Indicator series computed by IndicatorCalc, packed one row per (pair, timeframe, name, UTC
-- day) like botq_candle_days: ts as timestamptz_send bytes, values as float8send bytes.
CREATE TABLE botq_indicator_days (
    pair_id   smallint NOT NULL REFERENCES botq_pairs (id),
    timeframe text NOT NULL,
    name      text NOT NULL,
    day       date NOT NULL,
    n         integer NOT NULL,
    ts        bytea NOT NULL,
    value     bytea NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pair_id, timeframe, name, day)
);
ALTER TABLE botq_indicator_days
    ALTER COLUMN ts SET STORAGE EXTERNAL, ALTER COLUMN value SET STORAGE EXTERNAL;
