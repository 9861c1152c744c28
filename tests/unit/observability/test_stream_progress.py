"""Spark streaming progress → the stream job's metrics (engines/metrics.py): one
StreamingQueryProgress, in the JSON shape Spark 4.0 reports, sets every series of its query."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prometheus_client import REGISTRY

from signalstack.engines import metrics
from signalstack.engines.spark import query_label

PROGRESS: dict[str, Any] = {
    "id": "8c6d1c4e-8e4c-4a55-a5b0-0c3f4f0c1a11",
    "runId": "3e0c5b8c-0d0f-4bb1-8f6e-5e6f9a2f7d22",
    "name": "signalstack_stream_features",
    "timestamp": "2026-03-05T15:00:10.000Z",
    "batchId": 7,
    "batchDuration": 1250,
    "numInputRows": 600,
    "inputRowsPerSecond": 480.0,
    "processedRowsPerSecond": 520.5,
    "durationMs": {"addBatch": 1100, "triggerExecution": 1250},
    "eventTime": {
        "avg": "2026-03-05T14:59:40.000Z",
        "max": "2026-03-05T15:00:05.000Z",
        "min": "2026-03-05T14:59:10.000Z",
        "watermark": "2026-03-05T15:00:00.000Z",
    },
    "stateOperators": [
        {"operatorName": "applyInPandasWithState", "numRowsTotal": 3, "memoryUsedBytes": 4096},
        {"operatorName": "other", "numRowsTotal": 2, "memoryUsedBytes": 1024},
    ],
    "sources": [
        {
            "description": "KafkaV2[Subscribe[market.trades]]",
            "startOffset": {"market.trades": {"0": 10, "1": 10, "2": 10}},
            "endOffset": {"market.trades": {"0": 210, "1": 210, "2": 210}},
            "latestOffset": {"market.trades": {"0": 250, "1": 240, "2": 230}},
            "numInputRows": 600,
            "metrics": {
                "avgOffsetsBehindLatest": "30.0",
                "maxOffsetsBehindLatest": "40",
                "minOffsetsBehindLatest": "20",
            },
        }
    ],
    "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
}


def _value(name: str, query: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"query": query})


@pytest.mark.parametrize("query", ["features_unit"])
def test_progress_sets_every_series(query: str) -> None:
    before_batches = _value("signalstack_stream_batches_total", query) or 0.0
    metrics.record_progress(query, PROGRESS)
    assert _value("signalstack_stream_batches_total", query) == before_batches + 1
    assert _value("signalstack_stream_input_rows_total", query) == 600
    assert _value("signalstack_stream_input_rows_per_second", query) == 480.0
    assert _value("signalstack_stream_processed_rows_per_second", query) == 520.5
    assert _value("signalstack_stream_batch_duration_seconds_sum", query) == 1.25
    assert _value("signalstack_stream_state_rows", query) == 5
    assert _value("signalstack_stream_state_memory_bytes", query) == 5120
    assert _value("signalstack_stream_watermark_delay_seconds", query) == 10.0
    assert _value("signalstack_stream_consumer_lag", query) == 90.0  # 30 on average × 3
    assert _value("signalstack_stream_last_progress_timestamp_seconds", query) == 1772722810.0


def test_no_watermark_yet_and_no_state_leave_those_series_unset() -> None:
    p = copy.deepcopy(PROGRESS)
    p["eventTime"] = {"watermark": "1970-01-01T00:00:00.000Z"}
    p["stateOperators"] = []
    p["sources"][0]["metrics"] = {}
    p["inputRowsPerSecond"] = float("nan")
    metrics.record_progress("dlq_unit", p)
    assert _value("signalstack_stream_watermark_delay_seconds", "dlq_unit") is None
    assert _value("signalstack_stream_state_rows", "dlq_unit") is None
    assert _value("signalstack_stream_consumer_lag", "dlq_unit") is None
    assert _value("signalstack_stream_input_rows_per_second", "dlq_unit") is None
    assert _value("signalstack_stream_batches_total", "dlq_unit") == 1


def test_started_and_terminated_queries() -> None:
    metrics.query_started("q_unit")
    assert _value("signalstack_stream_query_active", "q_unit") == 1
    metrics.query_terminated("q_unit", failed=True)
    assert _value("signalstack_stream_query_active", "q_unit") == 0
    assert (
        REGISTRY.get_sample_value(
            "signalstack_stream_query_terminations_total", {"query": "q_unit", "outcome": "failed"}
        )
        == 1
    )


def test_query_label_is_the_short_name() -> None:
    assert query_label("signalstack_stream_features", "signalstack-stream") == "features"
    assert query_label("signalstack_stream_dlq", "signalstack-stream") == "dlq"
    assert query_label(None, "signalstack-stream") == "unnamed"


def test_an_idle_trigger_moves_the_progress_clock() -> None:
    metrics.query_idle("idle_unit", "2026-03-05T21:00:00.000Z")
    assert _value("signalstack_stream_last_progress_timestamp_seconds", "idle_unit") == 1772744400.0
