"""Where a restart resumes, on the real broker: a trade the broker stamped before its event time
(a producer clock behind the exchange's) is still read from the tail, so the fill that starts at
the window's edge drops it instead of writing it twice."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from signalstack.config import KafkaSettings, MarketSettings, PolygonSettings, Settings
from signalstack.ingest import IngestService, IngestSettings
from signalstack.ingest.kafka_io import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration

S, MS = 1_000_000_000, 1_000_000


def _trade(sym: str, ts_ns: int, tid: str) -> bytes:
    return orjson.dumps(
        {"schema_version": 1, "symbol": sym, "ts_event": ts_ns, "price": 10.0, "size": 1,
         "exchange": 4, "conditions": [], "trade_id": tid, "sequence": 1, "tape": 3,
         "source": "polygon_ws", "ts_ingest": ts_ns}
    )  # fmt: skip


def test_a_symbol_only_skewed_into_the_window_is_resumed_without_a_duplicate(kafka) -> None:
    tag = str(time.time_ns())
    topic = f"it.resume.{tag}"
    ensure_topics(kafka.bootstrap, [TopicSpec(topic, 1)])
    cfg = IngestSettings(gap_lookback_s=300.0, resume_margin_s=60.0, http_port=0)
    last = time.time_ns() - 10 * S  # the newest acknowledged trade, produced on time
    w = last - 360 * S  # the window: lookback + margin before it
    skewed = w + 10 * S  # MSFT's only recent trade, stamped inside the window...
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    p.produce(
        topic, _trade("MSFT", skewed, "m1"), b"MSFT", timestamp=(w - 30 * S) // MS
    )  # ...produced 40 s early
    p.produce(topic, _trade("AAPL", last, "a1"), b"AAPL", timestamp=last // MS)
    assert p.flush(30) == 0
    del p

    s = Settings(
        polygon=PolygonSettings(api_key=SecretStr("k")),
        kafka=KafkaSettings(bootstrap_servers=kafka.bootstrap, trades_topic=topic),
        market=MarketSettings(symbols=("AAPL", "MSFT")),
    )
    svc = IngestService(s, cfg)
    asyncio.run(svc._resume(kafka.bootstrap))

    assert svc._resume_from is not None
    start = svc._resume_from["MSFT"]
    assert start <= skewed  # the fill covers it (nothing missed)...
    seeded = svc.dedup.current | svc.dedup.previous
    assert ("MSFT", 4, "m1") in seeded  # ... and drops it: the topic holds it
    assert svc._resume_from["AAPL"] == last - 300 * S
