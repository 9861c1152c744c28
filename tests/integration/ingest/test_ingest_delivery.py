"""Delivery reports on their own thread: acknowledgements, metrics and health never wait for the
event loop (an idle feed, a busy or blocked loop), and a delivery failure is never only logged."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError
from tests.integration.ingest.ingest_helpers import (
    consume_all,
    make_settings,
    start_ingest,
    wait_for,
)

from signalstack.ingest import IngestService, IngestSettings
from signalstack.ingest.kafka_io import ensure_topics, producer_config, trade_topics
from signalstack.marketdata.simulator import SimConfig, simulate

pytestmark = pytest.mark.integration

SYMS = ("AAPL", "MSFT")


def _metric(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


def test_acks_and_health_are_served_while_the_event_loop_is_held(kafka, fake_polygon) -> None:
    """After the last frame the loop is held (as by a long frame or a gap fill): every trade is
    still counted as acknowledged, in the metrics too, and both probes answer. Before, acks were
    counted on the loop only (after a frame or a 1 s idle timeout) and health ran on the loop."""
    market = simulate(SimConfig(seed=31, symbols=SYMS, trades_per_day=1_500))
    expected = len(market) - int(market.is_duplicate.sum())
    srv = fake_polygon(market, rate=50_000, batch=100)
    s = make_settings(kafka.bootstrap, srv, SYMS)
    # A long linger: the last frame's trades are acknowledged well after it was processed.
    ing = IngestSettings(http_port=0, linger_ms=300, delivery_poll_s=0.02)
    run = start_ingest(s, ing)
    svc = run.service
    wait_for(srv.done.is_set, 60, "tape published")
    wait_for(lambda: svc.stats.produced >= expected, 60, "every trade produced")
    assert run.loop is not None and svc.health is not None
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:  # runs ON the ingest's loop: nothing else on it runs meanwhile
        held.set()
        release.wait(30)

    run.loop.call_soon_threadsafe(hold)
    try:
        assert held.wait(10)
        wait_for(lambda: svc.stats.acked >= expected, 15, "acks counted with the loop held")
        url = svc.health.url
        with httpx.Client(timeout=5) as http:
            text = http.get(url + "/metrics").text
            assert _metric(text, "signalstack_ingest_messages_out_total") == expected
            assert http.get(url + "/health/live").status_code == 200
            assert http.get(url + "/health/ready").status_code == 200
    finally:
        release.set()
    stats = run.stop()
    assert stats.acked == expected


def test_a_trade_kafka_refuses_for_good_goes_to_the_dlq_with_the_reason(kafka) -> None:
    """A delivery failure that producing again cannot cure lands in the DLQ (reason
    ``delivery_failed``, the trade verbatim), and a transient one is produced again: before, both
    were only logged (``kafka_delivery_failed``) and the trade was gone."""
    from pydantic import SecretStr

    from signalstack.config import KafkaSettings, MarketSettings, PolygonSettings, Settings

    tag = str(time.time_ns())
    s = Settings(
        polygon=PolygonSettings(api_key=SecretStr("k")),
        kafka=KafkaSettings(
            bootstrap_servers=kafka.bootstrap,
            trades_topic=f"it.fail.trades.{tag}",
            dlq_topic=f"it.fail.dlq.{tag}",
        ),
        market=MarketSettings(symbols=SYMS),
    )
    ing = IngestSettings(http_port=0)
    ensure_topics(kafka.bootstrap, trade_topics(s.kafka, ing))
    svc = IngestService(s, ing)
    conf = producer_config(kafka.bootstrap, ing)
    conf["on_delivery"] = svc._on_delivery
    from confluent_kafka import Producer

    svc._producer = Producer(conf)

    class _Msg:
        def __init__(self, value: bytes, key: bytes) -> None:
            self._v, self._k = value, key

        def topic(self) -> str:
            return s.kafka.trades_topic

        def value(self) -> bytes:
            return self._v

        def key(self) -> bytes:
            return self._k

    refused = orjson.dumps({"symbol": "AAPL", "trade_id": "refused-1"})
    timed_out = orjson.dumps({"symbol": "MSFT", "trade_id": "timed-out-1"})
    # The failures librdkafka reports through the delivery callback.
    svc._on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), _Msg(refused, b"AAPL"))
    svc._on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Msg(timed_out, b"MSFT"))
    svc._redeliver()
    assert svc._producer.flush(30) == 0
    trades = consume_all(kafka.bootstrap, s.kafka.trades_topic)
    assert [v for _, v in trades] == [{"symbol": "MSFT", "trade_id": "timed-out-1"}]
    dlq = consume_all(kafka.bootstrap, s.kafka.dlq_topic)
    assert len(dlq) == 1
    key, rec = dlq[0]
    assert key == b"AAPL" and rec["reason"] == "delivery_failed" and rec["symbol"] == "AAPL"
    assert orjson.loads(rec["raw"]) == {"symbol": "AAPL", "trade_id": "refused-1"}
    assert "too large" in rec["detail"].lower() or "MSG_SIZE_TOO_LARGE" in rec["detail"]
    reg: Any = svc.metrics.registry
    assert reg.get_sample_value("signalstack_ingest_redelivered_total") == 1.0
    assert (
        reg.get_sample_value("signalstack_ingest_rejected_total", {"reason": "delivery_failed"})
        == 1.0
    )
