"""Kafka plumbing for ingest: topic contract (created/checked by the admin API), producer config."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from signalstack.errors import SignalStackError
from signalstack.logs import get_logger

log = get_logger(__name__)


class TopicContractError(SignalStackError):
    """An existing topic does not match the contract (DESIGN.md "Kafka contracts")."""

    exit_code = 2


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


def trade_topics(kafka: Any, ingest: Any) -> list[TopicSpec]:
    """market.trades (partitions from settings, 7 d, lz4) and its DLQ."""
    return [
        TopicSpec(
            kafka.trades_topic,
            kafka.partitions,
            kafka.replication_factor,
            {"retention.ms": str(ingest.trades_retention_ms), "compression.type": "lz4"},
        ),
        TopicSpec(
            kafka.dlq_topic,
            ingest.dlq_partitions,
            kafka.replication_factor,
            {"retention.ms": str(ingest.dlq_retention_ms), "compression.type": "lz4"},
        ),
    ]


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout: float = 30.0) -> None:
    """Create missing topics; check existing ones (partition count, configured values)."""
    specs = list(specs)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=timeout)
    missing = [s for s in specs if s.name not in meta.topics]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, num_partitions=s.partitions,
                         replication_factor=s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout, request_timeout=timeout,
        )  # fmt: skip
        for name, fut in futures.items():
            try:
                fut.result()
                log.info("kafka_topic_created", topic=name)
            except KafkaException as err:
                if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
        # Creation returns before every broker's metadata shows the topic: wait for it.
        deadline = time.monotonic() + timeout
        names = {s.name for s in missing}
        while True:
            meta = admin.list_topics(timeout=timeout)
            ready = {
                n for n in names
                if n in meta.topics and meta.topics[n].error is None and meta.topics[n].partitions
            }  # fmt: skip
            if ready == names or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    problems = []
    for s in specs:
        t = meta.topics.get(s.name)
        if t is None:
            problems.append(f"{s.name}: missing after creation")
            continue
        if len(t.partitions) != s.partitions:
            problems.append(
                f"{s.name}: {len(t.partitions)} partitions, contract says {s.partitions}"
            )
    if s_conf := [s for s in specs if s.config]:
        res = {s.name: ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in s_conf}
        for s in s_conf:
            got = admin.describe_configs([res[s.name]])[res[s.name]].result(timeout=timeout)
            for k, v in s.config.items():
                have = got[k].value if k in got else None
                if have != v:
                    problems.append(f"{s.name}: {k}={have}, contract says {v}")
    if problems:
        raise TopicContractError("Kafka topics do not match the contract: " + "; ".join(problems))


def producer_config(
    bootstrap: str, ingest: Any, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Idempotent, acks=all, lz4, batched (linger/batch size) producer. ``message.timeout.ms``
    0 by default: a queued trade waits for the broker however long an outage lasts (the queue is
    bounded, and the service waits for room)."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": ingest.linger_ms,
        "batch.size": ingest.batch_size,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.max.bytes": 8_000_000,
        "message.timeout.ms": ingest.message_timeout_ms,
        "statistics.interval.ms": 0,
    }
    cfg.update(overrides or {})
    return cfg
