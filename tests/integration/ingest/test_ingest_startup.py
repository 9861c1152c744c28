"""The ingest started while its Kafka broker is down: the probes answer from the first second
(alive, not ready), the topic check is retried with backoff instead of exiting into a crash loop,
and once the broker comes up every trade is delivered."""

from __future__ import annotations

import time

import httpx
import pytest
from tests.integration.ingest.ingest_helpers import (
    consume_all,
    make_settings,
    start_ingest,
    wait_for,
)

from signalstack.devstack import KafkaServer
from signalstack.ingest import IngestSettings
from signalstack.marketdata.simulator import SimConfig, simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_broker_down_at_start_up_is_waited_for_with_probes_answered(fake_polygon) -> None:
    market = simulate(SimConfig(seed=5, symbols=("AAPL", "MSFT"), trades_per_day=1_500))
    srv = fake_polygon(market, rate=20_000, batch=100)
    broker = KafkaServer(heap="512m")  # its port is chosen; nothing listens there yet
    try:
        s = make_settings(broker.bootstrap, srv, ("AAPL", "MSFT"))
        cfg = IngestSettings(
            http_port=0, backoff_base_s=0.05, backoff_cap_s=0.5, linger_ms=5, gap_fill=False
        )
        run = start_ingest(s, cfg)
        svc = run.service
        wait_for(lambda: svc.health is not None or run.error is not None, 30, "the probes")
        assert run.error is None and svc.health is not None
        url = svc.health.url
        deadline = time.monotonic() + 3.0  # several topic checks fail meanwhile
        while time.monotonic() < deadline:
            assert httpx.get(url + "/health/live", timeout=5).status_code == 200
            ready = httpx.get(url + "/health/ready", timeout=5)
            assert ready.status_code == 503 and "topics" in ready.text, ready.text
            time.sleep(0.25)
        assert run.thread.is_alive() and run.error is None  # still waiting, not exited

        broker.start()
        expected = {
            (market.symbols[k], int(x), str(i))
            for k, x, i in zip(
                market.sym.tolist(), market.exchange.tolist(), market.trade_id.tolist(), strict=True
            )
        }  # the tape's distinct trades (it carries duplicate prints, which the ingest drops)
        wait_for(
            lambda: svc.stats.acked >= len(expected) or run.error is not None, 120, "trades acked"
        )
        assert run.error is None
        wait_for(lambda: httpx.get(url + "/health/ready", timeout=5).status_code == 200, 30,
                 "ready once the broker answers")  # fmt: skip
        run.stop()
        msgs = consume_all(broker.bootstrap, s.kafka.trades_topic)
        ids = [(v["symbol"], v["exchange"], v["trade_id"]) for _, v in msgs]
        assert len(ids) == len(set(ids)) and set(ids) == expected
    finally:
        broker.cleanup()
