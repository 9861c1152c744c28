"""Several serving replicas on one real Kafka broker and one TimescaleDB: they share ONE consumer
group on ``market.features`` (each row predicted, stored and published exactly once across
them), and each one's WebSocket clients get every replica's predictions through
``market.predictions``. A replica leaving (a rebalance) and a replay of every row duplicate no
table row, and the rows the survivor takes over are predicted as before (the LSTM's session
history from the store)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from tests.conftest import TimescaleDatabase
from tests.unit.serving.live_helpers import cut_time, expected
from tests.unit.serving.serving_helpers import Trained, copy_bundles, running_server, trained
from websockets.sync.client import ClientConnection, connect

from signalstack.config import KafkaSettings, ServingSettings, Settings
from signalstack.devstack import KafkaServer
from signalstack.engines.kafka_io import feature_json
from signalstack.serving.app import create_app
from signalstack.serving.feeds import KafkaFeatureFeed
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import DirectorySource, ModelRepository
from signalstack.serving.service import live_fanout, live_feed
from signalstack.store.timescale import TimescaleStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 90.0
PARTITIONS = 4
MODELS = ("regime", "direction", "anomaly")
#: the stream's symbols, one per partition; the copies' rows are their source's
COPIES = {"AAA": "AAA", "BBB": "BBB", "CCC": "AAA", "DDD": "BBB"}
WARM = [f"W{p}" for p in range(PARTITIONS)]  # one warm-up symbol per partition


@pytest.fixture(scope="module")
def models() -> Trained:
    return trained()


def _topics(kafka: KafkaServer) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    features, predictions = f"market.features.{suffix}", f"market.predictions.{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
            for t in (features, predictions)
        ]
    )
    for f in futures.values():
        f.result(timeout=30)
    return features, predictions


def _with_copies(frame: pd.DataFrame) -> pd.DataFrame:
    parts = [frame[frame["symbol"] == src].assign(symbol=sym) for sym, src in COPIES.items()]
    return pd.concat(parts, ignore_index=True)


def _until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _all_published(bootstrap: str, topic: str, want: int) -> list[dict[str, Any]]:
    """Every message on ``topic`` (at least ``want``, and what comes within a moment more)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(got) < want and time.monotonic() < deadline:
            got += [
                json.loads(m.value() or b"") for m in consumer.consume(500, 1.0) if not m.error()
            ]
        got += [json.loads(m.value() or b"") for m in consumer.consume(500, 3.0) if not m.error()]
    finally:
        consumer.close()
    return got


def _key(m: dict[str, Any]) -> tuple[str, str, int]:
    return m["symbol"], m["model_name"], m["ts"]


def _value(m: dict[str, Any]) -> np.ndarray:
    """A prediction's probabilities (class order) or its score."""
    return np.atleast_1d(list(m["probabilities"].values()) if m["probabilities"] else m["score"])


def _assert_truth(msgs: list[dict[str, Any]], truth: dict[str, dict[tuple[str, int], Any]]) -> None:
    """Every message equals the training side's answer for its row (the copies' sources)."""
    for m in msgs:
        want = truth[m["model_name"]][(COPIES[m["symbol"]], m["ts"])]
        np.testing.assert_allclose(_value(m), want, rtol=0, atol=1e-6, err_msg=str(_key(m)))


