"""The sink through Kafka trouble: a commit refused in a rebalance, and its broker SIGKILLed
under load and restarted (real brokers, real TimescaleDB)."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
import uuid
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from tests.integration.sink.sink_helpers import (
    DUPLICATES,
    HealthPoller,
    committed,
    consumer_lag,
    count_rows,
    log_end,
    make_settings,
    make_topics,
    produce,
    run_capturing,
    start_capturing,
    trade_messages,
    wait_for,
)

from signalstack.devstack import KafkaServer, free_port
from signalstack.sink import KafkaSink, SinkSettings, metrics
from signalstack.store.timescale import TimescaleStore

pytestmark = pytest.mark.integration
TRADES = "SELECT count(*) FROM trades"


class _SyncCommitsRefused:
    """The sink's real consumer, whose synchronous commits the group refuses, as a broker does
    with REBALANCE_IN_PROGRESS or UNKNOWN_MEMBER_ID when the member's generation is gone (a
    rebalance cannot be timed to catch the sink's commit in that window)."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("asynchronous") is False:
            self.refused += 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        return self._consumer.commit(*args, **kwargs)


def test_a_commit_refused_in_a_revocation_is_counted_and_the_sink_carries_on(
    kafka, migrated
) -> None:
    """A member joins the sink's group: cooperative rebalancing revokes some of the sink's
    partitions, and the sink commits what it wrote synchronously before letting them go. That
    commit fails. The rows are durable and idempotent: the sink must go on consuming (the old
    sink took it for a failed write and stopped)."""
    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    # A long interval: offsets written after the first commit wait for the revocation.
    cfg = SinkSettings(group_id=group, max_batch=200, http_port=None, commit_interval_s=3600)
    store = TimescaleStore(migrated)
    sink = KafkaSink(make_settings(kafka.bootstrap, migrated, topics), store, cfg)
    wrapped = _SyncCommitsRefused(sink.consumer)
    sink.consumer = wrapped
    failures0 = metrics.COMMIT_FAILURES._value.get()
    errors: list[BaseException] = []
    produce(kafka.bootstrap, topics[0], trade_messages(1_000, seed=71))
    t = start_capturing(sink.run, errors)
    other = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    try:
        wait_for(lambda: count_rows(migrated, TRADES) == 1_000, 60, "rows")
        other.subscribe(list(topics))
        deadline = time.monotonic() + 60
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(0.2)  # its messages are not ours to process: never committed
        assert other.assignment(), "the second member got no partitions"
        wait_for(lambda: wrapped.refused > 0, 30, "the revocation's commit")
        other.close()  # its partitions come back to the sink
        produce(kafka.bootstrap, topics[0], trade_messages(1_000, seed=72))
        wait_for(lambda: count_rows(migrated, TRADES) == 2_000, 60, "rows after the rebalance")
        assert t.is_alive() and errors == []
        assert sink.ready
    finally:
        sink.stop()
        t.join(60)
        store.close()
    assert not t.is_alive()
    assert errors == []
    assert metrics.COMMIT_FAILURES._value.get() - failures0 >= wrapped.refused > 0
    assert count_rows(migrated, DUPLICATES) == 0


@pytest.mark.slow
def test_a_broker_killed_under_load_and_restarted(migrated) -> None:
    """The sink's broker is SIGKILLed while trades stream in, stays down past the session
    timeout (the group loses the sink's partitions) and comes back on the same port and log
    directory. Every trade lands exactly once; readiness is false while the broker is gone
    and true after; liveness answers throughout; the lag gauge ends at 0, also for a topic
    consumed and committed before the outage (the old gauge showed its whole log again once
    the partitions were reassigned)."""
    broker = KafkaServer(heap="512m")  # the sink's own broker: it is killed
    broker.start()
    try:
        topics = make_topics(broker.bootstrap)
        feats = [
            ("MSFT", orjson.dumps({"symbol": "MSFT", "ts": 1_709_650_800_000_000_000 + i}))
            for i in range(0, 20 * 60_000_000_000, 60_000_000_000)
        ]
        produce(broker.bootstrap, topics[1], feats)
        port = free_port()
        group = f"g-{uuid.uuid4().hex[:6]}"
        cfg = SinkSettings(
            group_id=group,
            max_batch=500,
            http_port=port,
            commit_interval_s=0.2,
            session_timeout_ms=6_000,  # the broker's minimum (group.min.session.timeout.ms)
            stats_interval_ms=200,
        )
        total = 30_000
        trades = trade_messages(total, seed=81)
        errors: list[BaseException] = []
        t, stop = run_capturing(make_settings(broker.bootstrap, migrated, topics), cfg, errors)
        health = HealthPoller(port).start()
        try:
            wait_for(lambda: health.last_ready() == 200, 60, "readiness")
            wait_for(lambda: committed(broker.bootstrap, group, topics[1]) == 20, 30, "features")
            producer = threading.Thread(
                target=produce,
                args=(broker.bootstrap, topics[0], trades, 3_000.0),
            )
            producer.start()
            wait_for(lambda: count_rows(migrated, TRADES) >= 3_000, 60, "trades flowing")
            assert broker.proc is not None
            os.killpg(broker.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            broker.stop()  # reaps the process; the port and the log directory stay
            wait_for(lambda: 503 in health.ready_since(killed), 30, "not ready")
            time.sleep(max(0.0, killed + 9.0 - time.monotonic()))  # > session timeout
            down = count_rows(migrated, TRADES)
            assert down < total, "the outage came after the last trade"
            # From the first 503 until the broker is back: unready, or a probe a loaded machine
            # did not answer in time (a str: the error); never a 200.
            first = next(at for at, _, r in list(health.samples) if at >= killed and r == 503)
            assert first - killed < 30.0
            after = health.ready_since(first)
            assert all(r == 503 or isinstance(r, str) for r in after), collections.Counter(after)
            assert 503 in after
            broker.start()
            back = time.monotonic()
            producer.join(180)
            wait_for(lambda: count_rows(migrated, TRADES) == total, 120, "every trade")
            for topic in topics[:2]:
                end = log_end(broker.bootstrap, topic)
                wait_for(
                    lambda tp=topic, n=end: committed(broker.bootstrap, group, tp) == n,
                    60,
                    f"{topic} committed",
                )
            wait_for(lambda: health.last_ready() == 200, 60, "ready again")
            for topic in topics[:2]:
                wait_for(lambda tp=topic: consumer_lag(tp) == 0, 30, f"{topic} lag 0")
        finally:
            health.stop()  # before the sink stops its HTTP server
            stop.set()
            t.join(60)
        assert not t.is_alive()
        assert errors == []
        assert count_rows(migrated, TRADES) == total
        assert count_rows(migrated, DUPLICATES) == 0
        outage = [s for s in health.samples if killed <= s[0] <= back]
        assert len(outage) > 20
        up = next(i for i, (_, live, _) in enumerate(health.samples) if live == 200)
        failed = [
            (round(at - killed, 1), live) for at, live, _ in health.samples[up:] if live != 200
        ]
        assert failed == [], "liveness failed (s after the kill, answer)"
        assert 200 in health.ready_since(back)
    finally:
        broker.cleanup()
