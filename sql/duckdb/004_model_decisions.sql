-- Every champion-gate decision, one row per registered model version (see
-- sql/005_model_decisions.sql): promoted or refused, the reason, and the figures behind it.

CREATE TABLE IF NOT EXISTS model_decisions (
    model_name       VARCHAR     NOT NULL,
    version          VARCHAR     NOT NULL,
    run_id           VARCHAR     NOT NULL,
    decision         VARCHAR     NOT NULL CHECK (decision IN ('promoted', 'refused')),
    reason           VARCHAR     NOT NULL,
    metric           VARCHAR     NOT NULL,
    candidate_value  DOUBLE,
    champion_version VARCHAR,
    champion_value   DOUBLE,
    baselines        JSON        NOT NULL,
    margin           DOUBLE      NOT NULL,
    decided_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_name, version)
);
