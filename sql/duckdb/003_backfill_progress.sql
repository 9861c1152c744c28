-- Backfill progress (see sql/004_backfill_progress.sql): the run's options and counters as JSON
-- text, one row per range a run fetches with its status, cursor and counts. No foreign key:
-- DuckDB refuses an upsert on a parent row that a child row references.

ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS options VARCHAR DEFAULT '{}';
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS stats VARCHAR DEFAULT '{}';

CREATE TABLE IF NOT EXISTS backfill_ranges (
    run_id     VARCHAR     NOT NULL,
    seq        INTEGER     NOT NULL,
    symbol     VARCHAR     NOT NULL,
    start_ts   TIMESTAMPTZ NOT NULL,
    end_ts     TIMESTAMPTZ NOT NULL CHECK (end_ts > start_ts),
    status     VARCHAR     NOT NULL CHECK (status IN ('pending', 'fetched', 'done', 'failed')),
    cursor_ns  BIGINT,
    trades     BIGINT      NOT NULL,
    stored     BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, seq)
);
