"""Prometheus metrics of the stream engines (no symbol label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
    "signalstack_stream_watermark_seconds",
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
    TRADES.labels(engine).inc(trades)
    if late:
        LATE.labels(engine).inc(late)
    if duplicates:
        DUPLICATES.labels(engine).inc(duplicates)
    if unknown_conditions:
        UNKNOWN_CONDITIONS.labels(engine).inc(unknown_conditions)
    if bars:
        BARS.labels(engine).inc(bars)
    WATERMARK.labels(engine).set(watermark_ns / 1e9)
