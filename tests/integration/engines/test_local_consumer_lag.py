"""The local engine's Kafka consumer exports its own lag, as the sink does: the messages of
market.trades neither processed nor committed, from librdkafka's statistics."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from signalstack.engines.kafka_io import kafka_batches
from signalstack.engines.metrics import CONSUMER_LAG

pytestmark = pytest.mark.integration

N = 40


def _trade(i: int) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1, "symbol": "AAPL", "ts_event": 1_763_650_000_000_000_000 + i,
            "price": 190.0 + i / 100, "size": 100, "exchange": 4, "conditions": [],
            "trade_id": f"t{i}", "sequence": i, "tape": 3, "source": "sim", "ts_ingest": 0,
        }
    )  # fmt: skip


def _lag() -> float:
    return CONSUMER_LAG.labels("local")._value.get()


def test_the_consumer_reports_what_is_left_then_zero(kafka) -> None:
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(N):
        producer.produce(topic, _trade(i), key=b"AAPL")
    assert producer.flush(30) == 0
    CONSUMER_LAG.labels("local").set(-1)

    batches = kafka_batches(
        kafka.bootstrap, topic, group_id=f"g-{uuid.uuid4().hex[:6]}", max_batch=10,
        idle_batches=40, stats_interval_ms=100, poll_timeout_s=0.25,
    )  # fmt: skip
    first = next(batches)  # 10 handed over, nothing committed yet: the whole log is behind
    assert len(first) == 10
    deadline = time.monotonic() + 30
    seen_behind = False
    seen = len(first)
    for batch in batches:  # each next() commits the previous batch
        seen += len(batch)
        seen_behind = seen_behind or _lag() > 0
        time.sleep(0.15)  # a statistics interval between batches
        if seen >= N:
            break
    assert seen == N and seen_behind
    # after the last commit the consumer keeps polling (idle): its lag settles at 0
    while _lag() != 0 and time.monotonic() < deadline:
        try:
            next(batches)
        except StopIteration:
            break
    assert _lag() == 0
    batches.close()
