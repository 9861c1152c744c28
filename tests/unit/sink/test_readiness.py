"""The sink's readiness and lag gauge, driven through the consumer's callbacks as librdkafka
serves them (statistics recorded from a real broker: data/record_stats.py), on an injected
clock. The broker-restart integration test shows the same end to end."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from prometheus_client import REGISTRY

from signalstack.config import KafkaSettings, Settings
from signalstack.sink import KafkaSink, SinkSettings
from signalstack.sink.service import Batch
from signalstack.store.duckdb import DuckDBStore

DATA = Path(__file__).parent / "data"
OWNED = [TopicPartition("trades", p) for p in range(3)] + [TopicPartition("features", 0)]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(5.0)  # a machine booted 5 s ago


@pytest.fixture
def sink(clock: FakeClock) -> Iterator[KafkaSink]:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"))  # never polled
    config = SinkSettings(http_port=None, topics=("trades", "features", "predictions"))
    store = DuckDBStore()
    s = KafkaSink(settings, store, config, clock=clock)
    try:
        yield s
    finally:
        s.consumer.close()
        store.close()


def _stats(name: str) -> str:
    return (DATA / f"stats_{name}.json").read_text()


def _lag(topic: str) -> Any:
    return REGISTRY.get_sample_value("signalstack_sink_consumer_lag", {"topic": topic})


def _write_done(sink: KafkaSink) -> None:
    """A write (on the writer thread) has returned; the loop finishes it."""
    done: Future[Any] = Future()
    done.set_result(None)
    sink._inflight = (done, Batch(offsets=[]))
    sink._finish(asynchronous=True)


def test_ready_with_partitions_and_the_broker_and_not_without(sink: KafkaSink) -> None:
    assert sink.not_ready() == "no partitions assigned"
    sink._on_assign(sink.consumer, OWNED)
    assert sink.ready
    sink._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert sink.not_ready() == "kafka group coordinator unreachable"
    sink._on_stats(_stats("steady"))  # the broker is back
    assert sink.ready
    sink._on_stats(_stats("broker_down"))
    assert sink.not_ready() == "kafka group coordinator unreachable"
    sink._on_stats(_stats("steady"))
    sink._on_error(KafkaError(KafkaError._TRANSPORT))  # one connection: librdkafka reconnects
    assert sink.ready
    sink._on_revoke(sink.consumer, OWNED[:2])
    assert sink.ready  # cooperative: it keeps the others
    sink._on_lost(sink.consumer, OWNED[2:])
    assert sink.not_ready() == "no partitions assigned"


def test_not_ready_while_the_store_retries_or_the_loop_is_stuck(
    sink: KafkaSink, clock: FakeClock
) -> None:
    sink._on_assign(sink.consumer, OWNED)
    sink._on_store_retry()
    assert sink.not_ready() == "store write retrying"
    _write_done(sink)
    assert sink.ready
    clock.now += 15.5  # the loop last turned at construction: a write hangs
    assert sink.not_ready() == "consume loop stalled"


def test_lag_gauge_from_the_statistics_for_the_owned_partitions(sink: KafkaSink) -> None:
    sink._on_assign(sink.consumer, OWNED)
    sink._on_stats(_stats("steady"))
    assert (_lag("trades"), _lag("features"), _lag("predictions")) == (140, 5, 0)
    sink._on_revoke(sink.consumer, OWNED[2:])  # trades/2 and features/0 move away
    sink._on_stats(_stats("steady"))
    assert (_lag("trades"), _lag("features")) == (40, 0)
    sink._on_stats(_stats("broker_down"))  # unknown while the broker is gone: kept
    assert _lag("trades") == 40
