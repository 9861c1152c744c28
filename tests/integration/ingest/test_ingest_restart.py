"""A killed ingest loses nothing: what it had read but Kafka had not acknowledged, and what the
feed sent while it was down, is filled from REST by the next one, starting at the topic's last
acknowledged trades; and nothing the topic already holds is written twice."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import pytest
from tests.integration.ingest.ingest_helpers import (
    consume_all,
    make_settings,
    records_in_topic,
    wait_for,
)

from signalstack.marketdata.simulator import SimConfig, simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMS = ("AAPL", "MSFT", "NVDA")


def test_a_killed_ingest_is_resumed_from_the_last_acknowledged_trades(kafka, fake_polygon) -> None:
    market = simulate(SimConfig(seed=51, symbols=SYMS, trades_per_day=8_000, max_late_s=5))
    expected = {
        (market.symbols[s], int(x), str(i))
        for s, x, i in zip(
            market.sym.tolist(), market.exchange.tolist(), market.trade_id.tolist(), strict=True
        )
    }
    srv = fake_polygon(market, rate=1_500, batch=50)  # a ~16 s tape, live stamps
    s = make_settings(kafka.bootstrap, srv, SYMS)
    topic = s.kafka.trades_topic
    env = {
        **os.environ, "POLYGON_API_KEY": "test-key", "POLYGON_WS_URL": srv.ws_url,
        "POLYGON_REST_URL": srv.rest_url, "POLYGON_REST_RATE_PER_S": "2000",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_TRADES_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": s.kafka.dlq_topic, "MARKET_SYMBOLS": ",".join(SYMS),
        "INGEST_HTTP_PORT": "0", "INGEST_GAP_LOOKBACK_S": "20", "INGEST_BACKOFF_BASE_S": "0.05",
        # Batches held 2 s before they are sent: a kill loses trades read, never acknowledged.
        "INGEST_LINGER_MS": "2000", "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "signalstack.ingest"]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    second: subprocess.Popen[bytes] | None = None
    try:
        in_topic = lambda: records_in_topic(kafka.bootstrap, topic)  # noqa: E731
        wait_for(lambda: in_topic() >= 3_000, 60, "trades in the topic")
        os.killpg(first.pid, signal.SIGKILL)  # as the kubelet does to a pod that will not stop
        first.wait(10)
        killed_at = in_topic()
        time.sleep(2.0)  # down: the feed goes on without us
        second = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(srv.done.is_set, 90, "the whole tape published")
        wait_for(lambda: in_topic() >= len(expected), 90, "every trade in topic")
        time.sleep(2.5)  # past a linger: a late duplicate would show up now
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
    assert killed_at < len(expected)  # the kill did cut the stream short
    msgs = consume_all(kafka.bootstrap, topic)
    ids = [(v["symbol"], v["exchange"], v["trade_id"]) for _, v in msgs]
    dup = [k for k, n in collections.Counter(ids).items() if n > 1]
    assert not dup, f"{len(dup)} trades written twice"
    assert set(ids) == expected, (len(expected - set(ids)), len(set(ids) - expected))
    assert any(v["source"] == "polygon_rest" for _, v in msgs)  # the gap was filled
