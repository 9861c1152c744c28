"""Helpers for the ingest integration tests (real Kafka broker, fake Polygon server)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import SecretStr

from signalstack.config import KafkaSettings, MarketSettings, PolygonSettings, Settings
from signalstack.ingest import IngestService, IngestSettings, IngestStats
from signalstack.marketdata.fake_polygon import FakePolygonServer


def make_settings(
    bootstrap: str, srv: FakePolygonServer, symbols: tuple[str, ...], key: str = "test-key"
) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        polygon=PolygonSettings(
            api_key=SecretStr(key), ws_url=srv.ws_url, rest_url=srv.rest_url, rest_rate_per_s=2000
        ),
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            trades_topic=f"it.trades.{tag}",
            dlq_topic=f"it.trades.dlq.{tag}",
        ),
        market=MarketSettings(symbols=symbols),
    )


@dataclass
class RunningIngest:
    service: IngestService
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop | None = None
    stop_event: asyncio.Event | None = None
    result: IngestStats | None = None
    error: BaseException | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout: float = 60.0) -> IngestStats:
        assert self.loop is not None and self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout)
        if self.error:
            raise self.error
        assert self.result is not None
        return self.result


def start_ingest(settings: Settings, ingest: IngestSettings, **kw: Any) -> RunningIngest:
    svc = IngestService(settings, ingest, **kw)
    run = RunningIngest(svc, threading.Thread())

    def main() -> None:
        async def body() -> None:
            run.loop = asyncio.get_running_loop()
            run.stop_event = asyncio.Event()
            run.started.set()
            run.result = await svc.run(run.stop_event)

        try:
            asyncio.run(body())
        except BaseException as err:
            run.error = err
            run.started.set()

    run.thread = threading.Thread(target=main, name="ingest", daemon=True)
    run.thread.start()
    run.started.wait(30)
    return run


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def consume_all(
    bootstrap: str, topic: str, timeout: float = 60.0
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every message of ``topic`` (all partitions, from the start to the current end)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        ends = {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
        c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        got: dict[int, int] = dict.fromkeys(ends, 0)
        out: list[tuple[bytes | None, dict[str, Any]]] = []
        t0 = time.time()
        while any(got[p] < ends[p] for p in ends) and time.time() - t0 < timeout:
            for m in c.consume(10_000, 0.5):
                if m.error():
                    continue
                got[m.partition()] += 1
                out.append((m.key(), orjson.loads(m.value())))
        return out
    finally:
        c.close()


def records_in_topic(bootstrap: str, topic: str) -> int:
    """Records in every partition of ``topic`` (0 while it does not exist yet)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "it-count"})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or not md.partitions:
            return 0
        total = 0
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    except KafkaException:  # a partition without a leader yet (the topic is brand new)
        return 0
    finally:
        c.close()
