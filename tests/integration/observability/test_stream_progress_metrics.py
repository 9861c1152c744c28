"""The Spark job exports its queries' progress and serves it from the one module: run as the
service runs (processing-time trigger) over the real Kafka broker, each query's series (rates,
batch duration, state rows, watermark delay, consumer lag) are set from Spark's own
StreamingQueryListener events, /metrics and the probes answer, the real Prometheus scraping the
job returns series for every Spark panel query of the dashboards, and stopped queries read 0."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from grafana import queries as q
from grafana.dashboards import all_queries
from prometheus_client import REGISTRY
from tests.integration.spark.conftest import spark_session, topic_factory  # noqa: F401

from signalstack.devstack import PrometheusServer
from signalstack.engines.base import ListSink
from signalstack.engines.spark import SparkEngine, SparkJobConfig
from signalstack.engines.ticks import kafka_values, seeded_ticks

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]


def _get(name: str, query: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"query": query, **labels}) or 0.0


def _wait(cond: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_running_job_exports_its_progress(
    spark_session,  # noqa: F811
    topic_factory,  # noqa: F811
    kafka,
    prometheus: PrometheusServer,
    tmp_path,
) -> None:
    ticks = seeded_ticks(seed=3, symbols=("AAPL", "MSFT"), minutes=8, trades_per_minute=15)
    half = len(ticks) // 2
    writer = topic_factory(2)
    writer.send([*kafka_values(ticks.iloc[:half]), (b"AAPL", b"{not json")])
    rows_before = _get("signalstack_stream_input_rows_total", "features")
    dlq_batches = _get("signalstack_stream_batches_total", "dlq")
    stopped_before = _get(
        "signalstack_stream_query_terminations_total", "features", outcome="stopped"
    )
    cfg = SparkJobConfig(
        bootstrap=kafka.bootstrap,
        checkpoint_dir=str(tmp_path / "cp"),
        trades_topic=writer.topic,
        trigger_seconds=0.5,
    )
    engine = SparkEngine(cfg, ListSink(), http=("127.0.0.1", 0))
    engine.spark = spark_session
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as err:
            errors.append(err)

    def rows_read() -> float:
        return _get("signalstack_stream_input_rows_total", "features") - rows_before

    t = threading.Thread(target=run, name="spark-job", daemon=True)
    t.start()
    try:
        _wait(lambda: bool(errors) or rows_read() >= half + 1, "the first batch")
        assert not errors and engine.health is not None
        writer.send(kafka_values(ticks.iloc[half:]))  # behind the first batch's watermark
        _wait(lambda: rows_read() >= len(ticks) + 1, "the second batch")
        _wait(
            lambda: (
                REGISTRY.get_sample_value(
                    "signalstack_stream_watermark_delay_seconds", {"query": "features"}
                )
                is not None
            ),
            "a watermark",
        )
        assert _get("signalstack_stream_batches_total", "dlq") > dlq_batches
        assert _get("signalstack_stream_state_rows", "features") >= 2  # one per symbol
        assert _get("signalstack_stream_batch_duration_seconds_count", "features") >= 2
        assert _get("signalstack_stream_query_active", "features") == 1
        assert (
            REGISTRY.get_sample_value(
                "signalstack_stream_processed_rows_per_second", {"query": "features"}
            )
            is not None
        )
        _wait(lambda: _get("signalstack_stream_consumer_lag", "features") == 0, "no lag")

        with httpx.Client(base_url=engine.health.url, timeout=10) as c:
            assert c.get("/health/ready").json() == {"status": "ok"}
            assert "signalstack_stream_input_rows_per_second" in c.get("/metrics").text
        prometheus.add_target(engine.health.url.removeprefix("http://"))
        pending = {
            query.expr
            for _, _, query in all_queries()
            if isinstance(query, q.PromQuery) and "signalstack_stream_" in query.expr
        }
        assert len(pending) >= 5

        def scraped() -> bool:
            for expr in list(pending):
                if prometheus.query(expr.replace("$__rate_interval", "1m")):
                    pending.discard(expr)
            return not pending

        _wait(scraped, f"series for {sorted(pending)}", timeout=60)
    finally:
        for query in spark_session.streams.active:
            query.stop()
        t.join(60)
    assert not errors
    _wait(lambda: _get("signalstack_stream_query_active", "features") == 0, "terminated")
    assert (
        _get("signalstack_stream_query_terminations_total", "features", outcome="stopped")
        > stopped_before
    )
