-- Vendor bars in ohlcv_1m, marked with their source (see sql/006_ohlcv_source.sql): 'trades'
-- (the engine's bars, the default), 'polygon_aggs' or 'yfinance'; trade_count is NULL when the
-- vendor does not say (Yahoo). DuckDB cannot add a column with a constraint, so the allowed
-- values are the writers' (Store.write_bars / write_vendor_bars).

ALTER TABLE ohlcv_1m ADD COLUMN IF NOT EXISTS source VARCHAR DEFAULT 'trades';
ALTER TABLE ohlcv_1m ALTER COLUMN trade_count DROP NOT NULL;
