-- ohlcv_5m / ohlcv_1h: a minute without a vwap (a vendor bar: Yahoo gives none) adds volume but
-- no price, so it is left out of the vwap's denominator too (as in sql/007_rollup_vwap.py).

CREATE OR REPLACE VIEW ohlcv_5m AS
SELECT symbol,
       time_bucket(INTERVAL '5 minutes', ts - INTERVAL '1 minute') + INTERVAL '5 minutes' AS ts,
       arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close,
       sum(volume) AS volume,
       sum(vwap * volume) / NULLIF(sum(CASE WHEN vwap IS NOT NULL THEN volume END), 0) AS vwap,
       sum(trade_count)::BIGINT AS trade_count
  FROM ohlcv_1m
 GROUP BY symbol, time_bucket(INTERVAL '5 minutes', ts - INTERVAL '1 minute');

CREATE OR REPLACE VIEW ohlcv_1h AS
SELECT symbol,
       time_bucket(INTERVAL '1 hour', ts - INTERVAL '1 minute') + INTERVAL '1 hour' AS ts,
       arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close,
       sum(volume) AS volume,
       sum(vwap * volume) / NULLIF(sum(CASE WHEN vwap IS NOT NULL THEN volume END), 0) AS vwap,
       sum(trade_count)::BIGINT AS trade_count
  FROM ohlcv_1m
 GROUP BY symbol, time_bucket(INTERVAL '1 hour', ts - INTERVAL '1 minute');
