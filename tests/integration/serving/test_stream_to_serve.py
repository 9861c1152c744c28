"""The embedded default across processes: ``signalstack stream --engine local`` (trades from a
real Kafka topic) writes its feature rows to the feature log (``STREAM_FEATURE_LOG_DIR``), and
a separate ``signalstack serve`` with ``SERVING_FEED=local`` predicts them and streams the
predictions over the WebSocket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from tests.integration.serving.serve_process import free_port, start_serve, stop, wait_ready
from tests.unit.serving.serving_helpers import copy_bundles
from websockets.sync.client import connect

from signalstack.devstack import KafkaServer
from signalstack.engines.ticks import kafka_values, seeded_ticks, sentinel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 120.0


def test_a_stream_process_feeds_a_separate_serve_process(
    kafka: KafkaServer, tmp_path: Path
) -> None:
    topic = f"market.trades.test.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    feature_log = tmp_path / "feature-log"
    port = free_port()
    serve_log, stream_log = tmp_path / "serve.log", tmp_path / "stream.log"
    serve = start_serve(
        sys.executable, copy_bundles(tmp_path / "models"), tmp_path / "serve.duckdb", port,
        serve_log, SERVING_FEED="local", SERVING_FEED_DIR=str(feature_log),
    )  # fmt: skip
    stream: subprocess.Popen[bytes] | None = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(serve, url, serve_log)
        with connect(url.replace("http://", "ws://") + "/ws/predictions?symbols=*") as ws:
            ack = json.loads(ws.recv(timeout=30))["subscribed"]
            assert ack["feed"] == f"local feature log {feature_log}"
            env = {
                **{k: v for k, v in os.environ.items()
                   if not k.startswith(("STREAM_", "STORE_", "KAFKA_", "SERVING_"))},
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
                "KAFKA_TRADES_TOPIC": topic,
                "STORE_TYPE": "duckdb",
                "STORE_DUCKDB_PATH": str(tmp_path / "stream.duckdb"),
                "STREAM_FEATURE_LOG_DIR": str(feature_log),
                "LOG_FORMAT": "console",
            }  # fmt: skip
            with stream_log.open("wb") as out:
                stream = subprocess.Popen(
                    [sys.executable, "-m", "signalstack.cli", "stream", "--engine", "local"],
                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            symbols = ("AAPL", "MSFT")
            ticks = seeded_ticks(seed=3, symbols=symbols, minutes=40, trades_per_minute=20,
                                 late_frac=0.0)  # fmt: skip
            tail = sentinel(list(symbols), "2024-03-05 17:00:00", 1)
            producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
            for k, v in kafka_values(pd.concat([ticks, tail], ignore_index=True)):
                producer.produce(topic, key=k, value=v)
            assert producer.flush(30) == 0
            deadline = time.monotonic() + WAIT_S
            while True:
                assert stream.poll() is None, f"stream exited:\n{stream_log.read_text()}"
                assert time.monotonic() < deadline, (
                    f"no prediction\n--- stream:\n{stream_log.read_text()[-3000:]}\n"
                    f"--- serve:\n{serve_log.read_text()[-3000:]}"
                )
                try:
                    message = json.loads(ws.recv(timeout=2))
                except TimeoutError:
                    continue
                break
            assert message["symbol"] in symbols
            assert message["model_name"] in ("regime", "direction", "anomaly")
            assert any(feature_log.glob("*.jsonl")), "the engine wrote no feature log file"
    finally:
        if stream is not None:
            stop(stream)
        stop(serve)
