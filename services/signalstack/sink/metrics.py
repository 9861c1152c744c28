"""Sink metrics (Prometheus), defined once. No symbol label: cardinality stays fixed."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter(
    "signalstack_sink_rows_written_total", "Rows newly stored, by table.", ["table"]
)
MESSAGES = Counter(
    "signalstack_sink_messages_total", "Kafka messages consumed, by topic.", ["topic"]
)
DLQ_ROWS = Counter(
    "signalstack_sink_dlq_rows_total",
    "Inputs this sink rejected to the dlq table, by reason (a reject replayed after a rewind "
    "counts again; the table keeps it once).",
    ["reason"],
)
BATCH_MESSAGES = Histogram(
    "signalstack_sink_batch_messages",
    "Messages per consumed batch.",
    buckets=(1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000),
)
_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
WRITE_LATENCY = Histogram(
    "signalstack_sink_write_latency_seconds",
    "Time to make one batch durable in the store, by table.",
    ["table"],
    buckets=_SECONDS,
)
RECORD_AGE = Histogram(
    "signalstack_sink_record_age_seconds",
    "Age of each batch's first message when polled (Kafka CreateTime to poll return).",
    buckets=_SECONDS,
)
DECODE_SECONDS = Histogram(
    "signalstack_sink_decode_seconds", "Time to decode and validate one batch.", buckets=_SECONDS
)
QUEUE_SECONDS = Histogram(
    "signalstack_sink_queue_seconds",
    "Time a decoded batch waits for the previous write before its own write starts.",
    buckets=_SECONDS,
)
CONSUMER_LAG = Gauge(
    "signalstack_sink_consumer_lag",
    "Messages not yet stored and committed (log end minus committed offset), summed over the "
    "partitions this sink owns, per topic.",
    ["topic"],
)
WRITE_RETRIES = Counter(
    "signalstack_sink_write_retries_total", "Store operations retried after a connection error."
)
COMMITS = Counter("signalstack_sink_commits_total", "Kafka offset commits after durable writes.")
COMMIT_FAILURES = Counter(
    "signalstack_sink_commit_failures_total",
    "Kafka offset commits that failed (the rows are durable; the next owner of the partitions "
    "replays from the last committed offset).",
)
REWINDS = Counter(
    "signalstack_sink_rewinds_total",
    "Replays from the committed offsets after the store may have lost acknowledged writes.",
)
