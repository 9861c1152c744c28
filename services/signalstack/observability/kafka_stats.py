"""What the Kafka consumers (the sink, the local stream engine) read from librdkafka's statistics
(``statistics.interval.ms``, ``stats_cb``).

librdkafka emits a JSON document on the consumer's own thread (from ``consume``) every
interval, with no broker round trip: the consumer group's state (``cgrp``) and, per partition,
the log end and the committed offset as the client last saw them. Fields: librdkafka's
STATISTICS.md.

- **Group up**: ``cgrp.state == "up"``: the group coordinator (a broker) is reachable. With the
  broker gone it moves to ``query-coord`` / ``wait-broker-transport`` within a reconnect.
- **Lag** per topic: over the partitions this member owns, the log end (the last stable offset
  under ``read_committed``, the default, else the high watermark) minus the committed offset,
  or minus the log start when nothing was committed yet. It counts what is neither stored nor
  committed, as ``kafka-consumer-groups`` does. The consumer's *position* is not used: after a
  rebalance it is unknown (-1001) until a message arrives, so a fully consumed and committed
  partition looked like its whole log behind (the 55k left after the broker outage).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any

import orjson

_INVALID = -1001  # RD_KAFKA_OFFSET_INVALID


def group_up(stats: dict[str, Any]) -> bool:
    """Whether the group coordinator is reachable (the consumer group is "up")."""
    cgrp = stats.get("cgrp") or {}
    return bool(cgrp.get("state") == "up")


def group_steady(stats: dict[str, Any]) -> bool:
    """Up and not in a rebalance: the assignment the lag is computed over is settled."""
    cgrp = stats.get("cgrp") or {}
    return group_up(stats) and cgrp.get("join_state") == "steady"


def partition_lag(p: dict[str, Any]) -> int | None:
    """Messages of one partition neither stored nor committed; ``None`` if unknown."""
    end = p.get("ls_offset", _INVALID)
    if end is None or end < 0:
        end = p.get("hi_offset", _INVALID)
    if end is None or end < 0:
        return None
    committed = p.get("committed_offset", _INVALID)
    if committed is not None and committed >= 0:
        return max(0, int(end) - int(committed))
    start = p.get("lo_offset", _INVALID)
    if start is None or start < 0:
        return None
    return max(0, int(end) - int(start))


def consumer_lag(
    stats: dict[str, Any], owned: Collection[tuple[str, int]], topics: Iterable[str]
) -> dict[str, int]:
    """Lag per topic over the ``owned`` partitions; 0 for a topic with none owned. A topic
    with an owned partition whose offsets are not known yet is left out (keep the last
    value rather than report a wrong one)."""
    lag: dict[str, int] = defaultdict(int)
    unknown: set[str] = set()
    by_topic = stats.get("topics") or {}
    for topic, partition in owned:
        parts = (by_topic.get(topic) or {}).get("partitions") or {}
        p = parts.get(str(partition))
        n = None if p is None else partition_lag(p)
        if n is None:
            unknown.add(topic)
        else:
            lag[topic] += n
    return {t: lag[t] for t in topics if t not in unknown}


def settled_topic_lag(raw: str, owned: Collection[tuple[str, int]], topic: str) -> int | None:
    """From one statistics document (its JSON text): ``topic``'s lag over the ``owned``
    partitions, or None while it is unknown — the document unreadable, the group rebalancing,
    or an owned partition's offsets not known yet (the caller keeps its last value)."""
    try:
        stats = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not group_steady(stats):
        return None
    return consumer_lag(stats, owned, [topic]).get(topic)
