"""The cluster's WebSocket fan-out: every replica reads ``market.predictions`` and forwards each
message to its own subscribers, so a client of any replica sees every symbol's predictions.

Why: in the cluster the replicas share one consumer group on ``market.features``
(``SERVING_FEED_GROUP_ID``): each row is predicted, stored and published by exactly one replica
— the one owning the row's partition. A replica's hub fed by its own predictor would see only
its partitions' symbols. :class:`KafkaPredictionFanout` closes that gap: a consumer without a
group (manual assignment of every partition at its end offset, no commits — a WebSocket client
gets predictions from the moment it subscribes, never history), on a thread of its own, handing
each batch to the hub's publish on the event loop. Partitions added to the topic later are
picked up every ``refresh_s``.

The embedded default (one process, the local feature log) fans out in-process instead: the
predictor hands its messages to the hub directly (``SERVING_WS_FANOUT``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from signalstack.logs import get_logger
from signalstack.serving.background import Background
from signalstack.serving.hub import Message

if TYPE_CHECKING:
    from signalstack.serving.metrics import ServingMetrics

log = get_logger(__name__)

Deliver = Callable[[list[Message]], None]


def parse_prediction_message(raw: bytes) -> Message:
    """A ``market.predictions`` value → (symbol, model, the value itself); ValueError if it is
    not one (schemas/json/prediction.v1.json)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {type(obj).__name__}")
    symbol, model = obj.get("symbol"), obj.get("model_name")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"symbol {symbol!r} is not a non-empty string")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model_name {model!r} is not a non-empty string")
    return symbol, model, raw


class KafkaPredictionFanout(Background):
    """``market.predictions`` → ``deliver`` (the hub's publish on the loop; set by the app)."""

    thread_name = "ws-fanout"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        metrics: ServingMetrics | None = None,
        max_batch: int = 1000,
        poll_s: float = 0.5,
        refresh_s: float = 30.0,
        backoff_cap_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from confluent_kafka import Consumer

        super().__init__()
        self.topic = topic
        self.metrics = metrics
        self.deliver: Deliver | None = None
        self.max_batch = max_batch
        self.poll_s = poll_s
        self.refresh_s = refresh_s
        self.backoff_cap_s = backoff_cap_s
        self.clock = clock
        self.description = f"kafka {topic} (every partition, from its end)"
        # a group id is required by the client; it never joins a group (assign, no commits)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"signalstack-serving-fanout-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        self._assigned: set[int] = set()

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions read now."""
        return frozenset(self._assigned)

    def _assign_new(self) -> None:
        from confluent_kafka import OFFSET_END, TopicPartition

        meta = self._consumer.list_topics(self.topic, timeout=10)
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None:
            log.warning("serving.fanout_no_topic", topic=self.topic,
                        error=str(topic.error) if topic is not None else "absent")  # fmt: skip
            return
        new = sorted(set(topic.partitions) - self._assigned)
        if new:
            self._consumer.incremental_assign(
                [TopicPartition(self.topic, p, OFFSET_END) for p in new]
            )
            self._assigned.update(new)
            log.info("serving.fanout_assigned", topic=self.topic, partitions=new)

    def poll(self, timeout_s: float) -> list[Message]:
        """The messages that arrived since the last call (bad ones logged and skipped)."""
        if not self._assigned:
            self._stop.wait(timeout_s)
            return []
        out: list[Message] = []
        for m in self._consumer.consume(num_messages=self.max_batch, timeout=timeout_s):
            if m.error():
                log.warning("serving.fanout_kafka_error", error=str(m.error()))
                continue
            try:
                out.append(parse_prediction_message(m.value() or b""))
            except ValueError as err:
                where = f"{m.topic()}:{m.partition()}:{m.offset()}"
                log.warning("serving.fanout_bad_message", where=where, error=str(err))
                self._error()
        return out

    def _error(self) -> None:
        if self.metrics is not None:
            self.metrics.live_errors.labels("fanout").inc()

    def _run(self) -> None:
        wait = 0.5
        next_refresh = self.clock()  # now: the first pass assigns at once
        while not self._stop.is_set():
            try:
                now = self.clock()
                if now >= next_refresh:
                    self._assign_new()
                    next_refresh = now + self.refresh_s
                batch = self.poll(self.poll_s)
                if batch and self.deliver is not None:
                    self.deliver(batch)
                    if self.metrics is not None:
                        self.metrics.fanout_messages.inc(len(batch))
                wait = 0.5
            except Exception as err:  # a broker away: retried with backoff, never a dead thread
                if self._stop.is_set():
                    break
                log.error("serving.fanout_failed", error=str(err), retry_in_s=wait)
                self._error()
                self._stop.wait(wait)
                wait = min(wait * 2, self.backoff_cap_s)

    def _started(self) -> None:
        log.info("serving.fanout_started", source=self.description)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop, then close the consumer on this thread once the fan-out's thread is done."""
        if not self._halt(timeout_s):
            log.warning("serving.fanout_stop_timeout", timeout_s=timeout_s)
            return
        self._consumer.close()


def describe(feed: Any, fanout: KafkaPredictionFanout | None) -> str:
    """What the WebSocket's acknowledgement names as its source."""
    base = feed.description if feed is not None else "none"
    return base if fanout is None else f"{base}; fan-out {fanout.description}"


__all__ = ["Deliver", "KafkaPredictionFanout", "describe", "parse_prediction_message"]
