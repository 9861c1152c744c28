"""The cluster's feed on a real Kafka broker: feature rows produced to a ``market.features``
topic (the stream job's values) → the API's own consumer group → predictions on the
WebSocket, in ``market.predictions`` (schema-valid, key = symbol) and in the store; equal to
the training-side models; a row produced again (a replay) duplicates nothing."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tests.unit.serving.live_helpers import cut_time, expected, store_upto
from tests.unit.serving.serving_helpers import Trained, copy_bundles, running_server, trained
from websockets.sync.client import connect

from signalstack.config import KafkaSettings, ServingSettings, Settings
from signalstack.devstack import KafkaServer
from signalstack.engines.kafka_io import feature_json
from signalstack.serving.app import create_app
from signalstack.serving.cache import SessionCache
from signalstack.serving.dataplane import DataPlane
from signalstack.serving.feeds import KafkaFeatureFeed
from signalstack.serving.live import LivePredictor
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import DirectorySource, ModelRepository
from signalstack.serving.service import live_feed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEMA = Path(__file__).parents[3] / "services/signalstack/schemas/json/prediction.v1.json"
WAIT_S = 90.0


@pytest.fixture(scope="module")
def models() -> Trained:
    return trained()


def _topics(kafka: KafkaServer) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    features, predictions = f"market.features.{suffix}", f"market.predictions.{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=3, replication_factor=1) for t in (features, predictions)]
    )
    for f in futures.values():
        f.result(timeout=30)
    return features, predictions


def _consume_all(bootstrap: str, topic: str, want: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(got) < want and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=500, timeout=1.0):
                if m.error() is None:
                    got.append(m)
        # anything beyond ``want`` (a duplicate) would arrive within a moment
        got.extend(m for m in consumer.consume(num_messages=500, timeout=2.0) if not m.error())
    finally:
        consumer.close()
    return got


def test_the_kafka_feed_streams_publishes_and_stores(
    kafka: KafkaServer, models: Trained, tmp_path: Path
) -> None:
    features_topic, predictions_topic = _topics(kafka)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka.bootstrap, features_topic=features_topic,
                            predictions_topic=predictions_topic),
        serving=ServingSettings(feed="kafka", feed_group_id="signalstack-serving-{hostname}"),
    )  # fmt: skip
    feed, publisher = live_feed(settings)
    assert feed is not None and publisher is not None
    cut = cut_time(models)
    later = models.frame[models.frame["ts"] > cut].sort_values("ts")
    stream = later[later["ts"] <= later["ts"].min() + pd.Timedelta(minutes=4)]
    store = store_upto(tmp_path / "live.duckdb", models, cut)
    metrics = ServingMetrics()
    repo = ModelRepository(DirectorySource(copy_bundles(tmp_path / "models")), metrics=metrics)
    app = create_app(settings, repo, store, metrics=metrics, feed=feed, publisher=publisher)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})

    def produce() -> None:
        for r in stream.to_dict("records"):
            producer.produce(features_topic, key=str(r["symbol"]).encode(), value=feature_json(r))
        producer.produce(features_topic, key=b"AAA", value=b"not a feature row")
        producer.flush(30)

    try:
        with running_server(app) as url:
            assert repo.wait_ready(60), repo.describe()
            ws_url = url.replace("http://", "ws://") + "/ws/predictions?symbols=*"
            with connect(ws_url) as ws:
                ack = json.loads(ws.recv(timeout=WAIT_S))["subscribed"]
                assert ack["feed"].startswith(f"kafka {features_topic}")
                # a new group starts at the newest offsets once it has its partitions: produce
                # until the first prediction arrives (an earlier copy is a replay: idempotent)
                deadline = time.monotonic() + WAIT_S
                first: dict[str, Any] | None = None
                while first is None:
                    assert time.monotonic() < deadline, "no prediction from the Kafka feed"
                    produce()
                    try:
                        first = json.loads(ws.recv(timeout=3))
                    except TimeoutError:
                        continue
                got = [first]
                while len(got) < 3 * len(stream):
                    got.append(json.loads(ws.recv(timeout=WAIT_S)))
            for name in ("regime", "direction", "anomaly"):
                want = expected(repo.get(name).bundle, models.frame)
                for m in (m for m in got if m["model_name"] == name):
                    value = list(m["probabilities"].values()) if m["probabilities"] else m["score"]
                    np.testing.assert_allclose(np.atleast_1d(value), want[(m["symbol"], m["ts"])],
                                               rtol=0, atol=1e-6)  # fmt: skip
            assert metrics.feed_rejected._value.get() >= 1  # the bad value: counted, skipped

            # market.predictions: every prediction, schema-valid, keyed by symbol
            validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
            published = _consume_all(kafka.bootstrap, predictions_topic, 3 * len(stream))
            keys = set()
            for m in published:
                value = json.loads(m.value())
                validator.validate(value)
                assert m.key().decode() == value["symbol"]
                keys.add((value["symbol"], value["model_name"], value["ts"]))
            assert len(keys) == 3 * len(stream)

            # the store: one row per prediction, however often a row came
            lo, hi = stream["ts"].min(), stream["ts"].max() + pd.Timedelta(minutes=1)
            rows = store.predictions(["AAA", "BBB"], lo, hi)
            assert len(rows) == 3 * len(stream)
            before = metrics.live_predictions._value.get()
            produce()  # a replay of every row
            deadline = time.monotonic() + WAIT_S
            while metrics.live_predictions._value.get() < before + 3 * len(stream):
                assert time.monotonic() < deadline, "the replay was not consumed"
                time.sleep(0.1)
            assert len(store.predictions(["AAA", "BBB"], lo, hi)) == 3 * len(stream)
    finally:
        store.close()


def _commit_start(bootstrap: str, topic: str, group: str, partitions: int = 3) -> None:
    """The group's committed offsets at the topic's beginning (so a new member reads it all)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, 0) for p in range(partitions)],
                 asynchronous=False)  # fmt: skip
    finally:
        c.close()


