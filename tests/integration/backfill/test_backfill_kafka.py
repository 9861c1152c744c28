"""``--sink kafka`` on the real Kafka broker and TimescaleDB: backfilled REST trades reach
``market.trades`` (schema-valid, source ``polygon_rest``, keyed by symbol) and end as the same
trades, bars and features as ``--sink db``; the live stream engine, whose watermark is long past
them, sends none of them to the DLQ; running the backfill again produces and stores nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pandas as pd
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from signalstack.backfill.kafka_sink import TradeProducer
from signalstack.backfill.run import BackfillOptions, BackfillRunner
from signalstack.config import IngestSettings
from signalstack.engines.kafka_io import kafka_batches
from signalstack.engines.local import LocalEngine
from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer, SimTape
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.marketdata.simulator import SimConfig, simulate
from signalstack.schemas.trade import check_trade
from signalstack.store.base import Store
from signalstack.store.duckdb import DuckDBStore
from signalstack.store.timescale import TimescaleStore

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 3, 12)
SYMBOLS = ("AAPL", "MSFT")
KEY = "backfill-kafka-key"
ET = "America/New_York"
LO = pd.Timestamp(DAY).tz_localize(ET).tz_convert("UTC")
HI = LO + pd.Timedelta(days=1)


def client(srv: FakePolygonServer) -> Callable[[object], PolygonRestClient]:
    def make(transport: object) -> PolygonRestClient:
        return PolygonRestClient(
            srv.rest_url, KEY, rate_per_s=10_000, backoff_base=0.001, transport=transport,  # type: ignore[arg-type]
        )  # fmt: skip

    return make


def opts(**kw: object) -> BackfillOptions:
    base: dict[str, object] = {"symbols": SYMBOLS, "start": DAY, "end": DAY, "page_limit": 500}
    return BackfillOptions(**{**base, **kw})  # type: ignore[arg-type]


def contents(store: Store) -> dict[str, pd.DataFrame]:
    trades = store.trades(list(SYMBOLS), LO, HI).drop(columns=["ts_ingest"])
    return {
        "trades": trades.reset_index(drop=True),
        "bars": store.bars(list(SYMBOLS), LO, HI).reset_index(drop=True),
        "features": store.training_frame(list(SYMBOLS), LO, HI, HI).reset_index(drop=True),
    }


def messages(bootstrap: str, topic: str, expect: int) -> list[tuple[str, dict[str, object]]]:
    """The topic's messages, (key, decoded value): read until ``expect`` have come (bounded:
    the group's assignment may take seconds on a loaded machine), then until two empty polls
    (so a message more than expected would be seen)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    c.subscribe([topic])
    out: list[tuple[str, dict[str, object]]] = []
    polls, idle = 0, 0
    try:
        while polls < 240 and (len(out) < expect or idle < 2):
            batch = c.consume(num_messages=10_000, timeout=0.5)
            polls += 1
            idle = 0 if batch else idle + 1
            for m in batch:
                assert m.error() is None, m.error()
                out.append(((m.key() or b"").decode(), orjson.loads(m.value() or b"")))
    finally:
        c.close()
    return out


class LiveSink:
    """The live engine's sink: keeps what it is given (bars and features are not compared)."""

    def __init__(self) -> None:
        self.dlq: list[Any] = []

    def write_bars(self, df: pd.DataFrame) -> int:
        return len(df)

    def write_features(self, df: pd.DataFrame) -> int:
        return len(df)

    def write_dlq(self, records: Iterable[Any]) -> int:
        recs = list(records)
        self.dlq += recs
        return len(recs)


