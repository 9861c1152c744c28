-- Backfill progress, so a killed run resumes where it stopped and a range already fetched is
-- not fetched again. backfill_runs gains the run's options (what --resume needs to carry on)
-- and its counters (API calls, retries, trades fetched and stored, bars, features) as JSON.
-- backfill_ranges holds one row per range a run fetches: trade time [start_ts, end_ts) of one
-- symbol, its status (pending → fetched: every trade stored → done: bars and features written;
-- failed: the source refused it after its retries), the cursor (the newest ts_event stored, ns;
-- a resumed fetch restarts there, the idempotent writer skipping what it stored already) and
-- its counts. A done range is "checked": its minutes without a bar had no bar-eligible trade at
-- the source, and gap detection does not report them again.
-- depends: 001_core_tables

ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS options jsonb NOT NULL DEFAULT '{}';
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS stats jsonb NOT NULL DEFAULT '{}';

CREATE TABLE IF NOT EXISTS backfill_ranges (
    run_id     text        NOT NULL REFERENCES backfill_runs (run_id) ON DELETE CASCADE,
    seq        integer     NOT NULL,
    symbol     text        NOT NULL,
    start_ts   timestamptz NOT NULL,
    end_ts     timestamptz NOT NULL CHECK (end_ts > start_ts),
    status     text        NOT NULL CHECK (status IN ('pending', 'fetched', 'done', 'failed')),
    cursor_ns  bigint,
    trades     bigint      NOT NULL DEFAULT 0,
    stored     bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS backfill_ranges_checked
    ON backfill_ranges (symbol, start_ts) WHERE status = 'done';
