"""Prometheus metrics of the inference API (``signalstack_serving_*``, no symbol label).

One set per app, on its own registry (served at ``/metrics``): request latency per route
template and model in seconds, requests in flight, responses by status, the model versions
loaded (an info-style gauge), reloads, predicted classes and the anomaly score distribution;
for the live stream, WebSocket clients, dropped clients, feed rows and failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

#: a request answers in well under a millisecond in-process; the tail reaches into seconds
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: anomaly scores (−score_samples of an Isolation Forest) lie in (0, 1); 0.5 is "average"
SCORE_BUCKETS: Final = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)


class ServingMetrics:
    """The inference API's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        p = "signalstack_serving_"
        self.request_seconds = Histogram(
            p + "request_duration_seconds",
            "Request latency from the first byte read to the last byte sent, per route "
            "template and model.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.responses = Counter(
            p + "responses_total", "Responses by route template, model and status code.",
            ["route", "model", "status"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(p + "requests_in_flight", "Requests being served now.", registry=r)
        self.model_info = Gauge(
            p + "model_info",
            "The model versions loaded now (value 1), with their kind and feature set.",
            ["model", "version", "kind", "feature_set_version"],
            registry=r,
        )
        self.reloads = Counter(
            p + "model_reloads_total",
            "Model loads by outcome (loaded, failed) — a moved alias is a load.",
            ["model", "outcome"],
            registry=r,
        )
        self.predictions = Counter(
            p + "predictions_total",
            "Predictions answered, by model and predicted class (anomaly model: anomaly or "
            "normal).",
            ["model", "label"],
            registry=r,
        )
        self.anomaly_score = Histogram(
            p + "anomaly_score", "Anomaly scores answered (higher = more anomalous).",
            ["model"], buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        # live predictions (WS /ws/predictions and the feature feed)
        self.ws_clients = Gauge(
            p + "websocket_clients", "WebSocket clients subscribed to /ws/predictions now.",
            registry=r,
        )  # fmt: skip
        self.ws_dropped = Counter(
            p + "websocket_dropped_clients_total",
            "WebSocket clients dropped because they stopped reading (their queue was full).",
            registry=r,
        )
        self.feed_rows = Counter(
            p + "feed_rows_total", "Feature rows received from the live feed.", registry=r
        )
        self.feed_consumer_lag = Gauge(
            p + "feed_consumer_lag",
            "market.features messages of this replica's partitions not yet predicted and "
            "committed (the Kafka feed; librdkafka statistics).",
            registry=r,
        )
        self.feed_rejected = Counter(
            p + "feed_rejected_total",
            "Feed messages that are not feature rows (logged and skipped).",
            registry=r,
        )
        self.live_predictions = Counter(
            p + "live_predictions_total",
            "Predictions made from the live feed (fanned out, stored, published).",
            registry=r,
        )
        self.live_errors = Counter(
            p + "live_errors_total",
            "Live-prediction failures by stage (feed, predict, store, kafka, fanout); writes "
            "are retried.",
            ["stage"],
            registry=r,
        )
        self.fanout_messages = Counter(
            p + "fanout_messages_total",
            "market.predictions messages forwarded to this replica's WebSocket clients "
            "(SERVING_WS_FANOUT=kafka).",
            registry=r,
        )

    def model_loaded(
        self, model: str, version: str, kind: str, feature_set_version: int, previous: str | None
    ) -> None:
        if previous is not None:
            for labels in list(self._info_labels(model, previous)):
                self.model_info.remove(*labels)
        self.model_info.labels(model, version, kind, str(feature_set_version)).set(1)
        self.reloads.labels(model, "loaded").inc()

    def _info_labels(self, model: str, version: str) -> Sequence[tuple[str, ...]]:
        found: list[tuple[str, ...]] = []
        for metric in self.model_info.collect():
            for sample in metric.samples:
                lab = sample.labels
                if lab.get("model") == model and lab.get("version") == version:
                    found.append(
                        (lab["model"], lab["version"], lab["kind"], lab["feature_set_version"])
                    )
        return found

    def load_failed(self, model: str) -> None:
        self.reloads.labels(model, "failed").inc()

    def observe_labels(self, model: str, labels: Sequence[str]) -> None:
        for label in labels:
            self.predictions.labels(model, label).inc()

    def observe_scores(self, model: str, scores: Sequence[float]) -> None:
        hist = self.anomaly_score.labels(model)
        for s in scores:
            hist.observe(s)


__all__ = ["LATENCY_BUCKETS", "SCORE_BUCKETS", "ServingMetrics"]
