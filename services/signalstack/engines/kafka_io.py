"""Kafka edges of the stream engines: feature rows → ``market.features``, DLQ records →
``market.trades.dlq``, and ``market.trades`` → trade batches for the local engine."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
import pandas as pd

from signalstack.engines.metrics import CONSUMER_LAG
from signalstack.features.columns import FEATURE_COLUMNS, TRADE_COLUMNS
from signalstack.logs import get_logger
from signalstack.observability.kafka_stats import settled_topic_lag
from signalstack.schemas.trade import InvalidTradeError, validate_trade

log = get_logger(__name__)


def feature_json(row: Mapping[Any, Any]) -> bytes:
    """One ``market.features`` value: ts as ns and ISO, NaN → null, schema_version 1."""
    ts = pd.Timestamp(row["ts"])
    out: dict[str, Any] = {
        "schema_version": 1,
        "symbol": row["symbol"],
        "ts": int(ts.value),
        "ts_iso": ts.isoformat(),
        "feature_set_version": int(row["feature_set_version"]),
    }
    for c in FEATURE_COLUMNS:
        v = float(row[c])
        out[c] = None if math.isnan(v) else v
    return orjson.dumps(out)


class KafkaFeaturePublisher:
    """Feature rows → Kafka (key = symbol), idempotent producer, acks=all."""

    def __init__(self, bootstrap: str, topic: str = "market.features") -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )

    def publish(self, features: pd.DataFrame) -> int:
        n = 0
        for row in features.to_dict("records"):
            self.producer.produce(
                self.topic, key=str(row["symbol"]).encode(), value=feature_json(row)
            )
            n += 1
            if n % 10_000 == 0:
                self.producer.poll(0)
        self.producer.poll(0)
        return n

    def publish_dlq(self, records: Iterable[Any], topic: str) -> int:
        n = 0
        for r in records:
            value = orjson.dumps(
                {"source": r.source, "reason": r.reason, "detail": r.detail, "payload": r.payload}
            )
            self.producer.produce(topic, key=(r.key or "").encode() or None, value=value)
            n += 1
        self.producer.poll(0)
        return n

    def flush(self) -> None:
        self.producer.flush(30)


def kafka_batches(
    bootstrap: str,
    topic: str = "market.trades",
    *,
    group_id: str = "signalstack-stream",
    max_batch: int = 100_000,
    poll_timeout_s: float = 0.5,
    idle_batches: int | None = None,
    on_invalid: Any = None,
    stats_interval_ms: int = 5_000,
) -> Iterator[pd.DataFrame]:
    """Consume ``market.trades`` as DataFrames of validated trades (arrival order).

    Invalid values are handed to ``on_invalid(raw, key, error)`` (the engine's DLQ). Offsets are
    committed after the next batch is requested, i.e. once the previous one was processed.
    ``idle_batches``: stop after that many consecutive empty polls (bounded runs, tests).
    The consumer exports its own lag (``signalstack_stream_consumer_lag{query="local"}``) from
    librdkafka's statistics every ``stats_interval_ms``, as the sink does.
    """
    from confluent_kafka import Consumer

    owned: set[tuple[str, int]] = set()  # the assignment, kept by the rebalance callbacks

    def on_stats(raw: str) -> None:
        lag = settled_topic_lag(raw, owned, topic)
        if lag is not None:  # the last value kept while unknown
            CONSUMER_LAG.labels("local").set(lag)

    def on_assign(_: Any, partitions: list[Any]) -> None:
        owned.update((p.topic, p.partition) for p in partitions)

    def on_revoke(_: Any, partitions: list[Any]) -> None:
        owned.difference_update((p.topic, p.partition) for p in partitions)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "statistics.interval.ms": stats_interval_ms,
            "stats_cb": on_stats,
        }
    )
    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    idle = 0
    try:
        while True:
            msgs = consumer.consume(num_messages=max_batch, timeout=poll_timeout_s)
            rows = []
            for m in msgs:
                if m.error():
                    log.warning("kafka error", error=str(m.error()))
                    continue
                raw = m.value() or b""
                try:
                    rows.append(validate_trade(orjson.loads(raw)).to_dict())
                except (orjson.JSONDecodeError, InvalidTradeError) as err:
                    if on_invalid is not None:
                        on_invalid(raw, m.key(), err)
            if not rows:
                idle += 1
                if idle_batches is not None and idle >= idle_batches:
                    return
                continue
            idle = 0
            yield pd.DataFrame.from_records(rows, columns=[*list(TRADE_COLUMNS), "schema_version"])
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
