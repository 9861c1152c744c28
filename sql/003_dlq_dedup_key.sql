-- Replays must not duplicate DLQ rows: a sink that crashes after writing a batch's rejects but
-- before committing its Kafka offsets reads the same messages again. Each reject carries a
-- dedup_key (the consumer and the message's Kafka coordinates, or a digest of a refused row's
-- content) and is inserted ON CONFLICT (dedup_key) DO NOTHING. Rows written before this
-- migration keep a key made from their id, so nothing already in the table collapses; a writer
-- still running the previous release (no dedup_key in its INSERT) gets a random key from the
-- default, so a rolling upgrade never makes its rejects fail.
-- depends: 001_core_tables

ALTER TABLE dlq ADD COLUMN IF NOT EXISTS dedup_key text;
UPDATE dlq SET dedup_key = 'id:' || id WHERE dedup_key IS NULL;
ALTER TABLE dlq ALTER COLUMN dedup_key SET DEFAULT ('legacy:' || gen_random_uuid()::text);
ALTER TABLE dlq ALTER COLUMN dedup_key SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS dlq_dedup_key ON dlq (dedup_key);
