-- Replays must not duplicate DLQ rows: a sink that crashes after writing a batch's rejects but
-- before committing its Kafka offsets reads the same messages again. Each reject carries a
-- dedup_key (the message's Kafka coordinates, or a digest of a refused row's content) and is
-- inserted ON CONFLICT (dedup_key) DO NOTHING. Rows written before this migration keep a key
-- made from their id, so nothing already in the table collapses.
-- depends: 001_core_tables

ALTER TABLE dlq ADD COLUMN IF NOT EXISTS dedup_key text;
UPDATE dlq SET dedup_key = 'id:' || id WHERE dedup_key IS NULL;
ALTER TABLE dlq ALTER COLUMN dedup_key SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS dlq_dedup_key ON dlq (dedup_key);
