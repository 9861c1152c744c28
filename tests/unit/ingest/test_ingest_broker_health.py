"""Readiness from the producer: brokers down (librdkafka's error and statistics callbacks) and
delivery stalls, on an injected clock; the producer's delivery timeout."""

from __future__ import annotations

import orjson
from confluent_kafka import KafkaError

from signalstack.ingest import IngestSettings
from signalstack.ingest.broker_health import BrokerHealth
from signalstack.ingest.kafka_io import producer_config


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _stats(*states: str) -> str:
    brokers = {f"127.0.0.1:9092/{k}": {"nodeid": k, "state": st} for k, st in enumerate(states)}
    return orjson.dumps({"brokers": brokers}).decode()


def test_all_brokers_down_makes_it_unready_until_a_broker_is_up_again() -> None:
    h = BrokerHealth(stall_s=10.0, clock=Clock(5.0))
    assert h.check() == (True, "ok")
    h.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    ok, why = h.check()
    assert not ok and "brokers down" in why
    h.on_stats(_stats("DOWN", "TRY_CONNECT"))
    assert not h.check()[0]
    h.on_stats(_stats("DOWN", "UP"))
    assert h.check() == (True, "ok")
    h.on_error(KafkaError(KafkaError._TRANSPORT))  # one connection lost: not all brokers
    assert h.check()[0]


def test_queued_trades_without_an_ack_for_the_stall_time_make_it_unready() -> None:
    # A clock reading far from 0 (a machine up for weeks) and one near 0 (booted minutes ago):
    # the stall clock starts at the clock's reading, never at 0.0.
    for start in (3_000_000.0, 12.0):
        clock = Clock(start)
        h = BrokerHealth(stall_s=10.0, clock=clock)
        h.observe(queued=500, acked=0)
        clock.now += 9.0
        assert h.check()[0]
        h.observe(queued=900, acked=100)  # progress
        clock.now += 9.0
        h.observe(queued=1200, acked=100)
        assert h.check()[0]
        clock.now += 2.0
        ok, why = h.check()
        assert not ok and "no trade acknowledged for 11s" in why
        h.observe(queued=0, acked=100)  # nothing queued: nothing is waiting for the broker
        assert h.check()[0]


def test_an_idle_producer_is_not_a_stalled_one() -> None:
    clock = Clock(100.0)
    h = BrokerHealth(stall_s=1.0, clock=clock)
    h.on_stats(_stats("INIT", "DOWN"))  # sparse connections: idle, no connection, no outage
    assert h.check()[0]
    for _ in range(5):
        clock.now += 60.0
        h.observe(queued=0, acked=7)
        assert h.check()[0]


def test_no_delivery_timeout_by_default() -> None:
    """librdkafka's default (300 s) drops a queued trade after an outage that long."""
    conf = producer_config("127.0.0.1:1", IngestSettings())
    assert conf["message.timeout.ms"] == 0
    assert conf["enable.idempotence"] is True
