"""Record the librdkafka statistics documents that tests/unit/sink/test_stats.py reads.

A real broker; a consumer of ``trades`` (3 partitions, 100 messages each) and ``features``
(1 partition, 5 messages) with trades/0 committed to the end, trades/1 to 60, trades/2 and
features/0 never (``stats_steady.json``); then the broker SIGKILLed (``stats_broker_down.json``).

    .venv/bin/python tests/unit/sink/data/record_stats.py tests/unit/sink/data
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from signalstack.devstack import KafkaServer


def main(out: Path) -> None:
    broker = KafkaServer(heap="512m")
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topics = [NewTopic("trades", 3, 1), NewTopic("features", 1, 1)]
        for f in admin.create_topics(topics).values():
            f.result(30)
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(300):
            p.produce("trades", value=b"x", partition=i % 3)
        for _ in range(5):
            p.produce("features", value=b"x", partition=0)
        p.flush(30)
        stats: list[str] = []
        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "g",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 6000,
                "statistics.interval.ms": 200,
                "stats_cb": stats.append,
            }
        )
        c.subscribe(["trades", "features"])
        got = 0
        deadline = time.monotonic() + 30
        while got < 305 and time.monotonic() < deadline:
            got += sum(1 for m in c.consume(100, 0.2) if m.error() is None)
        done = [TopicPartition("trades", 0, 100), TopicPartition("trades", 1, 60)]
        c.commit(offsets=done, asynchronous=False)
        for _ in range(10):
            c.consume(10, 0.1)
        (out / "stats_steady.json").write_text(json.dumps(json.loads(stats[-1]), indent=1))
        assert broker.proc is not None
        os.killpg(broker.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            c.consume(10, 0.1)
        (out / "stats_broker_down.json").write_text(json.dumps(json.loads(stats[-1]), indent=1))
        c.close()
    finally:
        broker.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
