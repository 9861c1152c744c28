"""The broker is a real Apache Kafka 4.x in KRaft mode: admin API, produce, consume."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from signalstack.devstack import KafkaServer

pytestmark = pytest.mark.integration


def test_cluster_metadata_comes_from_the_broker(kafka: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    desc = admin.describe_cluster(request_timeout=10).result()
    # The cluster id is the one we formatted the KRaft log dir with: only that broker knows it.
    assert desc.cluster_id == kafka.cluster_id
    assert [n.port for n in desc.nodes] == [kafka.port]
    assert desc.controller is not None


def test_topic_with_six_partitions_produce_and_consume(kafka: KafkaServer) -> None:
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(
                topic, num_partitions=6, replication_factor=1, config={"compression.type": "lz4"}
            )
        ]
    )
    futures[topic].result(timeout=30)
    md = admin.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 6

    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
        }
    )
    delivered: list[tuple[int, int]] = []

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        assert err is None, err
        delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    keys = [f"SYM{i}" for i in range(12)]
    for i, key in enumerate(keys):
        producer.produce(topic, key=key, value=f"v{i}".encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert len(delivered) == 12
    # Keyed records spread over partitions by the murmur2 partitioner.
    assert len({p for p, _ in delivered}) > 1

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": f"smoke-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: dict[str, str] = {}
    try:
        for _ in range(200):
            msg = consumer.poll(0.5)
            if msg is None:
                if len(got) == 12:
                    break
                continue
            assert msg.error() is None, msg.error()
            got[msg.key().decode()] = msg.value().decode()
            if len(got) == 12:
                break
    finally:
        consumer.close()
    assert got == {k: f"v{i}" for i, k in enumerate(keys)}
