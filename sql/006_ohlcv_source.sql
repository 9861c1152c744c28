-- Vendor bars (Polygon minute aggregates, yfinance) go into ohlcv_1m next to the bars the stream
-- engine makes from trades, marked with where they came from:
--   source = 'trades'        the engine's bars (the default: every writer that predates this
--                            migration, live or replayed, keeps writing engine bars),
--            'polygon_aggs'  Polygon /v2/aggs minute bars,
--            'yfinance'      Yahoo Finance 1m bars.
-- Yahoo has no trade count, so trade_count becomes nullable (NULL = unknown, never 0); the
-- engine's bars always carry it. Precedence is the writers' (Store.write_bars /
-- write_vendor_bars): an engine bar replaces any vendor bar of its minute, a vendor bar never
-- replaces an engine bar. ohlcv_5m / ohlcv_1h keep working (sum(trade_count) skips NULLs: a
-- bucket with vendor minutes counts only the trades known). Adding a column with a constant
-- default and dropping NOT NULL rewrite nothing, on a hypertable too.
-- depends: 001_core_tables

ALTER TABLE ohlcv_1m ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'trades';
ALTER TABLE ohlcv_1m ALTER COLUMN trade_count DROP NOT NULL;
DO $$ BEGIN
    ALTER TABLE ohlcv_1m ADD CONSTRAINT ohlcv_1m_source
        CHECK (source IN ('trades', 'polygon_aggs', 'yfinance'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
