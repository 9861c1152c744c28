"""Where a restarted ingest resumes: the trades topic is the record of what Kafka acknowledged.

A pod killed with trades in its producer queue (read from the feed, never acknowledged) loses
them, and it reads nothing while it is down. At start-up the service reads the tail of
``market.trades``: the newest acknowledged trade per symbol says where the REST gap fill must
start, and the identities read seed the dedup window, so the fill's overlap with what the topic
already holds is dropped (every trade once).

Only the last ``window`` of the topic (by produce time) is read, and ``skew`` more before it: a
trade stamped at ``t`` is produced at or after ``t`` by a clock in step with the exchange's, and
no more than ``skew`` before ``t`` by one that is behind. So every trade with an event time inside
the window is read, and the fill, which starts no earlier than the window, overlaps nothing that
the dedup window was not seeded with.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from signalstack.logs import get_logger
from signalstack.schemas.trade import NS_PER_MS

log = get_logger(__name__)


@dataclass
class TopicTail:
    """The acknowledged tail of the trades topic."""

    last_produced_ns: int | None = None  # produce time of the newest message (None: empty)
    window_start_ns: int = 0  # every trade stamped from here on was read (produced ≥ this − skew)
    newest: dict[str, int] = field(default_factory=dict)  # symbol -> newest ts_event
    identities: list[tuple[tuple[str, int, str], int]] = field(default_factory=list)

    def gap_starts(self, symbols: tuple[str, ...], lookback_ns: int) -> dict[str, int]:
        """Per symbol: where the gap fill starts (never before the window: what lies before
        it is not in the dedup window)."""
        w = self.window_start_ns
        return {s: max(w, self.newest.get(s, w) - lookback_ns) for s in symbols}


def read_topic_tail(
    bootstrap: str,
    topic: str,
    window_ns: int,
    timeout: float = 60.0,
    *,
    skew_ns: int = 0,
    on_progress: Callable[[], None] | None = None,
) -> TopicTail:
    """Read the messages of ``topic`` produced in the ``window_ns`` before its newest one, and
    in the ``skew_ns`` before that. ``on_progress`` is called after each batch read (liveness)."""
    progress = on_progress or (lambda: None)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"signalstack-ingest-resume-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    tail = TopicTail()
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        parts = sorted(meta.partitions)
        ends: dict[int, int] = {}
        for p in parts:
            lo, hi = _watermarks(c, TopicPartition(topic, p), timeout)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return tail
        # Pass 1: the newest message of each partition gives the topic's last produce time.
        last_ms = 0
        for p, hi in ends.items():
            last_ms = max(last_ms, _read_one(c, TopicPartition(topic, p, hi - 1), timeout))
        tail.last_produced_ns = last_ms * NS_PER_MS
        tail.window_start_ns = tail.last_produced_ns - window_ns
        # Pass 2: everything produced since the window start.
        since_ms = max(0, (tail.window_start_ns - skew_ns) // NS_PER_MS)
        starts = c.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in ends], timeout=timeout
        )
        todo = {tp.partition: ends[tp.partition] for tp in starts if tp.offset >= 0}
        c.assign([tp for tp in starts if tp.partition in todo])
        pos = {tp.partition: tp.offset for tp in starts if tp.partition in todo}
        deadline = time.monotonic() + timeout
        newest = tail.newest
        ids = tail.identities
        while any(pos[p] < todo[p] for p in todo):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the tail of {topic} took over {timeout:.0f}s")
            batch = c.consume(10_000, 0.5)
            progress()
            for m in batch:
                if m.error() is not None:
                    continue
                part, off = m.partition() or 0, m.offset() or 0
                pos[part] = off + 1
                if off >= todo[part]:
                    continue
                try:
                    v = orjson.loads(m.value() or b"")
                    sym, ts = v["symbol"], int(v["ts_event"])
                    ident = (sym, int(v["exchange"]), str(v["trade_id"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # not a trade of ours: nothing to resume from
                ids.append((ident, ts))
                if ts > newest.get(sym, 0):
                    newest[sym] = ts
        return tail
    finally:
        c.close()


def _watermarks(c: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """Low and high offsets; retried while the partition has no leader yet (a topic created a
    moment ago, a broker that is just back)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            lo, hi = c.get_watermark_offsets(tp, timeout=max(1.0, deadline - time.monotonic()))
            return int(lo), int(hi)
        except KafkaException:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _read_one(c: Consumer, tp: TopicPartition, timeout: float) -> int:
    """Produce time (ms) of the message at ``tp``."""
    c.assign([tp])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            return int(m.timestamp()[1])
    raise TimeoutError(f"could not read {tp.topic}[{tp.partition}]@{tp.offset}")
