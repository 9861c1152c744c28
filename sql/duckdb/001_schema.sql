-- Embedded store (DuckDB) schema: the same tables and keys as the TimescaleDB migrations, minus
-- what DuckDB has no use for (hypertables, policies). Idempotent; applied by DuckDBStore.migrate().
-- Trades keep nanosecond times as BIGINT directly (DuckDB's TIMESTAMPTZ is microseconds too).

CREATE TABLE IF NOT EXISTS trades (
    symbol      VARCHAR  NOT NULL,
    ts_event    BIGINT   NOT NULL,
    price       DOUBLE   NOT NULL CHECK (price > 0),
    size        DOUBLE   NOT NULL CHECK (size > 0),
    exchange    SMALLINT NOT NULL,
    trade_id    VARCHAR  NOT NULL,
    sequence    BIGINT   NOT NULL,
    conditions  SMALLINT[] NOT NULL,
    tape        SMALLINT,
    source      VARCHAR  NOT NULL,
    ts_ingest   BIGINT   NOT NULL,
    PRIMARY KEY (symbol, exchange, trade_id, ts_event)
);

CREATE TABLE IF NOT EXISTS ohlcv_1m (
    symbol       VARCHAR     NOT NULL,
    ts           TIMESTAMPTZ NOT NULL,
    open         DOUBLE      NOT NULL,
    high         DOUBLE      NOT NULL,
    low          DOUBLE      NOT NULL,
    close        DOUBLE      NOT NULL,
    volume       DOUBLE      NOT NULL,
    vwap         DOUBLE,
    trade_count  BIGINT      NOT NULL,
    PRIMARY KEY (symbol, ts)
);

CREATE TABLE IF NOT EXISTS features (
    symbol               VARCHAR     NOT NULL,
    ts                   TIMESTAMPTZ NOT NULL,
    feature_set_version  SMALLINT    NOT NULL,
    vwap_5m              DOUBLE,
    vwap_15m             DOUBLE,
    realized_vol_5m      DOUBLE,
    realized_vol_15m     DOUBLE,
    price_momentum_1m    DOUBLE,
    price_momentum_5m    DOUBLE,
    volume_5m            DOUBLE,
    volume_ratio         DOUBLE,
    trade_count_1m       DOUBLE,
    avg_trade_size_1m    DOUBLE,
    PRIMARY KEY (symbol, feature_set_version, ts)
);

CREATE TABLE IF NOT EXISTS predictions (
    symbol               VARCHAR     NOT NULL,
    ts                   TIMESTAMPTZ NOT NULL,
    model_name           VARCHAR     NOT NULL,
    model_version        VARCHAR     NOT NULL,
    value                DOUBLE,
    label                VARCHAR,
    feature_set_version  SMALLINT    NOT NULL,
    PRIMARY KEY (symbol, model_name, model_version, ts)
);

CREATE TABLE IF NOT EXISTS anomalies (
    symbol         VARCHAR     NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    model_version  VARCHAR     NOT NULL,
    score          DOUBLE      NOT NULL,
    is_anomaly     BOOLEAN     NOT NULL,
    PRIMARY KEY (symbol, model_version, ts)
);

CREATE TABLE IF NOT EXISTS model_registry (
    model_name  VARCHAR     NOT NULL,
    alias       VARCHAR     NOT NULL,
    version     VARCHAR     NOT NULL,
    run_id      VARCHAR     NOT NULL,
    metrics     JSON        NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_name, alias)
);

CREATE TABLE IF NOT EXISTS backfill_runs (
    run_id       VARCHAR     PRIMARY KEY,
    source       VARCHAR     NOT NULL,
    symbols      VARCHAR[]   NOT NULL,
    start_date   DATE        NOT NULL,
    end_date     DATE        NOT NULL,
    status       VARCHAR     NOT NULL,
    rows         BIGINT      NOT NULL,
    error        VARCHAR     NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);

CREATE SEQUENCE IF NOT EXISTS dlq_id;
CREATE TABLE IF NOT EXISTS dlq (
    id           BIGINT      PRIMARY KEY DEFAULT nextval('dlq_id'),
    received_at  TIMESTAMPTZ NOT NULL,
    source       VARCHAR     NOT NULL,
    reason       VARCHAR     NOT NULL,
    detail       VARCHAR     NOT NULL,
    key          VARCHAR,
    payload      VARCHAR     NOT NULL
);

CREATE TABLE IF NOT EXISTS drift (
    feature              VARCHAR     NOT NULL,
    feature_set_version  SMALLINT    NOT NULL,
    window_start         TIMESTAMPTZ NOT NULL,
    window_end           TIMESTAMPTZ NOT NULL,
    psi                  DOUBLE      NOT NULL,
    reference            VARCHAR     NOT NULL,
    PRIMARY KEY (feature, feature_set_version, window_start, window_end)
);

CREATE OR REPLACE VIEW ohlcv_5m AS
SELECT symbol,
       time_bucket(INTERVAL '5 minutes', ts - INTERVAL '1 minute') + INTERVAL '5 minutes' AS ts,
       arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close,
       sum(volume) AS volume, sum(vwap * volume) / NULLIF(sum(volume), 0) AS vwap,
       sum(trade_count)::BIGINT AS trade_count
  FROM ohlcv_1m
 GROUP BY symbol, time_bucket(INTERVAL '5 minutes', ts - INTERVAL '1 minute');

CREATE OR REPLACE VIEW ohlcv_1h AS
SELECT symbol,
       time_bucket(INTERVAL '1 hour', ts - INTERVAL '1 minute') + INTERVAL '1 hour' AS ts,
       arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close,
       sum(volume) AS volume, sum(vwap * volume) / NULLIF(sum(volume), 0) AS vwap,
       sum(trade_count)::BIGINT AS trade_count
  FROM ohlcv_1m
 GROUP BY symbol, time_bucket(INTERVAL '1 hour', ts - INTERVAL '1 minute');
