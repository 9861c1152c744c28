"""Live predictions without a transport: the feed's messages, the session cache, the predictor
(parity with the training-side models, the predictions / anomalies rows, replays), the
prediction JSON schema and the hub's bounded queues."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from tests.unit.serving.live_helpers import cut_time, expected, feed_rows, probs, store_upto
from tests.unit.serving.serving_helpers import Trained

from signalstack.engines.kafka_io import feature_json
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.serving.cache import SessionCache
from signalstack.serving.dataplane import DataPlane
from signalstack.serving.feeds import (
    BadFeatureMessageError,
    FeatureLogPublisher,
    FeatureRow,
    LocalFeatureFeed,
    parse_feature_message,
)
from signalstack.serving.hub import Hub, Subscriber, Subscription
from signalstack.serving.live import LivePredictor, prediction_json
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import DirectorySource, ModelRepository
from signalstack.serving.schemas import PredictRequest

SCHEMA = Path(__file__).parents[3] / "services/signalstack/schemas/json/prediction.v1.json"


def _row(symbol: str, ts: str, value: float = 1.0) -> FeatureRow:
    return FeatureRow(symbol, pd.Timestamp(ts, tz="UTC"), 1, np.full(len(FEATURE_COLUMNS), value))


@pytest.fixture
def repository(model_dir: Path) -> ModelRepository:
    repo = ModelRepository(DirectorySource(model_dir), metrics=ServingMetrics())
    repo.poll_once()
    assert repo.is_ready()
    return repo


# ---- feed messages -------------------------------------------------------------------------------
def test_a_feature_row_survives_its_market_features_value(models: Trained) -> None:
    src = models.frame.iloc[5]
    row = parse_feature_message(feature_json(src))
    assert (row.symbol, row.ts, row.feature_set_version) == (src["symbol"], src["ts"], 1)
    want = src[list(FEATURE_COLUMNS)].to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(row.values), np.isnan(want))
    np.testing.assert_allclose(row.values[~np.isnan(want)], want[~np.isnan(want)])


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schema_version": 2}', "schema_version 2"),
        (b'{"schema_version": 1, "symbol": "", "ts": 1, "feature_set_version": 1}', "symbol"),
        (b'{"schema_version": 1, "symbol": "A", "ts": "x", "feature_set_version": 1}', "ts"),
        (b'{"schema_version": 1, "symbol": "A", "ts": 1, "feature_set_version": 0}', "feature_set"),
        (b'{"schema_version": 1, "symbol": "A", "ts": 1, "feature_set_version": 1, '
         b'"vwap_5m": "1"}', "vwap_5m"),
    ],
)  # fmt: skip
def test_a_message_that_is_not_a_feature_row_is_refused_with_the_reason(
    raw: bytes, says: str
) -> None:
    with pytest.raises(BadFeatureMessageError, match=says):
        parse_feature_message(raw)


def test_the_local_feed_reads_each_new_log_file_once_and_skips_bad_lines(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    publisher = FeatureLogPublisher(log_dir)
    ts = pd.Timestamp("2025-11-20 15:00", tz="UTC")
    values = dict.fromkeys(FEATURE_COLUMNS, 1.0)
    old = pd.DataFrame([{"symbol": "OLD", "ts": ts, "feature_set_version": 1, **values}])
    publisher.publish(old)  # before the feed starts: not read (the feed starts at the newest)
    feed = LocalFeatureFeed(log_dir, interval_s=0.01)
    rejected: list[str] = []
    feed.on_reject = rejected.append
    new = old.assign(symbol="NEW")
    assert publisher.publish(new) == 1
    (log_dir / "99999999999999999999-1-000001.jsonl").write_bytes(b"garbage\n")
    got = feed.poll(5.0)
    assert [r.symbol for r in got] == ["NEW"]
    assert len(rejected) == 1 and "not JSON" in rejected[0]
    assert feed.poll(0.0) == []  # each file once
    feed.close()


# ---- the session cache ---------------------------------------------------------------------------
def test_the_cache_answers_only_what_the_store_would() -> None:
    cache = SessionCache(capacity=4)
    cache.add(_row("A", "2025-11-20 15:00", 1))
    cache.add(_row("A", "2025-11-20 15:01", 2))
    # a symbol first seen mid-session may have older rows elsewhere: no answer for 3 rows
    assert cache.rows("A", 1, 3) is None
    got = cache.rows("A", 1, 2)
    assert got is not None and got[0][:, 0].tolist() == [1, 2]
    assert got[1] == pd.Timestamp("2025-11-20 15:01", tz="UTC")
    # the store says the session has only one more row before them: the cache is complete
    first = pd.Timestamp("2025-11-20 14:59", tz="UTC")
    zeros = {c: [0.0] for c in FEATURE_COLUMNS}
    stored = pd.DataFrame({"symbol": ["A"], "ts": [first], **zeros, "feature_set_version": [1]})
    cache.seed("A", 1, stored, limit=3)
    got = cache.rows("A", 1, 3)
    assert got is not None and got[0][:, 0].tolist() == [0, 1, 2]
    assert cache.rows("A", 1, 10) is not None  # complete: the whole session
    # point in time inside the cache: rows up to then
    got = cache.rows("A", 1, 2, upto=pd.Timestamp("2025-11-20 15:00", tz="UTC"))
    assert got is not None and got[0][:, 0].tolist() == [0, 1]
    # a replayed row replaces its copy; beyond capacity the oldest go, and with them completeness
    cache.add(_row("A", "2025-11-20 15:01", 5))
    cache.add(_row("A", "2025-11-20 15:02", 3))
    cache.add(_row("A", "2025-11-20 15:03", 4))
    got = cache.rows("A", 1, 4)
    assert got is not None and got[0][:, 0].tolist() == [1, 5, 3, 4]
    assert cache.rows("A", 1, 5) is None
    # the next session of a tracked symbol starts with its first row
    cache.add(_row("A", "2025-11-21 14:31", 9))
    got = cache.rows("A", 1, 30)
    assert got is not None and got[0][:, 0].tolist() == [9]
    cache.add(_row("A", "2025-11-20 15:04", 7))  # a replay of the previous session: ignored
    got = cache.rows("A", 1, 30)
    assert got is not None and got[0][:, 0].tolist() == [9]
    assert cache.rows("B", 1, 1) is None
    assert cache.rows("A", 2, 1) is None  # another feature set


def test_a_rebalance_forgets_every_session_and_a_request_never_makes_an_entry() -> None:
    """Rows before a rebalance are not the continuation of those after it (another replica
    had the partition meanwhile, or a symbol tracked yesterday comes back mid-session): after
    :meth:`clear` a symbol is answered again only from what the feed and the store give."""
    cache = SessionCache(capacity=4)
    for m in range(4):  # tracked: the next session would start complete
        cache.add(_row("A", f"2025-11-20 20:0{m}"))
    cache.clear()
    cache.add(_row("A", "2025-11-21 17:00"))
    assert cache.rows("A", 1, 2) is None  # the session's earlier rows are elsewhere
    # the store's answer to a request for a symbol the feed does not deliver: no entry
    zeros = {c: [0.0] for c in FEATURE_COLUMNS}
    ts = [pd.Timestamp("2025-11-21 17:00", tz="UTC")]
    stored = pd.DataFrame({"symbol": ["B"], "ts": ts, **zeros, "feature_set_version": [1]})
    cache.seed("B", 1, stored, limit=3)
    assert cache.rows("B", 1, 1) is None


def test_predict_by_a_symbol_this_replica_is_not_fed_reads_the_store_every_time(
    tmp_path: Path, models: Trained, repository: ModelRepository
) -> None:
    """Another replica owns the symbol's partition: nothing keeps a cached copy current, so
    ``/predict`` answers from the store each time, and newer stored rows are answered."""
    cut = cut_time(models)
    store = store_upto(tmp_path / "replica.duckdb", models, cut)
    aaa = models.frame[models.frame["symbol"] == "AAA"].sort_values("ts")
    try:
        plane = DataPlane(repository, store, cache=SessionCache(64))
        request = PredictRequest(symbol="AAA")
        for name in ("regime", "direction"):
            assert (
                pd.Timestamp(plane.predict(name, request).ts) == aaa[aaa["ts"] <= cut]["ts"].max()
            )
        store.write_features(models.frame[models.frame["ts"] > cut])  # the stream job's rows
        want = expected(repository.get("direction").bundle, models.frame)
        for name in ("regime", "direction"):
            assert plane.predict_cached(name, request) is None
            got = plane.predict(name, request)
            assert pd.Timestamp(got.ts) == aaa["ts"].max()
        newest = ("AAA", pd.Timestamp(aaa["ts"].max()).value)
        got = plane.predict("direction", request)
        assert got.model_dump()["probabilities"] is not None
        np.testing.assert_allclose(list(got.model_dump()["probabilities"].values()), want[newest],
                                   rtol=0, atol=1e-6)  # fmt: skip
    finally:
        store.close()


def test_a_symbol_back_after_a_rebalance_is_predicted_from_the_store_not_across_the_hole(
    tmp_path: Path, models: Trained, repository: ModelRepository
) -> None:
    """This replica predicts AAA to the cut, another one the next rows, then AAA comes back:
    the LSTM's sequence is the session's rows from the store, not [..cut, now]."""
    cut = cut_time(models)
    frame = models.frame
    store = store_upto(tmp_path / "back.duckdb", models, frame["ts"].max())  # every row stored
    aaa = frame[frame["symbol"] == "AAA"].sort_values("ts")
    before, after = aaa[aaa["ts"] <= cut].tail(10), aaa[aaa["ts"] > cut]
    assert len(after) > 11
    back = after.iloc[10:11]
    try:
        cache = SessionCache(64)
        plane = DataPlane(repository, store, cache=cache)
        predictor = LivePredictor(
            LocalFeatureFeed(tmp_path / "feed"), plane, cache=cache, store=store
        )
        predictor.handle(feed_rows(before))
        rebalance = predictor.feed.on_rebalance
        assert rebalance is not None, "the predictor hears of its feed's rebalances"
        rebalance()  # the partition went to another replica and came back
        got = [p for p in predictor.handle(feed_rows(back)) if p.model_name == "direction"]
        want = expected(repository.get("direction").bundle, frame)
        key = ("AAA", pd.Timestamp(back["ts"].iloc[0]).value)
        assert len(got) == 1
        np.testing.assert_allclose(got[0].probabilities, want[key], rtol=0, atol=1e-6)
        cached = plane.predict_cached("direction", PredictRequest(symbol="AAA"))
        assert cached is not None  # fed, and completed from the store: answered from memory
        np.testing.assert_allclose(list(cached.model_dump()["probabilities"].values()),
                                   want[key], rtol=0, atol=1e-6)  # fmt: skip
    finally:
        store.close()


def test_a_batch_whose_handling_failed_is_delivered_again(
    tmp_path: Path, models: Trained, repository: ModelRepository
) -> None:
    """The fan-out fails once: the batch is not skipped, the feed delivers it again."""
    calls: list[int] = []
    seen: set[tuple[str, int]] = set()

    def fanout(messages: list[tuple[str, str, bytes]]) -> None:
        calls.append(len(messages))
        if len(calls) == 1:
            raise RuntimeError("the hub is away")
        seen.update((s, json.loads(v)["ts"]) for s, _m, v in messages)

    rows = models.frame.head(6)
    want = {
        (str(s), pd.Timestamp(t).value) for s, t in zip(rows["symbol"], rows["ts"], strict=True)
    }
    cache = SessionCache(64)
    feed = LocalFeatureFeed(tmp_path / "feed")
    predictor = LivePredictor(feed, DataPlane(repository, None, cache=cache), cache=cache,
                              fanout=fanout, poll_s=0.1, backoff_cap_s=0.2)  # fmt: skip
    predictor.start()
    try:
        FeatureLogPublisher(tmp_path / "feed").publish(rows)
        for _ in range(600):  # bounded: a minute at most
            if want <= seen:
                break
            predictor._stop.wait(0.1)
    finally:
        predictor.stop()
    assert len(calls) >= 2
    assert want <= seen, "the failed batch was skipped"


# ---- the predictor -------------------------------------------------------------------------------
def test_streamed_predictions_equal_the_training_side_models_and_fill_the_tables(
    tmp_path: Path, models: Trained, repository: ModelRepository
) -> None:
    """The store holds the first half of the last session; the second half arrives through
    the feed (the store never gets those rows): each prediction equals the bundle's on the
    session's rows up to that row — the LSTM's sequence joins store and stream rows."""
    cut = cut_time(models)
    store = store_upto(tmp_path / "live.duckdb", models, cut)
    later = models.frame[models.frame["ts"] > cut]
    fed = feed_rows(later)
    try:
        predictor = LivePredictor(
            LocalFeatureFeed(tmp_path / "feed"), DataPlane(repository, store),
            cache=SessionCache(64), store=store,
        )  # fmt: skip
        got = predictor.handle(fed)
        assert len(got) == 3 * len(fed)
        for name in ("regime", "direction", "anomaly"):
            want = expected(repository.get(name).bundle, models.frame)
            mine = [p for p in got if p.model_name == name]
            assert len(mine) == len(fed)
            for p in mine:
                value = p.probabilities if p.classes else p.score
                assert p.symbol is not None and p.ts is not None
                key = (p.symbol, pd.Timestamp(p.ts).value)
                np.testing.assert_allclose(probs(value), want[key], rtol=0, atol=1e-6)

        # the stream job writes its rows to the store as well (the predictor never did):
        # before any count(), which leaves the DuckDB connection refusing writes
        store.write_features(later)
        n = len(fed)
        lo, hi = later["ts"].min(), later["ts"].max() + pd.Timedelta(minutes=1)
        rows = store.predictions(["AAA", "BBB"], lo, hi)
        assert len(rows) == 3 * n
        regime = rows[rows["model_name"] == "regime"].iloc[0]
        p = next(p for p in got if p.model_name == "regime" and p.symbol == regime["symbol"]
                 and pd.Timestamp(p.ts) == regime["ts"])  # fmt: skip
        assert regime["label"] == p.label and regime["value"] == pytest.approx(max(p.probabilities))
        over = [p for p in got if p.model_name == "anomaly" and p.is_anomaly]
        assert over, "the fixture's threshold is its 90 % quantile: some rows are over it"
        assert store.count("anomalies") == len(over)
        assert all(p.threshold == pytest.approx(models.threshold) for p in over)

        # a replay (every row read again: a consumer that restarted before its commit), the
        # rows in the store by then (the stream job writes them there too): the same rows,
        # the same values — rows older than the cache keeps are read from the store
        again = predictor.handle(fed)
        assert [(p.symbol, p.ts, p.model_name) for p in again] == [
            (p.symbol, p.ts, p.model_name) for p in got
        ]
        for a, b in zip(again, got, strict=True):
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
            assert (a.score is None) == (b.score is None)
            assert a.score == pytest.approx(b.score, abs=1e-6) or a.score is None
        assert store.predictions(["AAA", "BBB"], lo, hi).equals(rows)
        assert store.count("anomalies") == len(over)
    finally:
        store.close()


def test_a_stream_without_a_store_predicts_from_what_it_has_seen(
    tmp_path: Path, models: Trained, repository: ModelRepository
) -> None:
    """No store (none configured): the session rows come from the feed alone; a session the
    feed saw from its first row is predicted exactly."""
    frame = models.frame
    day = frame["ts"].dt.tz_convert("America/New_York").dt.date
    session = frame[day == day.max()]
    predictor = LivePredictor(
        LocalFeatureFeed(tmp_path / "feed"), DataPlane(repository, None), cache=SessionCache(64)
    )
    got = predictor.handle(feed_rows(session))
    want = expected(repository.get("direction").bundle, frame)
    direction = [p for p in got if p.model_name == "direction"]
    assert len(direction) == len(session)
    for p in direction:
        assert p.symbol is not None
        key = (p.symbol, pd.Timestamp(p.ts).value)
        np.testing.assert_allclose(p.probabilities, want[key], rtol=0, atol=1e-6)


# ---- the message schema --------------------------------------------------------------------------
def test_each_prediction_message_validates_against_the_schema(
    tmp_path: Path, models: Trained, repository: ModelRepository
) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    predictor = LivePredictor(
        LocalFeatureFeed(tmp_path / "feed"), DataPlane(repository, None), cache=SessionCache(8)
    )
    got = predictor.handle(feed_rows(models.frame.tail(4)))
    assert {p.model_name for p in got} == {"regime", "direction", "anomaly"}
    for p in got:
        msg = json.loads(prediction_json(p))
        validator.validate(msg)
        assert msg["ts"] == pd.Timestamp(p.ts).value and msg["schema_version"] == 1
    # the schema refuses what is not a prediction: a classifier without probabilities, a field
    # it does not know, a missing time
    regime = json.loads(prediction_json(next(p for p in got if p.model_name == "regime")))
    for bad in (
        {**regime, "probabilities": None},
        {**regime, "extra": 1},
        {k: v for k, v in regime.items() if k != "ts"},
        {**regime, "model_name": "other"},
    ):
        assert not validator.is_valid(bad)


# ---- the hub -------------------------------------------------------------------------------------
def test_a_subscriber_whose_queue_is_full_is_dropped_and_never_holds_back_the_others() -> None:
    async def scenario() -> None:
        metrics = ServingMetrics()
        hub = Hub(metrics)
        everything = Subscription(None, frozenset({"regime"}))
        slow, fast = Subscriber(everything, 3), Subscriber(everything, 3)
        only_b = Subscriber(Subscription(frozenset({"B"}), frozenset({"regime"})), 3)
        for s in (slow, fast, only_b):
            hub.add(s)
        assert metrics.ws_clients._value.get() == 3
        for i in range(10):
            hub.publish([("A", "regime", f"a{i}".encode()), ("A", "anomaly", b"no")])
            got = fast.queue.get_nowait()  # the fast one reads every message
            assert got == f"a{i}".encode()
        assert slow.dropped.is_set() and not fast.dropped.is_set()
        assert metrics.ws_dropped._value.get() == 1
        assert only_b.queue.empty()  # not its symbol
        assert len(hub) == 2 and metrics.ws_clients._value.get() == 2  # gone at once

    asyncio.run(scenario())
