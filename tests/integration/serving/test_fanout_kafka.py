"""The WebSocket fan-out on a real broker: it reads every partition of ``market.predictions``
from its end, picks up partitions added later, forwards predictions as they are and skips (and
counts) a value that is not one."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from signalstack.devstack import KafkaServer
from signalstack.serving.fanout import KafkaPredictionFanout
from signalstack.serving.hub import Message
from signalstack.serving.metrics import ServingMetrics

pytestmark = [pytest.mark.integration]

WAIT_S = 60.0


def test_the_fanout_follows_new_partitions_and_skips_bad_values(kafka: KafkaServer) -> None:
    topic = f"market.predictions.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    metrics = ServingMetrics()
    fanout = KafkaPredictionFanout(kafka.bootstrap, topic, metrics=metrics, refresh_s=0.5,
                                   poll_s=0.2)  # fmt: skip
    got: list[Message] = []
    lock = threading.Lock()

    def deliver(batch: list[Message]) -> None:
        with lock:
            got.extend(batch)

    fanout.deliver = deliver

    def until_forwarded(partition: int, symbol: str) -> None:
        value = f'{{"symbol": "{symbol}", "model_name": "regime", "ts": 1}}'.encode()
        producer = Producer({"bootstrap.servers": kafka.bootstrap})  # knows the new partitions
        deadline = time.monotonic() + WAIT_S
        while True:  # the fan-out starts at the end offset: send until one is forwarded
            assert time.monotonic() < deadline, f"nothing forwarded from partition {partition}"
            producer.produce(topic, key=b"k", value=b"not a prediction", partition=partition)
            producer.produce(topic, key=symbol.encode(), value=value, partition=partition)
            assert producer.flush(30) == 0
            time.sleep(0.5)
            with lock:
                if (symbol, "regime", value) in got:
                    return

    fanout.start()
    try:
        until_forwarded(0, "AAA")
        for f in admin.create_partitions([NewPartitions(topic, 3)]).values():
            f.result(30)
        deadline = time.monotonic() + WAIT_S
        while fanout.partitions != {0, 1, 2}:
            assert time.monotonic() < deadline, f"still reading {sorted(fanout.partitions)}"
            time.sleep(0.2)
        until_forwarded(2, "CCC")
    finally:
        fanout.stop()
    with lock:
        assert all(symbol in ("AAA", "CCC") for symbol, _m, _v in got)
    assert metrics.live_errors.labels("fanout")._value.get() >= 2  # the bad values: skipped
    assert metrics.fanout_messages._value.get() == len(got)
