"""The Spark job exports its queries' progress: after a run over the real Kafka broker, each
query's series (rates, batch duration, state rows, watermark delay, consumer lag) are set from
Spark's own StreamingQueryListener events, and the terminated queries read 0. Then the job runs
as the service does, its /metrics and probes from the one module: the real Prometheus scraping
it returns series for every Spark panel query of the dashboards."""

from __future__ import annotations

import threading
import time

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


def _get(name: str, query: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"query": query})


def test_progress_of_both_queries_is_exported(
    spark_session,  # noqa: F811
    topic_factory,  # noqa: F811
    kafka,
    tmp_path,
) -> None:
    ticks = seeded_ticks(seed=3, symbols=("AAPL", "MSFT"), minutes=8, trades_per_minute=15)
    half = len(ticks) // 2
    writer = topic_factory(2)
    writer.send([*kafka_values(ticks.iloc[:half]), (b"AAPL", b"{not json")])
    rows_before = _get("signalstack_stream_input_rows_total", "features") or 0.0
    batches_before = _get("signalstack_stream_batches_total", "dlq") or 0.0
    cfg = SparkJobConfig(
        bootstrap=kafka.bootstrap, checkpoint_dir=str(tmp_path / "cp"), trades_topic=writer.topic
    )
    engine = SparkEngine(cfg, ListSink())
    engine.spark = spark_session
    engine.run_available()  # the first batch: no watermark yet
    writer.send(kafka_values(ticks.iloc[half:]))
    engine.run_available()  # the second runs behind the first's watermark
    # The listener bus delivers the last events asynchronously: wait for them, bounded.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _get("signalstack_stream_input_rows_total", "features") or 0.0
        if (
            rows - rows_before >= len(ticks) + 1
            and _get("signalstack_stream_query_active", "dlq") == 0
        ):
            break
        time.sleep(0.2)
    assert (_get("signalstack_stream_input_rows_total", "features") or 0.0) - rows_before == len(
        ticks
    ) + 1
    assert (_get("signalstack_stream_batches_total", "dlq") or 0.0) > batches_before
    assert (_get("signalstack_stream_state_rows", "features") or 0.0) >= 2  # one per symbol
    assert _get("signalstack_stream_watermark_delay_seconds", "features") is not None
    assert _get("signalstack_stream_consumer_lag", "features") == 0.0  # everything read
    assert (_get("signalstack_stream_batch_duration_seconds_count", "features") or 0.0) >= 1
    assert _get("signalstack_stream_processed_rows_per_second", "features") is not None
    for name in ("features", "dlq"):
        assert _get("signalstack_stream_query_active", name) == 0  # available-now: terminated
        stopped = REGISTRY.get_sample_value(
            "signalstack_stream_query_terminations_total", {"query": name, "outcome": "stopped"}
        )
        assert stopped is not None and stopped >= 1


def test_the_running_job_serves_the_spark_panels(
    spark_session,  # noqa: F811
    topic_factory,  # noqa: F811
    kafka,
    prometheus: PrometheusServer,
    tmp_path,
) -> None:
    ticks = seeded_ticks(seed=4, symbols=("AAPL",), minutes=4, trades_per_minute=10)
    writer = topic_factory(1)
    writer.send(kafka_values(ticks))
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

    t = threading.Thread(target=run, name="spark-job", daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 120
        while (engine.health is None or engine.queries_active()[0] is False) and not errors:
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.2)
        assert engine.health is not None
        with httpx.Client(base_url=engine.health.url, timeout=10) as c:
            assert c.get("/health/ready").json() == {"status": "ok"}
            assert "signalstack_stream_input_rows_per_second" in c.get("/metrics").text
        prometheus.add_target(engine.health.url.removeprefix("http://"))
        spark_exprs = {
            query.expr
            for _, _, query in all_queries()
            if isinstance(query, q.PromQuery) and "signalstack_stream_" in query.expr
        }
        assert len(spark_exprs) >= 5
        pending = set(spark_exprs)
        while pending and time.monotonic() < deadline:
            for expr in list(pending):
                if prometheus.query(expr.replace("$__rate_interval", "1m")):
                    pending.discard(expr)
            time.sleep(1)
        assert not pending, f"no series for {sorted(pending)}"
    finally:
        for query in spark_session.streams.active:
            query.stop()
        t.join(60)
    assert not errors
