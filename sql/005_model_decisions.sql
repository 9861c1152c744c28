-- Every champion-gate decision, one row per registered model version: promoted (the alias
-- `champion` moved to it) or refused, with the reason in words and the figures it rests on:
-- the gated metric, the candidate's value, the champion it was compared with (none for the
-- first version), the baselines of the same run (JSON {name: value}) and the margin.
-- model_registry holds only the version an alias points at now (its key is model_name,
-- alias); this table is the history. Deciding on the same version again replaces its row.
-- depends: 001_core_tables

CREATE TABLE IF NOT EXISTS model_decisions (
    model_name       text             NOT NULL,
    version          text             NOT NULL,
    run_id           text             NOT NULL,
    decision         text             NOT NULL CHECK (decision IN ('promoted', 'refused')),
    reason           text             NOT NULL,
    metric           text             NOT NULL,
    candidate_value  double precision,
    champion_version text,
    champion_value   double precision,
    baselines        jsonb            NOT NULL DEFAULT '{}',
    margin           double precision NOT NULL,
    decided_at       timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT model_decisions_key PRIMARY KEY (model_name, version)
);