def test_kafka_sink_equals_db_sink_and_the_live_engine_dlqs_nothing(
    kafka: object, timescale_db: object, tmp_path: object
) -> None:
    bootstrap = kafka.bootstrap  # type: ignore[attr-defined]
    topic = f"trades-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(topic, num_partitions=6, replication_factor=1)]
    ).values():
        f.result(30)
    market = simulate(SimConfig(seed=21, symbols=SYMBOLS, date=DAY, trades_per_day=2_000))
    cfg = FakeConfig(api_keys=frozenset({KEY}), restamp=False)
    srv = FakePolygonServer(SimTape(market), cfg).start()
    store = TimescaleStore(timescale_db.dsn)  # type: ignore[attr-defined]
    ref = DuckDBStore(f"{tmp_path}/ref.duckdb")
    try:
        store.migrate()
        ref.migrate()

        def producer() -> TradeProducer:
            return TradeProducer(bootstrap, topic, IngestSettings())

        runner = BackfillRunner(store, client(srv), producer_factory=producer)
        first = runner.start(opts(sink="kafka", detect_gaps=True))
        assert first.status == "ok" and first.healed, first.summary()
        n = first.stats.trades_stored
        assert n > 1000 and first.stats.produced == n

        assert BackfillRunner(ref, client(srv)).start(opts(detect_gaps=True)).status == "ok"
        want, got = contents(ref), contents(store)
        for k in want:
            pd.testing.assert_frame_equal(got[k], want[k], obj=k)

        # the topic holds exactly the stored trades, schema-valid, keyed by symbol
        msgs = messages(bootstrap, topic, n)
        assert len(msgs) == n
        for key, ev in msgs:
            check_trade(ev)
            assert ev["source"] == "polygon_rest" and ev["symbol"] == key
        ids = {(ev["symbol"], ev["exchange"], ev["trade_id"]) for _, ev in msgs}
        assert len(ids) == n

        # the live engine has long passed these minutes: it consumes them (its own Kafka
        # consumer) and counts them as backfill history; nothing goes to its DLQ
        live = LiveSink()
        engine = LocalEngine(live)
        later = want["trades"].iloc[[0]].assign(
            ts_event=pd.Timestamp(f"{DAY + dt.timedelta(days=1)} 15:00", tz="UTC").value,
            trade_id="live-1", source="polygon_ws", ts_ingest=0,
        )  # fmt: skip
        engine.process(later)  # the watermark moves a day past the backfilled minutes
        group = f"live-{uuid.uuid4().hex[:6]}"
        seen = 0  # the engine's own consumer, until it has every message (bounded: 120 s idle)
        for batch in kafka_batches(bootstrap, topic, group_id=group, idle_batches=240):
            engine.process(batch)
            seen += len(batch)
            if seen >= n:
                break
        assert engine.stats.backfill_history == n and engine.stats.late == 0
        assert live.dlq == []
        # a live print that late still goes to the DLQ
        engine.process(later.assign(ts_event=LO.value + 1, trade_id="live-late"))
        assert engine.stats.late == 1 and [r.reason for r in live.dlq] == ["late"]

        # the same backfill again: no gap; a forced reload fetches all, produces and stores none
        again = runner.start(opts(sink="kafka", detect_gaps=True))
        assert again.status == "ok" and again.stats.ranges == 0 and again.stats.produced == 0
        full = runner.start(opts(sink="kafka", detect_gaps=False))
        assert full.status == "ok" and full.stats.trades_fetched >= n
        assert full.stats.produced == 0 and full.stats.trades_stored == 0
        assert len(messages(bootstrap, topic, n)) == n
        for k, v in contents(store).items():
            pd.testing.assert_frame_equal(v, want[k], obj=k)
    finally:
        store.close()
        ref.close()
        srv.stop()


def test_cli_sink_kafka_produces_what_it_stores(kafka: object, tmp_path: object) -> None:
    """``signalstack backfill --sink kafka`` as a user runs it: Kafka from KAFKA_* settings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bootstrap = kafka.bootstrap  # type: ignore[attr-defined]
    topic = f"trades-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(topic, num_partitions=6, replication_factor=1)]
    ).values():
        f.result(30)
    market = simulate(SimConfig(seed=22, symbols=("AAPL",), date=DAY, trades_per_day=1_000))
    srv = FakePolygonServer(SimTape(market), FakeConfig(api_keys=frozenset({KEY}), restamp=False))
    srv.start()
    path = f"{tmp_path}/cli.duckdb"
    env = {
        **os.environ, "STORE_TYPE": "duckdb", "STORE_DUCKDB_PATH": path,
        "POLYGON_REST_URL": srv.rest_url, "POLYGON_API_KEY": KEY, "LOG_FORMAT": "json",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TRADES_TOPIC": topic,
    }  # fmt: skip
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "signalstack.cli", "backfill", "--symbols", "AAPL",
             "--start", str(DAY), "--end", str(DAY), "--source", "polygon", "--sink", "kafka",
             "--detect-gaps"],
            env=env, cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
        n = summary["trades_stored"]
        assert summary["status"] == "ok" and n > 300 and summary["produced"] == n
        msgs = messages(bootstrap, topic, n)
        assert len(msgs) == n and {k for k, _ in msgs} == {"AAPL"}
    finally:
        srv.stop()
