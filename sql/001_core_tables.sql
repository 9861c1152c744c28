-- SignalStack core schema (TimescaleDB, both editions). Idempotent: safe to re-run.
-- depends:
--
-- Time columns are timestamptz (microsecond resolution). Trade event times are nanoseconds, so
-- trades keep the exact value in ts_event_ns / ts_ingest_ns (bigint) and partition on
-- ts = ts_event truncated to the microsecond (a deterministic function of ts_event_ns, so a
-- replayed trade maps to the same key). Unique keys include the partition column, as
-- TimescaleDB requires, and double as the read indexes (symbol first, then time).

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS trades (
    ts            timestamptz      NOT NULL,
    symbol        text             NOT NULL,
    exchange      smallint         NOT NULL,
    trade_id      text             NOT NULL,
    ts_event_ns   bigint           NOT NULL,
    price         double precision NOT NULL CONSTRAINT trades_price_positive CHECK (price > 0),
    size          double precision NOT NULL CONSTRAINT trades_size_positive CHECK (size > 0),
    sequence      bigint           NOT NULL,
    conditions    smallint[]       NOT NULL DEFAULT '{}',
    tape          smallint,
    source        text             NOT NULL,
    ts_ingest_ns  bigint           NOT NULL,
    CONSTRAINT trades_identity UNIQUE (symbol, ts, exchange, trade_id)
);
DO $$ BEGIN PERFORM create_hypertable('trades', by_range('ts', INTERVAL '1 day'),
                         if_not_exists => TRUE, create_default_indexes => FALSE); END $$;

CREATE TABLE IF NOT EXISTS ohlcv_1m (
    ts           timestamptz      NOT NULL,  -- bar END: the bar covers [ts - 1 minute, ts)
    symbol       text             NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    vwap         double precision,
    trade_count  bigint           NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT ohlcv_1m_key PRIMARY KEY (symbol, ts)
);
DO $$ BEGIN PERFORM create_hypertable('ohlcv_1m', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => TRUE, create_default_indexes => FALSE); END $$;

CREATE TABLE IF NOT EXISTS features (
    ts                   timestamptz      NOT NULL,  -- bar end at which the row became knowable
    symbol               text             NOT NULL,
    feature_set_version  smallint         NOT NULL,
    vwap_5m              double precision,
    vwap_15m             double precision,
    realized_vol_5m      double precision,
    realized_vol_15m     double precision,
    price_momentum_1m    double precision,
    price_momentum_5m    double precision,
    volume_5m            double precision,
    volume_ratio         double precision,
    trade_count_1m       double precision,
    avg_trade_size_1m    double precision,
    written_at           timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT features_key PRIMARY KEY (symbol, feature_set_version, ts)
);
DO $$ BEGIN PERFORM create_hypertable('features', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => TRUE, create_default_indexes => FALSE); END $$;

CREATE TABLE IF NOT EXISTS predictions (
    ts                   timestamptz      NOT NULL,
    symbol               text             NOT NULL,
    model_name           text             NOT NULL,
    model_version        text             NOT NULL,
    value                double precision,
    label                text,
    feature_set_version  smallint         NOT NULL DEFAULT 1,
    written_at           timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT predictions_key PRIMARY KEY (symbol, model_name, model_version, ts)
);
DO $$ BEGIN PERFORM create_hypertable('predictions', by_range('ts', INTERVAL '1 day'),
                         if_not_exists => TRUE, create_default_indexes => FALSE); END $$;
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts DESC);

CREATE TABLE IF NOT EXISTS anomalies (
    ts             timestamptz      NOT NULL,
    symbol         text             NOT NULL,
    model_version  text             NOT NULL,
    score          double precision NOT NULL,
    is_anomaly     boolean          NOT NULL,
    written_at     timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT anomalies_key PRIMARY KEY (symbol, model_version, ts)
);
DO $$ BEGIN PERFORM create_hypertable('anomalies', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => TRUE, create_default_indexes => FALSE); END $$;

CREATE TABLE IF NOT EXISTS model_registry (
    model_name  text        NOT NULL,
    alias       text        NOT NULL,
    version     text        NOT NULL,
    run_id      text        NOT NULL,
    metrics     jsonb       NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_registry_key PRIMARY KEY (model_name, alias)
);

CREATE TABLE IF NOT EXISTS backfill_runs (
    run_id       text        PRIMARY KEY,
    source       text        NOT NULL,
    symbols      text[]      NOT NULL,
    start_date   date        NOT NULL,
    end_date     date        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
    rows         bigint      NOT NULL DEFAULT 0,
    error        text        NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz
);

CREATE TABLE IF NOT EXISTS dlq (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL DEFAULT '',
    key          text,
    payload      text        NOT NULL
);
CREATE INDEX IF NOT EXISTS dlq_received_at ON dlq (received_at DESC);

CREATE TABLE IF NOT EXISTS drift (
    feature              text             NOT NULL,
    feature_set_version  smallint         NOT NULL,
    window_start         timestamptz      NOT NULL,
    window_end           timestamptz      NOT NULL,
    psi                  double precision NOT NULL,
    reference            text             NOT NULL DEFAULT '',
    computed_at          timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT drift_key PRIMARY KEY (feature, feature_set_version, window_start, window_end)
);

-- Retention wanted per hypertable. The Community edition enforces it with add_retention_policy
-- (002); on the Apache edition signalstack_apply_retention() is called by our own scheduler.
CREATE TABLE IF NOT EXISTS retention_policies (
    hypertable  text     PRIMARY KEY,
    drop_after  interval NOT NULL
);
INSERT INTO retention_policies (hypertable, drop_after)
VALUES ('trades', INTERVAL '7 days')
ON CONFLICT (hypertable) DO NOTHING;

CREATE OR REPLACE FUNCTION signalstack_apply_retention(now_ts timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p record;
    n integer := 0;
    c integer;
BEGIN
    FOR p IN SELECT hypertable, drop_after FROM retention_policies LOOP
        SELECT count(*) INTO c
          FROM drop_chunks(p.hypertable::regclass, older_than => now_ts - p.drop_after);
        n := n + c;
    END LOOP;
    RETURN n;
END;
$$;
