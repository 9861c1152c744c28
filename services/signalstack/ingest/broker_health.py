"""Is the Kafka broker taking our trades? Readiness of the ingest service, from the producer.

Two signals, both served on the delivery thread (librdkafka's callbacks run there):

- broker state: librdkafka's ``error_cb`` reports ``_ALL_BROKERS_DOWN`` at once; its statistics
  (``stats_cb``, every ``statistics.interval.ms``) say when a broker connection is ``UP``
  again, which is how a recovery is seen (librdkafka reports no "broker back" event);
- delivery progress: trades queued but not one acknowledged for ``stall_s`` (a broker that
  accepts connections but not writes, e.g. a partition without a leader).

The clock is injected (``time.monotonic`` by default) and every "since" starts from its reading
at construction, never from 0.0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson
from confluent_kafka import KafkaError

from signalstack.logs import get_logger

log = get_logger(__name__)


class BrokerHealth:
    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self._lock = threading.Lock()
        self.brokers_down = False
        self._last_acked = 0
        self._progress_at = clock()

    # librdkafka callbacks -------------------------------------------------------------
    def on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            if not self.brokers_down:
                log.warning("kafka_brokers_down", error=str(err))
            self.brokers_down = True
        elif err.fatal():
            log.error("kafka_fatal_error", error=str(err))
        elif code != KafkaError._TRANSPORT:  # connection failures: librdkafka logs them itself
            log.info("kafka_error", error=str(err))

    def on_stats(self, stats_json: str) -> None:
        try:
            brokers = orjson.loads(stats_json).get("brokers", {})
        except (orjson.JSONDecodeError, AttributeError):
            return
        # Only clears the flag: with sparse connections an idle producer may hold no broker
        # connection at all, which is not an outage (librdkafka's error_cb says when it is).
        up = any(isinstance(b, dict) and b.get("state") == "UP" for b in brokers.values())
        if up and self.brokers_down:
            log.info("kafka_brokers_up")
            self.brokers_down = False

    # the delivery thread ---------------------------------------------------------------
    def observe(self, queued: int, acked: int) -> None:
        """Called after each poll: messages still queued, messages acknowledged so far."""
        with self._lock:
            if acked != self._last_acked or queued == 0:
                self._last_acked = acked
                self._progress_at = self._clock()

    def stalled_for(self) -> float:
        with self._lock:
            return self._clock() - self._progress_at

    def check(self) -> tuple[bool, str]:
        if self.brokers_down:
            return False, "kafka: all brokers down"
        stalled = self.stalled_for()
        if stalled > self.stall_s:
            return False, f"kafka: no trade acknowledged for {stalled:.0f}s"
        return True, "ok"
