"""The panels' queries, kept apart from the layout so the acceptance tests run each of them:
every SQL query against a TimescaleDB the pipeline filled, every PromQL query against a
Prometheus scraping the services.

SQL uses Grafana's PostgreSQL macros ``$__timeFilter(col)`` and ``$__interval_ms`` and the
single-value variable ``$symbol`` (quoted in the SQL); nothing else is interpolated.
``columns`` is the shape the panel expects: the names, in order, of the result's columns
(``time`` first for time series).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from signalstack.features.columns import FEATURE_COLUMNS

Format = Literal["table", "time_series"]


@dataclass(frozen=True)
class SqlQuery:
    sql: str
    columns: tuple[str, ...]
    format: Format = "time_series"
    ref_id: str = "A"


@dataclass(frozen=True)
class PromQuery:
    expr: str
    legend: str = ""
    ref_id: str = "A"
    instant: bool = False


SYMBOLS = "SELECT symbol FROM (SELECT DISTINCT symbol FROM ohlcv_1m) s ORDER BY 1"
BUCKET = "make_interval(secs => greatest($__interval_ms, 60000) / 1000.0)"

TRADE_FEED = SqlQuery(
    """SELECT ts AS "time", symbol, price, size, exchange, source
FROM trades
WHERE $__timeFilter(ts) AND symbol = '$symbol'
ORDER BY ts DESC
LIMIT 200""",
    ("time", "symbol", "price", "size", "exchange", "source"),
    format="table",
)
TICKS_PER_SECOND_SQL = SqlQuery(
    f"""SELECT time_bucket({BUCKET}, ts) AS "time",
       count(*) / extract(epoch FROM {BUCKET}) AS ticks_per_second
FROM trades
WHERE $__timeFilter(ts) AND symbol = '$symbol'
GROUP BY 1
ORDER BY 1""",
    ("time", "ticks_per_second"),
    ref_id="B",
)
OHLCV = SqlQuery(
    """SELECT ts AS "time", open, high, low, close, volume
FROM ohlcv_1m
WHERE $__timeFilter(ts) AND symbol = '$symbol'
ORDER BY ts""",
    ("time", "open", "high", "low", "close", "volume"),
)
ANOMALY_OVERLAY = SqlQuery(
    """SELECT a.ts AS "time", o.close AS anomaly
FROM anomalies a
JOIN ohlcv_1m o ON o.symbol = a.symbol AND o.ts = a.ts
WHERE $__timeFilter(a.ts) AND a.symbol = '$symbol' AND a.is_anomaly
ORDER BY a.ts""",
    ("time", "anomaly"),
    ref_id="B",
)
_Z = ",\n       ".join(
    f"({c} - avg({c}) OVER ()) / nullif(stddev_samp({c}) OVER (), 0) AS {c}"
    for c in FEATURE_COLUMNS
)
FEATURE_HEATMAP = SqlQuery(
    f"""SELECT ts AS "time",
       {_Z}
FROM features
WHERE $__timeFilter(ts) AND symbol = '$symbol' AND feature_set_version = 1
ORDER BY ts""",
    ("time", *FEATURE_COLUMNS),
)
PREDICTED_VS_REALISED = SqlQuery(
    """SELECT p.ts AS "time",
       avg(p.value) AS predicted_up_probability,
       avg(CASE WHEN later.close > now_bar.close THEN 1.0 ELSE 0.0 END) AS realised_up
FROM predictions p
JOIN ohlcv_1m now_bar ON now_bar.symbol = p.symbol AND now_bar.ts = p.ts
JOIN ohlcv_1m later ON later.symbol = p.symbol AND later.ts = p.ts + interval '5 minutes'
WHERE $__timeFilter(p.ts) AND p.symbol = '$symbol' AND p.model_name = 'direction'
GROUP BY p.ts
ORDER BY p.ts""",
    ("time", "predicted_up_probability", "realised_up"),
)
PSI_PER_FEATURE = SqlQuery(
    """SELECT window_end AS "time", feature AS metric, max(psi) AS psi
FROM drift
WHERE $__timeFilter(window_end)
GROUP BY window_end, feature
ORDER BY window_end, feature""",
    ("time", "metric", "psi"),
)
BACKFILL_RUNS = SqlQuery(
    """SELECT started_at AS "time", run_id, source, status, rows,
       extract(epoch FROM coalesce(finished_at, now()) - started_at) AS duration_seconds, error
FROM backfill_runs
WHERE $__timeFilter(started_at)
ORDER BY started_at DESC
LIMIT 50""",
    ("time", "run_id", "source", "status", "rows", "duration_seconds", "error"),
    format="table",
)
BACKFILL_GAPS = SqlQuery(
    """SELECT r.start_ts AS "time", r.symbol, r.status,
       extract(epoch FROM r.end_ts - r.start_ts) / 60 AS gap_minutes, r.stored, r.run_id
FROM backfill_ranges r
WHERE $__timeFilter(r.start_ts)
ORDER BY r.start_ts DESC
LIMIT 100""",
    ("time", "symbol", "status", "gap_minutes", "stored", "run_id"),
    format="table",
)
TICK_TO_INGEST = SqlQuery(
    f"""SELECT time_bucket({BUCKET}, ts) AS "time",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (ts_ingest_ns - ts_event_ns) / 1e9)
         AS sip_to_ingest_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY (ts_ingest_ns - ts_event_ns) / 1e9)
         AS sip_to_ingest_p99
