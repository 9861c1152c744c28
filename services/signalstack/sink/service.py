"""The sink: Kafka ``market.trades`` / ``market.features`` / ``market.predictions`` → the store.

Delivery: auto-commit is off; a batch's offsets are committed only after its rows are durable
(the store call returned after COMMIT). A crash between the write and the commit replays the
batch on restart, and the idempotent writes absorb the replay, so each row lands exactly once.

Rejects: messages that do not decode or validate, and rows the database refuses for a
constraint (found by bisecting the failed batch), go to the ``dlq`` table with the reason, and
their offsets are committed with the rest: nothing is dropped silently. A write that keeps
failing for connection reasons past the retry budget stops the sink without committing.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from signalstack.config import Settings
from signalstack.logs import get_logger
from signalstack.sink import metrics
from signalstack.sink.decode import Raw, decode_rows, decode_trades
from signalstack.store.base import FEATURE_COLUMNS, DlqRecord, Store, open_store
from signalstack.store.writer import WriteAbortedError

log = get_logger(__name__)

PREDICTION_REQUIRED = ("symbol", "ts", "model_name", "model_version", "value")


@dataclass(frozen=True, slots=True)
class SinkConfig:
    group_id: str = "signalstack-sink"
    max_batch: int = 5_000  # messages per poll: bounds memory and batch latency
    poll_timeout_s: float = 0.005
    http_port: int | None = 9108  # /metrics, /health/live, /health/ready; None = no server
    lag_interval_s: float = 5.0
    retention_interval_s: float = 3600.0  # Apache-edition retention fallback
    session_timeout_ms: int = 10_000  # how fast a crashed sink's partitions move on
    topics: tuple[str, ...] | None = None  # default: trades, features, predictions


class _Health(BaseHTTPRequestHandler):
    sink: KafkaSink

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
        elif self.path in ("/health", "/health/live"):
            body, ctype, code = b"ok", "text/plain", 200
        elif self.path == "/health/ready":
            ready = self.sink.ready
            body, ctype, code = (
                (b"ready" if ready else b"not ready"),
                "text/plain",
                (200 if ready else 503),
            )
        else:
            body, ctype, code = b"not found", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class KafkaSink:
    def __init__(self, settings: Settings, store: Store, config: SinkConfig | None = None) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.store = store
        self.config = config or SinkConfig()
        k = settings.kafka
        self.topics = self.config.topics or (k.trades_topic, k.features_topic, k.predictions_topic)
        self.consumer = Consumer(
            {
                "bootstrap.servers": k.bootstrap_servers,
                "group.id": self.config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 5,
                "fetch.min.bytes": 1,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.config.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.config.session_timeout_ms // 5),
            }
        )
        if hasattr(store, "on_retry"):
            store.on_retry = metrics.WRITE_RETRIES.inc
        self.ready = False
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self._last_lag = 0.0
        self._last_retention = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def _start_http(self) -> None:
        if self.config.http_port is None:
            return
        handler = type("Handler", (_Health,), {"sink": self})
        self._http = ThreadingHTTPServer(("0.0.0.0", self.config.http_port), handler)  # noqa: S104
        threading.Thread(target=self._http.serve_forever, name="sink-http", daemon=True).start()

    def run(
        self, stop: threading.Event | None = None, until: Callable[[], bool] | None = None
    ) -> None:
        """Consume until ``stop`` is set (or ``until()`` is true); then close the consumer."""
        stop = stop or self._stop
        self._start_http()
        self.consumer.subscribe(list(self.topics), on_assign=self._on_assign)
        log.info("sink_started", topics=list(self.topics), store=self.store.kind)
        try:
            while not stop.is_set() and not self._stop.is_set():
                if until is not None and until():
                    break
                msgs = self.consumer.consume(
                    num_messages=self.config.max_batch, timeout=self.config.poll_timeout_s
                )
                if msgs:
                    self.handle(msgs)
                self._housekeeping()
        finally:
            self.ready = False
            self.consumer.close()
            if self._http is not None:
                self._http.shutdown()
            log.info("sink_stopped")

    def _on_assign(self, consumer: Any, partitions: Any) -> None:
        self.ready = True

    # ---- one batch -----------------------------------------------------------------------------
    def handle(self, msgs: list[Any]) -> None:
        by_topic: dict[str, list[Raw]] = defaultdict(list)
        for m in msgs:
            if m.error() is not None:
                log.warning("kafka_error", error=str(m.error()))
                continue
            by_topic[m.topic()].append((m.key(), m.value()))
        metrics.BATCH_SIZE.observe(len(msgs))
        k = self.settings.kafka
        for topic, raw in by_topic.items():
            metrics.MESSAGES.labels(topic).inc(len(raw))
            if topic == k.trades_topic:
                df, bad = decode_trades(topic, raw)
                self._dlq(bad)
                self._write("trades", df, self.store.write_trades, topic)
            elif topic == k.features_topic:
                df, bad = decode_rows(topic, raw, ("symbol", "ts"))
                self._dlq(bad)
                for c in FEATURE_COLUMNS:
                    if not df.empty and c not in df:
                        df[c] = np.nan
                self._write("features", df, self.store.write_features, topic)
            elif topic == k.predictions_topic:
                df, bad = decode_rows(topic, raw, PREDICTION_REQUIRED)
                self._dlq(bad)
                self._write("predictions", df, self.store.write_predictions, topic)
        if by_topic:
            # Everything consumed so far is durable (or in the DLQ): commit synchronously.
            self.consumer.commit(asynchronous=False)
            metrics.COMMITS.inc()

    def _dlq(self, records: list[DlqRecord]) -> None:
        if records:
            self.store.write_dlq(records)
            for r in records:
                metrics.DLQ_ROWS.labels(r.reason).inc()

    def _write(
        self, table: str, df: pd.DataFrame, write: Callable[[pd.DataFrame], int], topic: str
    ) -> None:
        if df.empty:
            return
        t0 = time.perf_counter()
        n = self._write_bisect(table, df, write, topic)
        metrics.WRITE_LATENCY.labels(table).observe(time.perf_counter() - t0)
        metrics.ROWS_WRITTEN.labels(table).inc(n)

    def _write_bisect(
        self, table: str, df: pd.DataFrame, write: Callable[[pd.DataFrame], int], topic: str
    ) -> int:
        """Write; if the store refuses the batch (not a connection problem), split it until the
        offending rows are isolated and send them to the DLQ with the error."""
        try:
            return write(df)
        except WriteAbortedError:
            raise
        except Exception as e:
            if len(df) == 1:
                row = df.iloc[0]
                self._dlq(
                    [
                        DlqRecord(
                            source=topic,
                            reason=f"store_{type(e).__name__}",
                            payload=row.to_json(date_format="iso", date_unit="ns"),
                            detail=str(e)[:1000],
                            key=str(row.get("symbol")),
                        )
                    ]
                )
                return 0
            mid = len(df) // 2
            return self._write_bisect(table, df.iloc[:mid], write, topic) + self._write_bisect(
                table, df.iloc[mid:], write, topic
            )

    # ---- periodic ------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_lag >= self.config.lag_interval_s:
            self._last_lag = now
            self._update_lag()
        if now - self._last_retention >= self.config.retention_interval_s:
            self._last_retention = now
            apply = getattr(self.store, "apply_retention", None)
            license_ = getattr(self.store, "license", None)
            if apply is not None and license_ is not None and license_() == "apache":
                dropped = apply()
                log.info("retention_applied", chunks_dropped=dropped)

    def _update_lag(self) -> None:
        try:
            parts = self.consumer.assignment()
            if not parts:
                return
            lag: dict[str, int] = defaultdict(int)
            for tp, pos in zip(parts, self.consumer.position(parts), strict=True):
                _, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                lag[tp.topic] += max(0, high - pos.offset) if pos.offset >= 0 else high
            for topic, v in lag.items():
                metrics.CONSUMER_LAG.labels(topic).set(v)
        except Exception as e:
            log.debug("lag_failed", error=repr(e))


def run(
    settings: Settings,
    *,
    config: SinkConfig | None = None,
    store: Store | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Entry point for ``signalstack sink``: open the configured store, migrate, consume."""
    own_store = store is None
    store = store or open_store(settings, migrate=True)
    sink = KafkaSink(settings, store, config)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sink.stop())
    try:
        sink.run(stop)
    finally:
        if own_store:
            store.close()
