"""Prometheus metrics of the stream engines (no symbol label)."""

from __future__ import annotations

from functools import cache

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