FROM trades
WHERE $__timeFilter(ts)
GROUP BY 1
ORDER BY 1""",
    ("time", "sip_to_ingest_p50", "sip_to_ingest_p99"),
)
BAR_TO_FEATURE_ROW = SqlQuery(
    f"""SELECT time_bucket({BUCKET}, ts) AS "time",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ts))
         AS bar_to_feature_row_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ts))
         AS bar_to_feature_row_p99
FROM features
WHERE $__timeFilter(ts)
GROUP BY 1
ORDER BY 1""",
    ("time", "bar_to_feature_row_p50", "bar_to_feature_row_p99"),
)
BAR_TO_PREDICTION = SqlQuery(
    f"""SELECT time_bucket({BUCKET}, ts) AS "time",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ts))
         AS bar_to_prediction_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ts))
         AS bar_to_prediction_p99
FROM predictions
WHERE $__timeFilter(ts)
GROUP BY 1
ORDER BY 1""",
    ("time", "bar_to_prediction_p50", "bar_to_prediction_p99"),
)
DLQ_BY_REASON = SqlQuery(
    f"""SELECT time_bucket({BUCKET}, received_at) AS "time", reason AS metric, count(*) AS rejected
FROM dlq
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1, 2""",
    ("time", "metric", "rejected"),
)

RATE = "[$__rate_interval]"


def _quantile(q: float, bucket: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}{RATE})))"


TICKS_IN = PromQuery(
    f"sum(rate(signalstack_ingest_messages_in_total{RATE}))", "received from the feed"
)
TICKS_ACKED = PromQuery(
    f"sum(rate(signalstack_ingest_messages_out_total{RATE}))", "acknowledged by Kafka", "B"
)
TICKS_STORED = PromQuery(
    f'sum(rate(signalstack_sink_rows_written_total{{table="trades"}}{RATE}))', "stored", "C"
)
REJECTED = PromQuery(
    f"sum by (reason) (rate(signalstack_ingest_rejected_total{RATE}))", "ingest: {{reason}}"
)
SINK_REJECTED = PromQuery(
    f"sum by (reason) (rate(signalstack_sink_dlq_rows_total{RATE}))", "sink: {{reason}}", "B"
)
INFERENCE_P50 = PromQuery(
    _quantile(0.5, "signalstack_serving_request_duration_seconds_bucket", "model"),
    "p50 {{model}}",
)
INFERENCE_P99 = PromQuery(
    _quantile(0.99, "signalstack_serving_request_duration_seconds_bucket", "model"),
    "p99 {{model}}",
    "B",
)
INFERENCE_RATE = PromQuery(
    f"sum by (model, status) (rate(signalstack_serving_responses_total{RATE}))",
    "{{model}} {{status}}",
)
SINK_LAG = PromQuery("max by (topic) (signalstack_sink_consumer_lag)", "sink {{topic}}")
STREAM_LAG = PromQuery(
    "max by (query) (signalstack_stream_consumer_lag)", "stream query {{query}}", "B"
)
SINK_WRITE_P50 = PromQuery(
    _quantile(0.5, "signalstack_sink_write_latency_seconds_bucket", "table"), "p50 {{table}}"
)
SINK_WRITE_P99 = PromQuery(
    _quantile(0.99, "signalstack_sink_write_latency_seconds_bucket", "table"),
    "p99 {{table}}",
    "B",
)
SINK_ROWS = PromQuery(
    f"sum by (table) (rate(signalstack_sink_rows_written_total{RATE}))", "{{table}}"
)
TICK_TO_ROW_P99 = PromQuery(
    _quantile(0.99, "signalstack_sink_record_age_seconds_bucket", "job")
    + " + "
    + _quantile(0.99, "signalstack_sink_queue_seconds_bucket", "job")
    + " + "
    + _quantile(0.99, 'signalstack_sink_write_latency_seconds_bucket{table="trades"}', "job"),
    "tick → row p99 (upper bound: Kafka age + queue + write)",
)
PRODUCE_P99 = PromQuery(
    _quantile(0.99, "signalstack_ingest_produce_latency_seconds_bucket", "job"),
    "ingest → Kafka ack p99",
    "B",
)
SPARK_INPUT_RATE = PromQuery(
    "sum by (query) (signalstack_stream_input_rows_per_second)", "input {{query}}"
)
SPARK_PROCESSED_RATE = PromQuery(
    "sum by (query) (signalstack_stream_processed_rows_per_second)", "processed {{query}}", "B"
)
SPARK_BATCH_P99 = PromQuery(
    _quantile(0.99, "signalstack_stream_batch_duration_seconds_bucket", "query"),
    "batch p99 {{query}}",
)
SPARK_WATERMARK_DELAY = PromQuery(
    "max by (query) (signalstack_stream_watermark_delay_seconds)", "watermark delay {{query}}", "B"
)
SPARK_STATE_ROWS = PromQuery("sum by (query) (signalstack_stream_state_rows)", "{{query}}")
PSI_LAST_PASS = PromQuery(
    "max by (model, input) (signalstack_drift_psi)", "{{model}} {{input}}", instant=True
)
BACKFILL_LAST = PromQuery(
    "max(signalstack_backfill_last_failed_ranges)", "failed ranges (last run)", instant=True
)
BACKFILL_HEALED = PromQuery(
    "max(signalstack_backfill_last_healed_seconds) / 60",
    "healed minutes (last run)",
    "B",
    instant=True,
)
SERVICES_UP = PromQuery("up", "{{job}} {{instance}}", instant=True)
