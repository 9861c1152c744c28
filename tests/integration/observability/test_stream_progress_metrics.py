"""The Spark job exports its queries' progress: after a run over the real Kafka broker, each
query's series (rates, batch duration, state rows, watermark delay, consumer lag) are set from
Spark's own StreamingQueryListener events, and the terminated queries read 0."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY
from tests.integration.spark.conftest import spark_session, topic_factory  # noqa: F401

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
    for q in ("features", "dlq"):
        assert _get("signalstack_stream_query_active", q) == 0  # available-now: terminated
        stopped = REGISTRY.get_sample_value(
            "signalstack_stream_query_terminations_total", {"query": q, "outcome": "stopped"}
        )
        assert stopped is not None and stopped >= 1
