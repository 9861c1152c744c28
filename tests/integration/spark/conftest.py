"""One local[2] SparkSession for every Spark test (start-up is slow on 2 cores), and helpers to
produce trade events to a fresh topic of the real Kafka broker."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from signalstack.engines.spark import SparkJobConfig, get_session


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    cfg = SparkJobConfig(bootstrap="127.0.0.1:1", checkpoint_dir=str(tmp_path_factory.mktemp("cp")))
    spark = get_session(cfg)
    spark.sparkContext.setLogLevel("WARN")
    yield spark
    spark.stop()


class TopicWriter:
    def __init__(self, bootstrap: str, partitions: int = 6) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        self.topic = f"market.trades.test.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(self.topic, partitions, 1)]).values():
            f.result(30)
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"}
        )

    def send(self, pairs: list[tuple[bytes | None, bytes]]) -> None:
        for k, v in pairs:
            self.producer.produce(self.topic, key=k, value=v)
        assert self.producer.flush(30) == 0


@pytest.fixture
def topic_writer(kafka: Any) -> TopicWriter:
    return TopicWriter(kafka.bootstrap)


@pytest.fixture
def topic_factory(kafka: Any) -> Any:
    """``topic_factory(partitions)`` → a writer for a fresh topic."""
    return lambda partitions=6: TopicWriter(kafka.bootstrap, partitions)
