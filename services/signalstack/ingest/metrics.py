"""Prometheus metrics of the ingest service (``signalstack_ingest_*``, no symbol label)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from signalstack.schemas.trade import RejectReason

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """One set per service instance, on its own registry (served at /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "signalstack_ingest_"
        self.messages_in = Counter(
            p + "messages_in_total", "Trade events received, by source.", ["source"], registry=r
        )
        self.messages_out = Counter(
            p + "messages_out_total", "Trades acknowledged by Kafka (market.trades).", registry=r
        )
        self.rejected = Counter(
            p + "rejected_total", "Inputs sent to the DLQ, by reason.", ["reason"], registry=r
        )
        for reason in RejectReason:
            self.rejected.labels(reason.value)
        self.duplicates = Counter(
            p + "duplicates_total", "Trades dropped as already seen (identity).", registry=r
        )
        self.gap_filled = Counter(
            p + "gap_fill_trades_total", "New trades recovered from REST after a reconnect.",
            registry=r,
        )  # fmt: skip
        self.gap_fills = Counter(
            p + "gap_fills_total", "Gap fills run after reconnects.", registry=r
        )
        self.produce_latency = Histogram(
            p + "produce_latency_seconds", "Produce call to Kafka acknowledgement.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.delivery_errors = Counter(
            p + "delivery_errors_total", "Messages Kafka failed to deliver.", registry=r
        )
        self.redelivered = Counter(
            p + "redelivered_total", "Messages produced again after a transient delivery failure.",
            registry=r,
        )  # fmt: skip
        self.dlq_out = Counter(
            p + "dlq_messages_total", "Records acknowledged on market.trades.dlq.", registry=r
        )
        self.reconnects = Counter(
            p + "reconnects_total", "WebSocket reconnect attempts.", registry=r
        )
        self.max_connections = Counter(
            p + "max_connections_total", "max_connections refusals (long backoff).", registry=r
        )
        self.backoff_seconds = Counter(
            p + "backoff_seconds_total", "Time spent backing off before reconnecting.", registry=r
        )
        self.connected = Gauge(p + "connected", "1 while subscribed to the feed.", registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "Frames waiting to be parsed.", registry=r)
        self.last_event_lag = Gauge(
            p + "last_event_lag_seconds", "Wall clock minus the newest trade's SIP time.",
            registry=r,
        )  # fmt: skip
        self.unknown_conditions = Counter(
            p + "unknown_conditions_total", "Condition codes missing from the table.", registry=r
        )
        self.frames = Counter(
            p + "frames_total",
            "WebSocket frames, by path: fast (all trades, compiled checks) or general.",
            ["path"], registry=r,
        )  # fmt: skip
        self.frames_fast = self.frames.labels("fast")
        self.frames_general = self.frames.labels("general")
        self.ignored_events = Counter(
            p + "ignored_events_total", "Non-trade events (quotes, aggregates), by ev.", ["ev"],
            registry=r,
        )  # fmt: skip