def _receive(ws: ClientConnection, want: set[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Messages until every key of ``want`` arrived (warm-up symbols skipped)."""
    got: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()
    deadline = time.monotonic() + WAIT_S
    while not want <= seen:
        assert time.monotonic() < deadline, f"{len(want - seen)} predictions never arrived"
        m = json.loads(ws.recv(timeout=WAIT_S))
        if m["symbol"] not in WARM:
            got.append(m)
            seen.add(_key(m))
    return got


class Replica:
    """One ``signalstack serve`` as the cluster runs it: the shared group, the Kafka fan-out."""

    def __init__(self, settings: Settings, dsn: str, models_dir: Any) -> None:
        self.metrics = ServingMetrics()
        self.store = TimescaleStore(dsn)
        self.repo = ModelRepository(DirectorySource(models_dir), metrics=self.metrics)
        feed, publisher = live_feed(settings)
        assert isinstance(feed, KafkaFeatureFeed) and publisher is not None
        self.feed = feed
        fanout = live_fanout(settings, self.metrics)
        assert fanout is not None, "SERVING_WS_FANOUT=auto with the Kafka feed: market.predictions"
        self.fanout = fanout
        self.app = create_app(settings, self.repo, self.store, metrics=self.metrics, feed=feed,
                              publisher=publisher, fanout=fanout)  # fmt: skip

    @property
    def predicted(self) -> float:
        return float(self.metrics.live_predictions._value.get())


def test_replicas_share_the_feed_and_every_client_sees_every_symbol(
    kafka: KafkaServer, timescale_db: TimescaleDatabase, models: Trained, tmp_path: Any
) -> None:
    features_topic, predictions_topic = _topics(kafka)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka.bootstrap, features_topic=features_topic,
                            predictions_topic=predictions_topic),
        serving=ServingSettings(feed="kafka", feed_group_id=f"serving-{uuid.uuid4().hex[:8]}"),
    )  # fmt: skip
    cut = cut_time(models)
    frame = _with_copies(models.frame)
    setup = TimescaleStore(timescale_db.dsn)
    setup.migrate()
    setup.write_features(frame[frame["ts"] <= cut])
    setup.close()
    later = frame[frame["ts"] > cut].sort_values("ts")
    stream = later[later["ts"] <= later["ts"].min() + pd.Timedelta(minutes=3)]
    part = {sym: i for i, sym in enumerate(COPIES)}  # one symbol per partition
    want = {(r["symbol"], m, pd.Timestamp(r["ts"]).value)
            for r in stream.to_dict("records") for m in MODELS}  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})

    def produce(rows: pd.DataFrame) -> None:
        for r in rows.to_dict("records"):
            key = str(r["symbol"])
            p = part[key] if key in part else WARM.index(key)
            producer.produce(features_topic, key=key.encode(), value=feature_json(r), partition=p)
        producer.flush(30)

    replicas = [
        Replica(settings, timescale_db.dsn, copy_bundles(tmp_path / f"m{i}")) for i in (0, 1)
    ]
    with contextlib.ExitStack() as stack:
        clients: list[ClientConnection] = []
        servers: list[contextlib.ExitStack] = []
        urls: list[str] = []
        for r in replicas:
            stack.callback(r.store.close)  # after its server stopped (callbacks run last first)
            server = contextlib.ExitStack()
            url = server.enter_context(running_server(r.app))
            urls.append(url)
            servers.append(server)
            stack.callback(server.close)
            assert r.repo.wait_ready(60), r.repo.describe()
            ws = stack.enter_context(
                connect(url.replace("http://", "ws://") + "/ws/predictions?symbols=*")
            )
            ack = json.loads(ws.recv(timeout=WAIT_S))["subscribed"]
            assert f"fan-out kafka {predictions_topic}" in ack["feed"]
            clients.append(ws)
        feeds = [r.feed for r in replicas]
        _until("both replicas to own partitions",
               lambda: all(f.partitions for f in feeds)
               and feeds[0].partitions | feeds[1].partitions == set(range(PARTITIONS))
               and not feeds[0].partitions & feeds[1].partitions)  # fmt: skip
        # every partition's consumer and both fan-outs are at their end offsets once a row
        # produced to each partition reaches both clients
        warm = stream.groupby("symbol").head(1).head(len(WARM)).assign(symbol=WARM)
        deadline = time.monotonic() + WAIT_S
        pending = [set(WARM), set(WARM)]
        while any(pending):
            assert time.monotonic() < deadline, f"warm-up predictions never arrived: {pending}"
            produce(warm)
            for ws, left in zip(clients, pending, strict=True):
                with contextlib.suppress(TimeoutError):
                    while left:
                        left.discard(json.loads(ws.recv(timeout=3))["symbol"])

        produce(stream)
        got = [_receive(ws, want) for ws in clients]
        for msgs in got:  # a client of either replica: every symbol's predictions
            assert {m["symbol"] for m in msgs} == set(COPIES)
        # equal to the training side, whichever replica made them
        truth = {n: expected(replicas[0].repo.get(n).bundle, models.frame) for n in MODELS}
        _assert_truth(got[0], truth)

        # /predict on a replica not fed the symbol (another owns its partition) answers the
        # store's newest rows, also after newer rows are stored (no copy a request cached)
        other = next(s for s in COPIES if part[s] in feeds[1].partitions)
        stored_before = httpx.post(f"{urls[0]}/predict/direction", json={"symbol": other},
                                   timeout=30).json()  # fmt: skip
        writer = TimescaleStore(timescale_db.dsn)
        stack.callback(writer.close)
        writer.write_features(stream)  # the stream job's rows reach the store as well
        answer = httpx.post(f"{urls[0]}/predict/direction", json={"symbol": other}, timeout=30)
        assert answer.status_code == 200, answer.text
        newest = stream[stream["symbol"] == other]["ts"].max()
        assert pd.Timestamp(answer.json()["ts"]) == newest
        assert pd.Timestamp(stored_before["ts"]) < newest
        np.testing.assert_allclose(
            list(answer.json()["probabilities"].values()),
            truth["direction"][(COPIES[other], pd.Timestamp(newest).value)], rtol=0, atol=1e-6,
        )  # fmt: skip

        # each row predicted once across both: one market.predictions message per prediction
        total = replicas[0].predicted + replicas[1].predicted
        published = _all_published(kafka.bootstrap, predictions_topic, int(total))
        assert len(published) == total
        ours = [_key(m) for m in published if m["symbol"] not in WARM]
        assert sorted(ours) == sorted(want), "a stream row predicted twice or not at all"
        lo, hi = stream["ts"].min(), stream["ts"].max() + pd.Timedelta(minutes=1)
        check = TimescaleStore(timescale_db.dsn)
        stack.callback(check.close)
        assert len(check.predictions(list(COPIES), lo, hi)) == len(want)

        # replica 1 leaves: replica 0 takes every partition; a replay of every row is predicted
        # again (the LSTM's history from the store), equal, and duplicates no table row
        first = {_key(m): m for m in got[0]}
        clients[1].close()
        servers[1].close()
        _until("the survivor to own every partition",
               lambda: feeds[0].partitions == set(range(PARTITIONS)))  # fmt: skip
        before = replicas[0].predicted
        produce(stream)
        again = _receive(clients[0], want)
        _until("the replay to be stored", lambda: replicas[0].predicted >= before + len(want))
        for m in again:
            a, b = first[_key(m)], m
            assert (a["prediction"], a["model_version"]) == (b["prediction"], b["model_version"])
            np.testing.assert_allclose(_value(b), _value(a), rtol=0, atol=1e-6)
        _assert_truth(again, truth)
        assert len(check.predictions(list(COPIES), lo, hi)) == len(want)

        # A→B→A: a new replica B takes some partitions from A and predicts their next rows;
        # B leaves, A gets them back: A's sequences are the store's (no hole where B had them)
        nxt = later[later["ts"] > stream["ts"].max()]
        minutes = sorted(nxt["ts"].unique())
        to_b, back = nxt[nxt["ts"] <= minutes[2]], nxt[nxt["ts"] == minutes[3]]
        writer.write_features(nxt[nxt["ts"] <= minutes[3]])
        b = Replica(settings, timescale_db.dsn, copy_bundles(tmp_path / "m2"))
        stack.callback(b.store.close)
        b_server = contextlib.ExitStack()
        stack.callback(b_server.close)
        b_server.enter_context(running_server(b.app))
        assert b.repo.wait_ready(60), b.repo.describe()
        _until("B to own partitions",
               lambda: bool(b.feed.partitions) and bool(feeds[0].partitions)
               and not b.feed.partitions & feeds[0].partitions
               and b.feed.partitions | feeds[0].partitions == set(range(PARTITIONS)))  # fmt: skip
        moved = {s for s in COPIES if part[s] in b.feed.partitions}
        assert moved
        total = replicas[0].predicted + b.predicted
        produce(to_b)
        _until(
            "the rows B and A own to be predicted",
            lambda: replicas[0].predicted + b.predicted >= total + len(to_b) * len(MODELS),
        )
        b_server.close()
        _until("A to own every partition again",
               lambda: feeds[0].partitions == set(range(PARTITIONS)))  # fmt: skip
        want_back = {(r["symbol"], m, pd.Timestamp(r["ts"]).value)
                     for r in back.to_dict("records") for m in MODELS}  # fmt: skip
        produce(back)
        returned = [m for m in _receive(clients[0], want_back) if _key(m) in want_back]
        assert {m["symbol"] for m in returned} >= moved
        _assert_truth(returned, truth)
        for s in moved:  # and /predict on A answers the same sequence
            r = httpx.post(f"{urls[0]}/predict/direction", json={"symbol": s}, timeout=30)
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(
                list(r.json()["probabilities"].values()),
                truth["direction"][(COPIES[s], pd.Timestamp(minutes[3]).value)], rtol=0, atol=1e-6,
            )  # fmt: skip


def test_a_partition_taken_over_before_its_first_commit_loses_no_row(
    kafka: KafkaServer, models: Trained
) -> None:
    """Replica A owns every partition but consumed nothing yet (no commit); rows arrive; A leaves
    and B takes over: B starts where A's assignment started, not at the newest row."""
    features_topic, _ = _topics(kafka)
    group = f"serving-{uuid.uuid4().hex[:8]}"
    first = KafkaFeatureFeed(kafka.bootstrap, features_topic, group)
    try:
        _until("A's assignment", lambda: bool(first.poll(0.2)) or bool(first.partitions))
    finally:
        first.close()  # consumed nothing, committed nothing of its own
    rows = models.frame.head(8)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for i, r in enumerate(rows.to_dict("records")):
        producer.produce(features_topic, key=str(r["symbol"]).encode(), value=feature_json(r),
                         partition=i % PARTITIONS)  # fmt: skip
    assert producer.flush(30) == 0
    second = KafkaFeatureFeed(kafka.bootstrap, features_topic, group)
    got: list[Any] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(got) < len(rows):
            assert time.monotonic() < deadline, f"{len(got)} of {len(rows)} rows: some skipped"
            got += second.poll(0.5)
    finally:
        second.close()
    assert sorted((r.symbol, r.ts.value) for r in got) == sorted(
        (s, pd.Timestamp(t).value) for s, t in zip(rows["symbol"], rows["ts"], strict=True)
    )
