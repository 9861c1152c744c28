-- Replays must not duplicate DLQ rows (see sql/003_dlq_dedup_key.sql): each reject carries a
-- dedup_key and is inserted ON CONFLICT (dedup_key) DO NOTHING. Rows written before this
-- migration keep a NULL key (DuckDB cannot build an index in the transaction that fills one).

ALTER TABLE dlq ADD COLUMN IF NOT EXISTS dedup_key VARCHAR;
CREATE UNIQUE INDEX IF NOT EXISTS dlq_dedup_key ON dlq (dedup_key);