def test_a_batch_whose_handling_failed_is_read_again_not_committed_past(
    kafka: KafkaServer, models: Trained, tmp_path: Path
) -> None:
    """The fan-out fails on the first batch (a reason no retry covers): the feed seeks back,
    every row is predicted, and the group's committed offsets end at the topic's end."""
    features_topic, _ = _topics(kafka)
    group = f"serving-{uuid.uuid4().hex[:8]}"
    rows = models.frame.head(6)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for r in rows.to_dict("records"):
        producer.produce(features_topic, key=str(r["symbol"]).encode(), value=feature_json(r))
    assert producer.flush(30) == 0
    _commit_start(kafka.bootstrap, features_topic, group)
    repo = ModelRepository(DirectorySource(copy_bundles(tmp_path / "m", ("regime",))))
    repo.poll_once()
    calls: list[int] = []
    seen: set[tuple[str, int]] = set()

    def fanout(messages: list[tuple[str, str, bytes]]) -> None:
        calls.append(len(messages))
        if len(calls) == 1:
            raise RuntimeError("the hub is away")
        seen.update((s, json.loads(v)["ts"]) for s, _m, v in messages)

    feed = KafkaFeatureFeed(kafka.bootstrap, features_topic, group)
    cache = SessionCache(64)
    predictor = LivePredictor(feed, DataPlane(repo, None, cache=cache), cache=cache,
                              fanout=fanout, poll_s=0.2, backoff_cap_s=0.5)  # fmt: skip
    want = {
        (str(s), pd.Timestamp(t).value) for s, t in zip(rows["symbol"], rows["ts"], strict=True)
    }
    predictor.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not want <= seen:
            assert time.monotonic() < deadline, f"never predicted: {sorted(want - seen)}"
            time.sleep(0.1)
    finally:
        predictor.stop()
    assert len(calls) >= 2
    check = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(features_topic, p) for p in range(3)]
        committed = sum(max(tp.offset, 0) for tp in check.committed(parts, timeout=30))
    finally:
        check.close()
    assert committed == len(rows)


class _Flaky:
    """A real consumer whose ``committed`` fails ``times`` times first (a rebalance in progress)."""

    def __init__(self, consumer: Any, times: int) -> None:
        self.consumer, self.times = consumer, times

    def committed(self, *args: Any, **kwargs: Any) -> Any:
        if self.times:
            self.times -= 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        return self.consumer.committed(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


def test_pinning_a_new_partitions_start_is_retried_and_then_fails_loudly(
    kafka: KafkaServer,
) -> None:
    features_topic, _ = _topics(kafka)
    group = f"serving-{uuid.uuid4().hex[:8]}"
    feed = KafkaFeatureFeed(kafka.bootstrap, features_topic, f"unused-{group}")
    feed.pin_backoff_s = 0.05
    member = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group,
                       "enable.auto.commit": False})  # fmt: skip
    parts = [TopicPartition(features_topic, p) for p in range(3)]
    try:
        feed._assigned(_Flaky(member, 2), parts)
        # the start is pinned after all: committed at the partitions' (empty) end
        assert [tp.offset for tp in member.committed(parts, timeout=30)] == [0, 0, 0]
        with pytest.raises(RuntimeError, match="unknown after"):
            feed._assigned(_Flaky(member, 100), parts)
    finally:
        member.close()
        feed.close()


def test_the_feed_reports_its_own_lag(kafka: KafkaServer, models: Trained) -> None:
    """The Kafka feed exports its consumer lag (librdkafka statistics): the owned partitions'
    rows not committed yet, then 0 once the batch is handled and committed."""
    features_topic, _ = _topics(kafka)
    group = f"serving-{uuid.uuid4().hex[:8]}"
    rows = models.frame.head(6)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for r in rows.to_dict("records"):
        producer.produce(features_topic, key=str(r["symbol"]).encode(), value=feature_json(r))
    assert producer.flush(30) == 0
    _commit_start(kafka.bootstrap, features_topic, group)
    feed = KafkaFeatureFeed(kafka.bootstrap, features_topic, group, stats_interval_ms=100)
    lags: list[int] = []
    feed.on_lag = lags.append
    deadline = time.monotonic() + WAIT_S
    try:
        got: list[Any] = []
        while len(got) < len(rows) or not lags or lags[-1] != len(rows):
            assert time.monotonic() < deadline, f"rows {len(got)}, lags {lags[-5:]}"
            got += feed.poll(0.2)  # polled, never committed: all of it is still behind
    finally:
        feed.close()
    # the next member of the group reads them again; handled and committed batch by batch (as
    # the live predictor does), the lag it reports comes down to 0
    feed = KafkaFeatureFeed(kafka.bootstrap, features_topic, group, stats_interval_ms=100)
    lags.clear()
    feed.on_lag = lags.append
    try:
        got = []
        while len(got) < len(rows) or not lags or lags[-1] != 0:
            assert time.monotonic() < deadline, f"rows {len(got)}, lags {lags[-5:]}"
            got += feed.poll(0.2)
            feed.commit()
        assert len(got) == len(rows)
    finally:
        feed.close()
