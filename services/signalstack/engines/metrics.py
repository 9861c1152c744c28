"""Prometheus metrics of the stream engines (no symbol label): what the engines count per batch
(``engine`` label: local, spark) and, for the Spark job, each streaming query's progress
(``query`` label: features, dlq) — rates, batch duration, state rows, watermark delay and the
Kafka lag the query itself sees."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Mapping
from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

TRADES = Counter(
    "signalstack_stream_trades_total", "Trades consumed by the stream engine", ["engine"]
)
LATE = Counter(
    "signalstack_stream_late_trades_total",
    "Trades older than the watermark (sent to the DLQ)",
    ["engine"],
)
DUPLICATES = Counter(
    "signalstack_stream_duplicate_trades_total",
    "Trades dropped as duplicates of a seen identity",
    ["engine"],
)
UNKNOWN_CONDITIONS = Counter(
    "signalstack_stream_unknown_condition_trades_total",
    "Trades carrying a condition code missing from the conditions table (counted as regular)",
    ["engine"],
)
BARS = Counter(
    "signalstack_stream_bars_total", "1-minute bars (and feature rows) emitted", ["engine"]
)
WATERMARK = Gauge(
    "signalstack_stream_watermark_timestamp_seconds",
    "Event-time watermark, seconds since the epoch",
    ["engine"],
)


def record_batch(
    engine: str,
    *,
    trades: int,
    late: int,
    duplicates: int,
    unknown_conditions: int,
    bars: int,
    watermark_ns: int,
) -> None:
    trades_c, late_c, dup_c, unknown_c, bars_c, wm_g = _children(engine)
    trades_c.inc(trades)
    if late:
        late_c.inc(late)
    if duplicates:
        dup_c.inc(duplicates)
    if unknown_conditions:
        unknown_c.inc(unknown_conditions)
    if bars:
        bars_c.inc(bars)
    wm_g.set(watermark_ns / 1e9)


@cache
def _children(engine: str) -> tuple[Counter, Counter, Counter, Counter, Counter, Gauge]:
    """The engine's labelled series, looked up once (a lookup per batch per metric shows at
    streaming batch sizes)."""
    return (
        TRADES.labels(engine),
        LATE.labels(engine),
        DUPLICATES.labels(engine),
        UNKNOWN_CONDITIONS.labels(engine),
        BARS.labels(engine),
        WATERMARK.labels(engine),
    )


# ---- Spark Structured Streaming progress (one series per query: features, dlq) ---------------
# Filled by the stream job's StreamingQueryListener (engines/spark.py) from each batch's
# StreamingQueryProgress; the ``query`` label is the query's short name, so two per job.
QUERY_ACTIVE = Gauge(
    "signalstack_stream_query_active",
    "1 while the streaming query runs, 0 once it has terminated",
    ["query"],
)
QUERY_TERMINATIONS = Counter(
    "signalstack_stream_query_terminations_total",
    "Streaming queries that terminated, by outcome (stopped, failed)",
    ["query", "outcome"],
)
BATCHES = Counter(
    "signalstack_stream_batches_total", "Micro-batches completed, by query", ["query"]
)
INPUT_ROWS = Counter(
    "signalstack_stream_input_rows_total", "Rows read by the query's micro-batches", ["query"]
)
INPUT_RATE = Gauge(
    "signalstack_stream_input_rows_per_second",
    "Rows per second arriving at the query (last micro-batch)",
    ["query"],
)
PROCESSING_RATE = Gauge(
    "signalstack_stream_processed_rows_per_second",
    "Rows per second the query processed (last micro-batch)",
    ["query"],
)
BATCH_DURATION = Histogram(
    "signalstack_stream_batch_duration_seconds",
    "Wall time of one micro-batch (Spark's batchDuration)",
    ["query"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0),
)
STATE_ROWS = Gauge(
    "signalstack_stream_state_rows",
    "Rows in the query's state store (all stateful operators)",
    ["query"],
)
STATE_MEMORY = Gauge(
    "signalstack_stream_state_memory_bytes",
    "Memory used by the query's state store (all stateful operators)",
    ["query"],
)
WATERMARK_DELAY = Gauge(
    "signalstack_stream_watermark_delay_seconds",
    "How far the event-time watermark trails the batch's wall clock",
    ["query"],
)
CONSUMER_LAG = Gauge(
    "signalstack_stream_consumer_lag",
    "Kafka messages behind the latest offsets, summed over the partitions the query reads",
    ["query"],
)
LAST_PROGRESS = Gauge(
    "signalstack_stream_last_progress_timestamp_seconds",
    "When the query last reported progress or an idle trigger (Unix time)",
    ["query"],
)


def _iso_seconds(value: object) -> float | None:
    """Spark's progress timestamps (``2026-01-02T14:30:00.000Z``) as Unix seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _partitions(offsets: object) -> int:
    """Partitions in a Kafka source's offsets (``{"topic": {"0": 12, ...}}`` or its JSON)."""
    if isinstance(offsets, str):
        try:
            offsets = json.loads(offsets)
        except ValueError:
            return 0
    if not isinstance(offsets, dict):
        return 0
    return sum(len(p) for p in offsets.values() if isinstance(p, dict))


def query_started(query: str) -> None:
    QUERY_ACTIVE.labels(query).set(1)


def query_terminated(query: str, failed: bool) -> None:
    QUERY_ACTIVE.labels(query).set(0)
    QUERY_TERMINATIONS.labels(query, "failed" if failed else "stopped").inc()


def query_idle(query: str, timestamp: str | None) -> None:
    """An idle trigger (no new data): the query is alive, so its progress clock moves on."""
    at = _iso_seconds(timestamp)
    LAST_PROGRESS.labels(query).set(at if at is not None else time.time())


def record_progress(query: str, progress: Mapping[str, Any]) -> None:
    """One StreamingQueryProgress (its JSON, as a dict) into the query's series."""
    BATCHES.labels(query).inc()
    rows = progress.get("numInputRows")
    if isinstance(rows, int | float) and rows > 0:
        INPUT_ROWS.labels(query).inc(rows)
    for gauge, key in (
        (INPUT_RATE, "inputRowsPerSecond"),
        (PROCESSING_RATE, "processedRowsPerSecond"),
    ):
        value = progress.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            gauge.labels(query).set(value)
    duration_ms = progress.get("batchDuration")
    if isinstance(duration_ms, int | float) and duration_ms >= 0:
        BATCH_DURATION.labels(query).observe(duration_ms / 1000)
    ops = progress.get("stateOperators") or []
    if ops:
        STATE_ROWS.labels(query).set(sum(int(op.get("numRowsTotal") or 0) for op in ops))
        STATE_MEMORY.labels(query).set(sum(int(op.get("memoryUsedBytes") or 0) for op in ops))
    now = _iso_seconds(progress.get("timestamp"))
    watermark = _iso_seconds((progress.get("eventTime") or {}).get("watermark"))
    if now is not None and watermark:  # 0: no watermark yet (nothing seen)
        WATERMARK_DELAY.labels(query).set(max(0.0, now - watermark))
    lag = None
    for source in progress.get("sources") or []:
        m = source.get("metrics") or {}
        avg = m.get("avgOffsetsBehindLatest")
        if avg is None:
            continue
        try:
            behind = float(avg) * max(1, _partitions(source.get("endOffset")))
        except (TypeError, ValueError):
            continue
        lag = (lag or 0.0) + behind
    if lag is not None:
        CONSUMER_LAG.labels(query).set(lag)
    LAST_PROGRESS.labels(query).set(now if now is not None else time.time())
