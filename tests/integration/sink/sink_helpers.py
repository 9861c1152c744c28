"""Helpers for the sink integration tests (real Kafka broker, real TimescaleDB)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import httpx
import orjson
import pandas as pd
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from signalstack.config import KafkaSettings, Settings, StoreSettings, TimescaleSettings
from signalstack.schemas.trade import SCHEMA_VERSION
from signalstack.sink import SinkSettings, run
from signalstack.store.synthetic import synthetic_trades

DUPLICATES = (
    "SELECT count(*) FROM (SELECT 1 FROM trades GROUP BY symbol, exchange, trade_id, "
    "ts_event_ns HAVING count(*) > 1) d"
)


def make_topics(bootstrap: str) -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = (f"trades-{suffix}", f"features-{suffix}", f"predictions-{suffix}")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=3, replication_factor=1) for n in names]
    )
    for f in futures.values():
        f.result(30)
    return names


def make_settings(bootstrap: str, dsn: str, topics: tuple[str, str, str]) -> Settings:
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            trades_topic=topics[0],
            features_topic=topics[1],
            predictions_topic=topics[2],
        ),
        timescale=TimescaleSettings(
            host=u.hostname,
            port=u.port,
            user=u.username,
            password=u.password,
            database=u.path.lstrip("/"),
        ),
        store=StoreSettings(type="timescale"),
    )


def produce(
    bootstrap: str, topic: str, values: list[tuple[str, bytes]], rate: float | None = None
) -> None:
    """Produce ``values`` (at about ``rate`` messages/s if given; the producer's queue holds
    what a broker that is down cannot take), then flush."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    t0 = time.monotonic()
    for i, (key, value) in enumerate(values):
        ahead = 0.0 if rate is None else t0 + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        while True:
            try:
                p.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(120) == 0


def trade_messages(n: int, seed: int) -> list[tuple[str, bytes]]:
    # Recent timestamps: the sink applies the 7-day retention fallback at start-up.
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)
    df = synthetic_trades(n, seed=seed, id_prefix=f"s{seed}-", start=start, span_s=3000)
    out = []
    for row in df.to_dict("records"):
        row["schema_version"] = SCHEMA_VERSION
        row["tape"] = (
            None if row["tape"] is None or row["tape"] != row["tape"] else int(row["tape"])
        )
        out.append((row["symbol"], orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)))
    return out


def log_end(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)
        )
    finally:
        c.close()


def count_rows(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        return sum(max(0, tp.offset) for tp in parts)
    finally:
        c.close()


def start_sink(
    settings: Settings, config: SinkSettings
) -> tuple[threading.Thread, threading.Event]:
    """``run`` in a thread (same process); set the event to stop it."""
    stop = threading.Event()
    t = threading.Thread(target=run, args=(settings,), kwargs={"config": config, "stop": stop})
    t.start()
    return t, stop


def run_capturing(settings: Settings, config: SinkSettings, errors: list[BaseException]):
    stop = threading.Event()
    t = start_capturing(lambda: run(settings, config=config, stop=stop), errors)
    return t, stop


def start_capturing(body: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    """Run ``body`` (a sink's run) on a thread; how it stopped goes to ``errors``."""

    def target() -> None:
        try:
            body()
        except BaseException as e:  # the test inspects how the sink stopped
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()
    return t


class FakeClock:
    """A clock the test moves: ``time.monotonic()`` on a machine booted ``now`` seconds ago."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class HealthPoller:
    """Polls the sink's /health/live and /health/ready from its own thread, recording
    (monotonic time, live status or the error, ready status or the error)."""

    def __init__(self, port: int, every_s: float = 0.1, timeout_s: float = 5.0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.every_s, self.timeout_s = every_s, timeout_s
        self.samples: list[tuple[float, int | str, int | str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-poller", daemon=True)

    def _get(self, client: httpx.Client, path: str) -> int | str:
        try:
            return client.get(self.base + path).status_code
        except httpx.HTTPError as e:
            return repr(e)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                t = time.monotonic()
                self.samples.append(
                    (t, self._get(client, "/health/live"), self._get(client, "/health/ready"))
                )
                self._stop.wait(self.every_s)

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def ready_since(self, t: float) -> list[int | str]:
        return [r for at, _, r in self.samples if at >= t]

    def last_ready(self) -> int | str | None:
        return self.samples[-1][2] if self.samples else None


def consumer_lag(topic: str) -> float | None:
    """The sink's lag gauge for ``topic`` (the sink runs in this process)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("signalstack_sink_consumer_lag", {"topic": topic})
