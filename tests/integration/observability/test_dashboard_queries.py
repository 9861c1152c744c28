"""Acceptance of the dashboards: every SQL panel query runs against the real TimescaleDB filled
by the pipeline from simulator data and returns rows of the shape its panel expects; every
PromQL query is valid and returns series from the real Prometheus scraping the running
services.

The pipeline, in this process: the fake Polygon server publishes a simulated session; the
ingest (WebSocket) produces it to the real Kafka broker and the sink stores it; a backfill over
the fake REST API heals the same session (trades, bars, features, backfill_runs/ranges);
predictions go through Kafka and the sink; anomaly scores and PSI rows through the store;
serving answers a few requests with tiny trained models. Prometheus scrapes the ingest, the
sink, serving and the batch jobs' registries (what a Pushgateway would re-expose). The Spark
job's panels are checked against its own endpoint in test_stream_progress_metrics.py.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pandas as pd
import psycopg
import pytest
import uvicorn
from grafana import queries as q
from grafana.dashboards import all_queries
from pydantic import SecretStr
from tests.integration.ingest.ingest_helpers import RunningIngest, start_ingest, wait_for
from tests.integration.sink.sink_helpers import produce

from signalstack.backfill import cli as backfill_cli
from signalstack.backfill.metrics import registry_for
from signalstack.config import (
    IngestSettings,
    KafkaSettings,
    PolygonSettings,
    ServingSettings,
    Settings,
    SinkSettings,
    StoreSettings,
    TimescaleSettings,
)
from signalstack.devstack import PrometheusServer
from signalstack.drift.metrics import DriftMetrics
from signalstack.drift.psi import psi, reference_distribution
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer
from signalstack.marketdata.fake_tape import SimTape
from signalstack.marketdata.simulator import SimConfig, simulate
from signalstack.observability import HealthServer
from signalstack.sink import KafkaSink
from signalstack.store.timescale import TimescaleStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = dt.date(2025, 11, 20)
SYMBOLS = ("AAPL", "MSFT")
KEY = "test-key"
SPARK_QUERIES = {id(v) for k, v in vars(q).items() if k.startswith(("SPARK_", "STREAM_"))}


@dataclass
class Pipeline:
    dsn: str
    prometheus: PrometheusServer
    start: dt.datetime
    end: dt.datetime


def _settings(dsn: str, bootstrap: str, srv: FakePolygonServer) -> Settings:
    u = urlsplit(dsn)
    tag = uuid.uuid4().hex[:8]
    return Settings(
        polygon=PolygonSettings(
            api_key=SecretStr(KEY), ws_url=srv.ws_url, rest_url=srv.rest_url, rest_rate_per_s=2000
        ),
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            trades_topic=f"obs.trades.{tag}",
            dlq_topic=f"obs.trades.dlq.{tag}",
            features_topic=f"obs.features.{tag}",
            predictions_topic=f"obs.predictions.{tag}",
        ),
        timescale=TimescaleSettings(
            host=u.hostname,
            port=u.port,
            user=u.username,
            password=u.password,
            database=u.path.lstrip("/"),
        ),
        store=StoreSettings(type="timescale"),
        serving=ServingSettings(),
    )


def _serve(model_dir: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    from signalstack.serving.app import create_app
    from signalstack.serving.metrics import ServingMetrics
    from signalstack.serving.repository import DirectorySource, ModelRepository

    repo = ModelRepository(DirectorySource(model_dir), interval_s=30, metrics=ServingMetrics())
    app = create_app(Settings(), repo)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    t = threading.Thread(target=server.run, name="serving", daemon=True)
    t.start()
    wait_for(lambda: server.started, 60, "serving started")
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, t, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def pipeline(kafka: Any, timescale: Any, prometheus: PrometheusServer) -> Iterator[Pipeline]:
    from tests.unit.serving.serving_helpers import copy_bundles

    market = simulate(SimConfig(seed=21, symbols=SYMBOLS, date=DAY, trades_per_day=2_000))
    srv = FakePolygonServer(
        SimTape(market), FakeConfig(api_keys=frozenset({KEY}), rate=20_000, batch=100)
    ).start()
    rest = FakePolygonServer(
        SimTape(market), FakeConfig(api_keys=frozenset({KEY}), restamp=False)
    ).start()
    stack: list[Any] = []
    with timescale.database_with_timescale() as dsn:
        settings = _settings(dsn, kafka.bootstrap, srv)
        store = TimescaleStore(dsn)
        store.migrate()
        stack.append(store.close)
        try:
            _create_topics(kafka.bootstrap, settings)
            # ingest (WebSocket → Kafka) and the sink (Kafka → TimescaleDB), as services
            run: RunningIngest = start_ingest(
                settings, IngestSettings(http_port=0, gap_fill=False), symbols=SYMBOLS
            )
            stack.append(run.stop)
            wait_for(lambda: run.service.topics_ready, 60, "the ingest's topics")
            sink = KafkaSink(
                settings, store, SinkSettings(http_host="127.0.0.1", http_port=0, max_batch=500)
            )
            stop = threading.Event()
            t = threading.Thread(target=sink.run, args=(stop,), name="sink", daemon=True)
            t.start()
            stack.append(lambda: (stop.set(), t.join(60)))
            wait_for(lambda: sink.http is not None, 30, "sink endpoints")
            # a backfill over the fake REST API heals the session (trades, bars, features)
            rest_settings = settings.model_copy(
                update={"polygon": settings.polygon.model_copy(update={"rest_url": rest.rest_url})}
            )
            result = backfill_cli.run(
                rest_settings, symbols=",".join(SYMBOLS), start=DAY.isoformat(),
                end=DAY.isoformat(), now=pd.Timestamp(DAY + dt.timedelta(days=2), tz="UTC"),
            )  # fmt: skip
            assert result.healed
            day_end = (DAY + dt.timedelta(1)).isoformat()
            feats = store.training_frame(list(SYMBOLS), DAY.isoformat(), day_end, day_end)
            assert len(feats) > 100
            # predictions through Kafka and the sink; one bad message reaches the DLQ
            rows = feats[feats["symbol"] == SYMBOLS[0]].reset_index(drop=True)
            preds = [
                (SYMBOLS[0], orjson.dumps({
                    "symbol": SYMBOLS[0], "ts": r.ts.isoformat(), "model_name": "direction",
                    "model_version": "1", "value": float(0.3 + 0.4 * (i % 2)),
                    "label": "up" if i % 2 else "down",
                }))
                for i, r in enumerate(rows.itertuples())
            ]  # fmt: skip
            produce(kafka.bootstrap, settings.kafka.predictions_topic, preds)
            produce(kafka.bootstrap, settings.kafka.trades_topic, [(SYMBOLS[0], b"{not json")])
            # anomaly scores and drift rows through the store
            scores = np.linspace(0.3, 0.8, len(rows))
            store.write_anomalies(
                pd.DataFrame({
                    "symbol": SYMBOLS[0], "ts": rows["ts"], "model_version": "1",
                    "score": scores, "is_anomaly": scores > 0.75,
                })
            )  # fmt: skip
            half = len(rows) // 2
            x = rows[list(FEATURE_COLUMNS)].to_numpy(dtype=float)
            ref = reference_distribution(x[:half], list(FEATURE_COLUMNS))
            values = psi(ref, x[half:])
            store.write_drift(
                pd.DataFrame({
                    "feature": list(values), "window_start": rows["ts"].iloc[half],
                    "window_end": rows["ts"].iloc[-1], "psi": list(values.values()),
                    "reference": "first half", "feature_set_version": 1,
                })
            )  # fmt: skip
            # serving with tiny models: a few requests
            torch_threads()
            model_dir = copy_bundles(_tmp() / "models")
            server, st, serving = _serve(model_dir)
            stack.append(lambda: (setattr(server, "should_exit", True), st.join(30)))
            body = {"features": {c: float(rows[c].iloc[-1]) for c in FEATURE_COLUMNS}}
            with httpx.Client(base_url=f"http://{serving}", timeout=30) as c:
                wait_for(lambda: c.get("/v2/health/ready").status_code == 200, 90, "models")
                for _ in range(20):
                    for name in ("regime", "anomaly"):
                        assert c.post(f"/predict/{name}", json=body).status_code == 200
            # the batch jobs' registries, as a Pushgateway would expose them
            drift = DriftMetrics()
            for name, value in values.items():
                drift.psi.labels("regime", name).set(value)
            drift.psi_max.labels("regime").set(max(values.values()))
            drift.alert_threshold.set(0.25)
            jobs = [
                HealthServer("127.0.0.1", 0, drift.registry).start(),
                HealthServer("127.0.0.1", 0, registry_for(result)).start(),
            ]
            stack.extend(j.stop for j in jobs)
            targets = [
                urlsplit(run.service.health.url).netloc, urlsplit(sink.http.url).netloc, serving,
                *(urlsplit(j.url).netloc for j in jobs),
            ]  # fmt: skip
            for target in targets:
                prometheus.add_target(target)
            wait_for(
                lambda: _count(dsn, "SELECT count(*) FROM predictions") == len(preds), 60,
                "predictions stored",
            )  # fmt: skip
            wait_for(lambda: _count(dsn, "SELECT count(*) FROM dlq") >= 1, 60, "the DLQ row")
            end = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            yield Pipeline(dsn, prometheus, dt.datetime(2025, 11, 19, tzinfo=dt.UTC), end)
        finally:
            for undo in reversed(stack):
                undo()
            srv.stop()
            rest.stop()


def _create_topics(bootstrap: str, settings: Settings) -> None:
    """Before the sink subscribes (a topic created later is seen only at its next metadata
    refresh, minutes away)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    k = settings.kafka
    names = (k.features_topic, k.predictions_topic)  # the ingest creates its own
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        f.result(30)


def torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


def _tmp() -> Any:
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="obs-"))


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def expand(sql: str, start: dt.datetime, end: dt.datetime, symbol: str) -> str:
    """Grafana's PostgreSQL macros and the dashboard variable, as Grafana expands them."""
    span = (end - start).total_seconds()
    interval_ms = max(1000, int(span * 1000 / 1000))  # ~1000 points over the range
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
        sql,
    )
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$symbol", symbol)
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


def _is_number(v: Any) -> bool:
    return v is None or isinstance(v, int | float | Decimal)


SQL = [(d, t, query) for d, t, query in all_queries() if isinstance(query, q.SqlQuery)]
PROM = [
    (d, t, query)
    for d, t, query in all_queries()
    if isinstance(query, q.PromQuery) and id(query) not in SPARK_QUERIES
]


@pytest.mark.parametrize(("board", "title", "query"), SQL, ids=[f"{d}:{t}" for d, t, _ in SQL])
def test_sql_panel_query(pipeline: Pipeline, board: str, title: str, query: q.SqlQuery) -> None:
    sql = expand(query.sql, pipeline.start, pipeline.end, SYMBOLS[0])
    with psycopg.connect(pipeline.dsn) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        names = tuple(c.name for c in cur.description or ())
        rows = cur.fetchall()
    assert names == query.columns, f"{title}: columns {names}"
    assert rows, f"{title}: no rows"
    for row in rows:
        assert isinstance(row[0], dt.datetime) and row[0].tzinfo is not None, row
    if query.format == "time_series":
        times = [r[0] for r in rows]
        assert times == sorted(times), f"{title}: not in time order"
        long = "metric" in names  # (time, metric, value): one series per metric
        for row in rows:
            values = row[2:] if long else row[1:]
            assert all(_is_number(v) for v in values), f"{title}: non-numeric {row}"
            assert any(v is not None for v in values), f"{title}: an empty row {row}"


def test_promql_panel_queries_return_series(pipeline: Pipeline) -> None:
    pending = {query.expr: (board, title) for board, title, query in PROM}
    deadline = time.monotonic() + 90
    while pending and time.monotonic() < deadline:
        for expr in list(pending):
            if pipeline.prometheus.query(expr.replace("$__rate_interval", "1m")):
                del pending[expr]
        if pending:
            time.sleep(2)
    assert not pending, f"no series for {sorted(pending.values())}"


def test_spark_panel_queries_are_valid(pipeline: Pipeline) -> None:
    """The Spark job is not running here: its queries must still parse and evaluate."""
    for _, _, query in all_queries():
        if id(query) in SPARK_QUERIES:
            assert isinstance(query, q.PromQuery)
            pipeline.prometheus.query(query.expr.replace("$__rate_interval", "1m"))
