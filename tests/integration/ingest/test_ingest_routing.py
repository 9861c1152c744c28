"""Every WebSocket event is routed as ``validate_trade`` decides: the hot path's inline check
never lets through what the validator rejects, and rejects carry the validator's reason.

Thousands of randomly mutated Polygon events go through ``process_frame`` with a real producer on
the real broker; both topics are then read back and compared event by event.
"""

from __future__ import annotations

import random
import time
import uuid

import orjson
import pytest
from tests.integration.ingest.ingest_helpers import consume_all

from signalstack.config import KafkaSettings, MarketSettings, Settings
from signalstack.ingest import IngestService, IngestSettings
from signalstack.ingest.kafka_io import ensure_topics, producer_config, trade_topics
from signalstack.marketdata.wire import ws_trade_to_event
from signalstack.schemas.trade import InvalidTradeError, validate_trade

pytestmark = pytest.mark.integration

MUTATIONS = [
    None, 0, -1, 1, 12, 12.0, 2.5, 0.0, -3.5, "12", "", "x", True, False, [], [37], [14, 41],
    [37.0], ["a"], {}, 10**13, 1e308,
]  # fmt: skip
FIELDS = ["sym", "x", "i", "z", "p", "s", "c", "t", "q", "ev"]


def _events(n: int, rng: random.Random, rate: float) -> list[dict]:
    now_ms = time.time_ns() // 1_000_000
    out = []
    for k in range(n):
        ev = {
            "ev": "T", "sym": rng.choice(["AAPL", "MSFT"]), "x": rng.choice([4, 12]),
            "i": f"r{k}", "z": 3, "p": round(rng.uniform(10, 500), 2),
            "s": rng.choice([1, 37, 100, 250]), "c": rng.choice([None, [37], [14, 41]]),
            "t": now_ms - rng.randint(0, 5000), "q": k,
        }  # fmt: skip
        if ev["c"] is None:
            del ev["c"]
        if rng.random() < rate:
            f = rng.choice(FIELDS)
            if rng.random() < 0.15:
                ev.pop(f, None)
            else:
                v = rng.choice(MUTATIONS)
                ev[f] = v
                if f == "t" and type(v) is int and v == 1:
                    ev[f] = now_ms - 10**7  # far from the wall clock
                if f == "sym" and v == "x":
                    ev[f] = "ZZZZ"
        out.append(ev)
    return out


@pytest.mark.parametrize("rate", [0.6, 0.01], ids=["most-frames-general", "paths-mixed"])
def test_routing_matches_validate_trade_event_by_event(kafka, rate: float) -> None:
    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=kafka.bootstrap,
            trades_topic=f"r.trades.{tag}",
            dlq_topic=f"r.dlq.{tag}",
        ),
        market=MarketSettings(symbols=("AAPL", "MSFT")),
    )
    ing = IngestSettings(max_skew_s=60)
    ensure_topics(kafka.bootstrap, trade_topics(s.kafka, ing))
    svc = IngestService(s, ing)
    from confluent_kafka import Producer

    conf = producer_config(kafka.bootstrap, ing)
    conf["on_delivery"] = svc._on_delivery
    svc._producer = Producer(conf)
    rng = random.Random(1234)
    events = _events(3000, rng, rate)
    for k in range(0, len(events), 100):
        svc.process_frame(orjson.dumps(events[k : k + 100]))
    assert svc._producer.flush(60) == 0

    trades = {
        (v["symbol"], v["exchange"], v["trade_id"]): v
        for _, v in consume_all(kafka.bootstrap, s.kafka.trades_topic)
    }
    rejected: dict[bytes, list[str]] = {}
    for _, v in consume_all(kafka.bootstrap, s.kafka.dlq_topic):
        rejected.setdefault(v["raw"].encode(), []).append(v["reason"])

    n_ok = n_bad = 0
    seen: set[tuple[str, int, str]] = set()
    now = time.time_ns()
    for ev in events:
        raw = orjson.dumps(ev)
        if ev.get("ev") != "T":
            assert raw in rejected or ev.get("ev") in ("status", "Q", "A", "AM"), ev
            continue
        try:
            want = validate_trade(
                ws_trade_to_event(ev, 0),
                symbols={"AAPL", "MSFT"},
                now_ns=now,
                max_skew_ns=60 * 10**9,
            )
        except InvalidTradeError as err:
            n_bad += 1
            reason = err.reason.value
        else:
            reason = None
        if reason is not None:
            assert reason in rejected.get(raw, []), (ev, reason, rejected.get(raw))
            continue
        if want.identity in seen:
            continue  # the same identity twice after mutation: the second is a duplicate
        seen.add(want.identity)
        n_ok += 1
        got, exp = trades[want.identity], want.to_dict()
        for f in (
            "symbol",
            "ts_event",
            "exchange",
            "trade_id",
            "sequence",
            "tape",
            "conditions",
            "source",
        ):
            assert got[f] == exp[f] and type(got[f]) is type(exp[f]), (f, ev, got)
        assert got["price"] == exp["price"] and got["size"] == exp["size"], (ev, got)
        assert raw not in rejected
    assert len(trades) == n_ok
    fast, general = (
        svc.metrics.registry.get_sample_value("signalstack_ingest_frames_total", {"path": p})
        for p in ("fast", "general")
    )
    if rate > 0.5:
        assert n_ok > 1000 and n_bad > 500 and general >= 25
    else:  # 1 % of events mutated, 100 a frame: about a third of the frames are all clean
        assert n_ok > 2500 and n_bad > 5 and fast >= 5 and general >= 5, (fast, general)
