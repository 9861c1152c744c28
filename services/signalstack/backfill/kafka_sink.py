"""``--sink kafka``: backfilled REST trades → ``market.trades`` through the ingest's producer.

The events are the ones the ingest's validation accepted (:func:`~signalstack.backfill.polygon.
to_page`: ``check_trade``, source ``polygon_rest``), JSON with ``schema_version``, keyed by
symbol, produced with the ingest's producer configuration (idempotent, ``acks=all``, lz4). A
page is flushed and every delivery confirmed before the run records its cursor, so a killed run
resumes without losing a trade (a page produced but not yet recorded is produced again: Kafka
is at-least-once here, and every consumer drops the copy: the engines' dedup on (symbol,
exchange, trade_id), the store's unique keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from signalstack.errors import SignalStackError


class KafkaProduceError(SignalStackError):
    """Kafka did not acknowledge every backfilled trade of a page."""

    exit_code = 5


class TradeProducer:
    """Produces trade events to the trades topic and waits for their acknowledgements."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        ingest: Any,
        *,
        flush_timeout_s: float = 60.0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        from signalstack.ingest.kafka_io import producer_config

        # a bounded delivery timeout: a backfill reports an unreachable broker, it does not hang
        cfg = producer_config(
            bootstrap, ingest, {"message.timeout.ms": 30_000, **(overrides or {})}
        )
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._producer = Producer(cfg)
        self._errors: list[str] = []
        self.produced = 0

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def produce(self, events: Sequence[dict[str, Any]]) -> int:
        """Produce ``events`` and wait until Kafka has acknowledged all of them."""
        for ev in events:
            value = orjson.dumps(ev)
            key = str(ev["symbol"]).encode()
            while True:
                try:
                    self._producer.produce(self.topic, value, key, on_delivery=self._on_delivery)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
        left = self._producer.flush(self.flush_timeout_s)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise KafkaProduceError(
                f"Kafka {self.topic}: {left} trade(s) unacknowledged after "
                f"{self.flush_timeout_s:g} s, {len(errors)} delivery error(s)"
                + (f": {errors[0]}" if errors else "")
            )
        self.produced += len(events)
        return len(events)

    def close(self) -> None:
        self._producer.flush(self.flush_timeout_s)
