"""Acceptance of the ingest service on a real Kafka broker with the fake Polygon server."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

import httpx
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from tests.integration.ingest.ingest_helpers import (
    consume_all,
    make_settings,
    start_ingest,
    wait_for,
)

from signalstack.ingest import IngestSettings
from signalstack.ingest.kafka_io import TopicContractError, TopicSpec, ensure_topics, trade_topics
from signalstack.marketdata.fake_polygon import BAD_FRAME_KINDS
from signalstack.marketdata.simulator import SimConfig, simulate

pytestmark = pytest.mark.integration

SYMS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY")


def _fast(**kw):
    base = {
        "http_port": 0, "backoff_base_s": 0.02, "backoff_cap_s": 0.2, "linger_ms": 5,
        # the fake may still count a dropped connection when the client logs in again
        "max_connections_backoff_s": (0.05, 0.2),
    }  # fmt: skip
    return IngestSettings(**{**base, **kw})


def _identities(market):
    return {
        (market.symbols[s], int(x), str(i))
        for s, x, i in zip(
            market.sym.tolist(), market.exchange.tolist(), market.trade_id.tolist(), strict=True
        )
    }


@pytest.mark.slow
def test_twenty_forced_disconnects_lose_nothing_and_duplicate_nothing(kafka, fake_polygon) -> None:
    # Late prints up to 2 s, a 4 s lookback (> the late window, so a lost late print is still
    # covered): each fill is ~4 s of tape, not the whole tape again.
    market = simulate(SimConfig(seed=21, symbols=SYMS, trades_per_day=17_500, max_late_s=2))
    assert len(market) >= 100_000
    # The replay holds while the client is away (drops left): all 20 drops fit in the tape
    # however slow a reconnect is on a loaded machine; the frames in flight at each abort are
    # still lost and must be filled from REST.
    srv = fake_polygon(
        market, rate=5_000, batch=100, drop_every=8, max_drops=20, hold_while_away=True
    )
    s = make_settings(kafka.bootstrap, srv, SYMS)
    run = start_ingest(s, _fast(gap_lookback_s=4))
    svc = run.service
    wait_for(srv.done.is_set, 180, "the fake market to publish its whole tape")
    expected = _identities(market)
    wait_for(
        lambda: svc.stats.acked >= len(expected) or run.error is not None, 120, "all trades acked"
    )
    time.sleep(1.0)  # anything extra (a duplicate) would show up now
    stats = run.stop()

    assert srv.drops == 20
    assert (
        stats.gap_fills >= 20 and stats.gap_filled > 0
    )  # trades were lost in flight and recovered
    msgs = consume_all(kafka.bootstrap, s.kafka.trades_topic)
    ids = [(v["symbol"], v["exchange"], v["trade_id"]) for _, v in msgs]
    assert len(ids) == len(set(ids)), "a trade was written twice"
    assert set(ids) == expected, (len(expected - set(ids)), len(set(ids) - expected))
    assert all(k == v["symbol"].encode() for k, v in msgs)  # keyed by symbol
    sources = collections.Counter(v["source"] for _, v in msgs)
    assert sources["polygon_ws"] > 0 and sources["polygon_rest"] == stats.gap_filled
    assert stats.acked == len(expected) and stats.rejected == 0


def test_each_bad_input_class_lands_in_the_dlq_with_its_reason(kafka, fake_polygon) -> None:
    market = simulate(SimConfig(seed=8, symbols=("AAPL", "MSFT"), trades_per_day=3_000))
    srv = fake_polygon(market, rate=20_000, batch=100, malformed_every=5)
    s = make_settings(kafka.bootstrap, srv, ("AAPL", "MSFT"))
    run = start_ingest(s, _fast())
    svc = run.service
    wait_for(srv.done.is_set, 60, "tape published")
    # a few more shapes, injected straight onto the socket
    extra = {
        "not_an_object": ['{"ev":"T","sym":"AAPL"}', "[42]"],
        "bad_type": [
            '[{"ev":"T","sym":"AAPL","x":"12","i":"z1","z":3,"p":1.5,"s":10,"t":'
            + str(time.time_ns() // 1_000_000)
            + ',"q":1}]'
        ],
    }  # fmt: skip
    for frames in extra.values():
        for f in frames:
            srv.call(srv.inject, f)
    expected_trades = _identities(market)
    n_bad = sum(srv.injected.values()) + sum(len(v) for v in extra.values())
    wait_for(
        lambda: svc.stats.acked >= len(expected_trades) and svc.stats.rejected >= n_bad,
        60,
        "all routed",
    )
    health = svc.health.url
    assert httpx.get(health + "/health/live").status_code == 200
    assert httpx.get(health + "/health/ready").status_code == 200  # still running and subscribed
    metrics = httpx.get(health + "/metrics").text
    stats = run.stop()

    assert set(srv.injected) == set(BAD_FRAME_KINDS)
    dlq = consume_all(kafka.bootstrap, s.kafka.dlq_topic)
    by_reason = collections.Counter(v["reason"] for _, v in dlq)
    for kind, n in srv.injected.items():
        assert by_reason[kind] == n, (kind, by_reason)
    for kind, frames in extra.items():
        assert by_reason[kind] == len(frames)
    assert sum(by_reason.values()) == stats.rejected == n_bad
    for _, v in dlq:
        assert v["source"] == "polygon_ws" and v["raw"] and v["detail"]
        if v["reason"] != "bad_json" and v["reason"] != "not_an_object":
            assert '"bad-' in v["raw"] or '"z1"' in v["raw"]  # the offending event, verbatim
    bad_json = [v for _, v in dlq if v["reason"] == "bad_json"]
    assert all(v["raw"].startswith('[{"ev":"T"') and v["symbol"] is None for v in bad_json)
    trades = consume_all(kafka.bootstrap, s.kafka.trades_topic)
    assert {(v["symbol"], v["exchange"], v["trade_id"]) for _, v in trades} == expected_trades
    skew = float(srv.injected["clock_skew"])
    assert f'signalstack_ingest_rejected_total{{reason="clock_skew"}} {skew}' in metrics


def test_auth_failed_exits_non_zero_with_a_clear_message(kafka, fake_polygon) -> None:
    market = simulate(SimConfig(seed=2, symbols=("AAPL",), trades_per_day=500))
    srv = fake_polygon(market, refuse_auth=True)
    env = {
        **os.environ, "POLYGON_API_KEY": "not-a-key", "POLYGON_WS_URL": srv.ws_url,
        "POLYGON_REST_URL": srv.rest_url, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KAFKA_TRADES_TOPIC": "it.auth.trades", "KAFKA_DLQ_TOPIC": "it.auth.dlq",
        "MARKET_SYMBOLS": "AAPL", "INGEST_HTTP_PORT": "0", "LOG_FORMAT": "json",
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "signalstack.ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("signalstack ingest: error: Polygon refused the API key (auth_failed")
    assert "POLYGON_API_KEY" in last and "not-a-key" not in proc.stderr  # the key is never printed
    assert srv.logins == 1


def test_max_connections_backs_off_and_shows_in_metrics(kafka, fake_polygon) -> None:
    market = simulate(SimConfig(seed=3, symbols=("AAPL",), trades_per_day=2_000))
    srv = fake_polygon(market, reject_logins=2, rate=5_000)
    s = make_settings(kafka.bootstrap, srv, ("AAPL",))
    run = start_ingest(s, _fast(max_connections_backoff_s=(0.6, 0.8)))
    svc = run.service
    wait_for(lambda: svc.health is not None, 30, "health server")
    url = svc.health.url
    wait_for(lambda: svc.stats.acked > 0, 30, "trades after the back-off")
    text = httpx.get(url + "/metrics").text
    assert httpx.get(url + "/health/ready").status_code == 200
    run.stop()

    def metric(name: str) -> float:
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        return float(line.split()[1])

    assert srv.max_connections_sent == 2
    assert metric("signalstack_ingest_max_connections_total") == 2.0
    assert metric("signalstack_ingest_backoff_seconds_total") >= 1.2  # two long waits, not ms
    assert metric("signalstack_ingest_reconnects_total") == 2.0
    assert metric("signalstack_ingest_connected") == 1.0


def test_topics_follow_the_contract_and_a_mismatch_is_refused(kafka) -> None:
    from pydantic import SecretStr  # noqa: F401 - settings below need no key

    from signalstack.config import KafkaSettings

    tag = str(time.time_ns())
    ks = KafkaSettings(
        bootstrap_servers=kafka.bootstrap, trades_topic=f"c.trades.{tag}", dlq_topic=f"c.dlq.{tag}"
    )
    ensure_topics(kafka.bootstrap, trade_topics(ks, IngestSettings()))
    ensure_topics(kafka.bootstrap, trade_topics(ks, IngestSettings()))  # idempotent
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    meta = admin.list_topics(timeout=10)
    assert len(meta.topics[ks.trades_topic].partitions) == 6
    res = ConfigResource(ConfigResource.Type.TOPIC, ks.trades_topic)
    conf = admin.describe_configs([res])[res].result(timeout=10)
    assert conf["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert conf["compression.type"].value == "lz4"
    ensure_topics(kafka.bootstrap, [TopicSpec(f"c.other.{tag}", 3)])
    with pytest.raises(TopicContractError, match="3 partitions, contract says 6"):
        ensure_topics(kafka.bootstrap, [TopicSpec(f"c.other.{tag}", 6)])
