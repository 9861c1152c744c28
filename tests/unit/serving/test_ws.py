"""``WS /ws/predictions``: subscriptions (good and bad), the embedded default's local feed end
to end (a feature log written as the local engine writes it → predictions on the socket, in
the tables, and in /predict by symbol through the session cache), and a client that stops
reading, dropped while another keeps receiving — on a real uvicorn server and real sockets."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from starlette.websockets import WebSocketDisconnect
from tests.unit.serving.conftest import AppFactory
from tests.unit.serving.live_helpers import cut_time, expected, store_upto
from tests.unit.serving.serving_helpers import SEQUENCE_LENGTH, Trained, running_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from signalstack.config import ServingSettings, Settings
from signalstack.serving.app import create_app
from signalstack.serving.feeds import FeatureLogPublisher, LocalFeatureFeed
from signalstack.serving.hub import CLOSE_TOO_SLOW
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import DirectorySource, ModelRepository
from signalstack.serving.schemas import PredictRequest
from signalstack.store.duckdb import DuckDBStore

WAIT_S = 60.0  # every wait is bounded; generous, the machine is shared


def _wait(what: str, check: Any, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---- subscriptions -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "first", "says"),
    [
        ("?symbols=aapl", None, "not a ticker: 'aapl'"),
        ("?symbols=AAA&models=regime,forest", None, "unknown model 'forest'"),
        ("?symbols=AAA&depth=3", None, "unknown query parameters depth"),
        ("?models=regime", None, "symbols is required"),
        ("", "{not json", "the subscription is not JSON"),
        ("", json.dumps(["AAA"]), "a subscription is a JSON object"),
        ("", json.dumps({"symbols": []}), "symbols is empty"),
        ("", json.dumps({"symbols": ["AAA"], "model": ["regime"]}), "unknown fields model"),
        ("", json.dumps({"symbols": [1]}), "symbols must be a list of strings"),
        ("", json.dumps({"symbols": ["A"] * 501}), "at most 500"),
        ("", json.dumps({"symbols": ["AAA"], "models": []}), "models is empty"),
    ],
)
def test_a_bad_subscription_gets_its_reason_and_close_code_4400(
    app_factory: AppFactory, query: str, first: str | None, says: str
) -> None:
    client = app_factory()
    with client.websocket_connect("/ws/predictions" + query) as ws:
        if first is not None:
            ws.send_text(first)
        answer = ws.receive_json()
        assert says in answer["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4400
        assert says[:40] in closed.value.reason
    assert client.get("/v2/health/ready").status_code == 200  # the server is unharmed


def test_no_subscription_in_time_is_closed_with_4408(app_factory: AppFactory) -> None:
    client = app_factory(ws_subscribe_timeout_s=0.2)
    with client.websocket_connect("/ws/predictions") as ws:
        assert "no subscription within 0.2 s" in ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4408


def test_with_a_token_a_client_needs_the_bearer_header(app_factory: AppFactory) -> None:
    client = app_factory(api_token="s3cret")
    with client.websocket_connect("/ws/predictions?symbols=AAA") as ws:
        assert "Bearer" in ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4401
    headers = {"Authorization": "Bearer s3cret"}
    with client.websocket_connect("/ws/predictions?symbols=AAA", headers=headers) as ws:
        assert ws.receive_json()["subscribed"]["symbols"] == ["AAA"]


def test_a_first_message_subscribes_and_is_acknowledged(app_factory: AppFactory) -> None:
    client = app_factory()
    with client.websocket_connect("/ws/predictions") as ws:
        ws.send_text(json.dumps({"symbols": ["*"], "models": ["anomaly"]}))
        ack = ws.receive_json()["subscribed"]
        assert ack == {"symbols": ["*"], "models": ["anomaly"], "feed": "none"}
        metrics = client.get("/metrics").text
        assert "signalstack_serving_websocket_clients 1.0" in metrics
    assert "signalstack_serving_websocket_clients 0.0" in client.get("/metrics").text


# ---- the embedded default, end to end ------------------------------------------------------------
@dataclass
class Live:
    url: str
    store: DuckDBStore
    log_dir: Path
    repository: ModelRepository
    metrics: ServingMetrics
    app: Any


@contextmanager
def live_server(tmp_path: Path, model_dir: Path, store: DuckDBStore | None, **serving: Any
                ) -> Iterator[Live]:  # fmt: skip
    log_dir = tmp_path / "feature-log"
    settings = Settings(serving=ServingSettings(feed="local", feed_dir=log_dir, **serving))
    metrics = ServingMetrics()
    repo = ModelRepository(DirectorySource(model_dir), metrics=metrics)
    feed = LocalFeatureFeed(log_dir, interval_s=0.02)
    app = create_app(settings, repo, store, metrics=metrics, feed=feed)
    with running_server(app) as url:
        assert repo.wait_ready(60), repo.describe()
        yield Live(url, store, log_dir, repo, metrics, app)  # type: ignore[arg-type]


def _drain(ws: ClientConnection) -> None:
    """Read until the connection closes (each read bounded)."""
    while True:
        ws.recv(timeout=WAIT_S)


@contextmanager
def _ws(url: str, query: str, **kw: Any) -> Iterator[ClientConnection]:
    """A subscribed client (its acknowledgement read)."""
    with connect(url.replace("http://", "ws://") + "/ws/predictions" + query, **kw) as ws:
        assert "subscribed" in json.loads(ws.recv(timeout=WAIT_S))
        yield ws


def test_the_local_feed_streams_stores_and_feeds_predict_by_symbol(
    tmp_path: Path, models: Trained, model_dir: Path
) -> None:
    """The store holds the first half of the last session; the local engine's side
    (FeatureLogPublisher) writes the next rows: the subscriber of AAA gets each model's
    prediction of each AAA row (equal to the training-side model's), nothing of BBB; every
    prediction is stored; anomalies over the threshold too; and /predict by symbol answers
    from the streamed rows while a point-in-time request still reads the store."""
    cut = cut_time(models)
    later = models.frame[models.frame["ts"] > cut].sort_values("ts")
    stream = later[later["ts"] <= later["ts"].min() + pd.Timedelta(minutes=9)]
    n_aaa = int((stream["symbol"] == "AAA").sum())
    store = store_upto(tmp_path / "live.duckdb", models, cut)
    try:
        with live_server(tmp_path, model_dir, store) as live, _ws(
            live.url, "?symbols=AAA"
        ) as ws:  # fmt: skip
            publisher = FeatureLogPublisher(live.log_dir)
            for _, minute in stream.groupby("ts"):  # one batch per bar end, as the engine does
                publisher.publish(minute)
            got = [json.loads(ws.recv(timeout=WAIT_S)) for _ in range(3 * n_aaa)]
            assert {m["symbol"] for m in got} == {"AAA"}
            for name in ("regime", "direction", "anomaly"):
                want = expected(live.repository.get(name).bundle, models.frame)
                mine = [m for m in got if m["model_name"] == name]
                assert len(mine) == n_aaa
                for m in mine:
                    value = list(m["probabilities"].values()) if m["probabilities"] else m["score"]
                    np.testing.assert_allclose(np.atleast_1d(value), want[("AAA", m["ts"])],
                                               rtol=0, atol=1e-6)  # fmt: skip

            lo, hi = stream["ts"].min(), stream["ts"].max() + pd.Timedelta(minutes=1)
            # the counter moves once a batch is stored (read the store only then: a DuckDB
            # count() leaves the connection refusing the predictor's next write)
            stored = live.metrics.live_predictions
            _wait("the stored predictions", lambda: stored._value.get() == 3 * len(stream))
            assert len(store.predictions(["AAA", "BBB"], lo, hi)) == 3 * len(stream)
            assert store.count("anomalies") >= sum(1 for m in got if m["is_anomaly"])

            newest = stream[stream["symbol"] == "AAA"]["ts"].max()
            with httpx.Client(base_url=live.url, timeout=30) as c:
                answer = c.post("/predict/direction", json={"symbol": "AAA"}).json()
                # the newest AAA row arrived through the feed only: the cache answers it
                assert pd.Timestamp(answer["ts"]) == newest
                want = expected(live.repository.get("direction").bundle, models.frame)
                np.testing.assert_allclose(
                    list(answer["probabilities"].values()), want[("AAA", newest.value)],
                    rtol=0, atol=1e-6,
                )  # fmt: skip
                # point in time: the store, as before
                past = c.post("/predict/direction",
                              json={"symbol": "AAA", "as_of": cut.isoformat()}).json()  # fmt: skip
                assert pd.Timestamp(past["ts"]) <= cut
    finally:
        store.close()


def test_predict_by_symbol_from_the_cache_equals_the_store_answer(
    tmp_path: Path, models: Trained, model_dir: Path
) -> None:
    """A symbol the feed has not delivered is read from the store (and never enters the
    cache: nothing would keep that copy current); once the feed delivered its rows, each
    model's answer by symbol comes from the cache and equals the one read from the store."""
    store = DuckDBStore(str(tmp_path / "full.duckdb"))
    store.migrate()
    store.write_features(models.frame)
    bbb = models.frame[models.frame["symbol"] == "BBB"].sort_values("ts").tail(10)
    try:
        with live_server(tmp_path, model_dir, store) as live:
            with httpx.Client(base_url=live.url, timeout=30) as c:
                before = {n: c.post(f"/predict/{n}", json={"symbol": "BBB"}).json()
                          for n in ("regime", "direction", "anomaly")}  # fmt: skip
                plane = live.app.state.dataplane
                assert len(plane.cache) == 0  # read from the store, not cached
                FeatureLogPublisher(live.log_dir).publish(bbb)  # the stream's newest rows
                deadline = time.monotonic() + WAIT_S
                while plane.cache.rows("BBB", 1, SEQUENCE_LENGTH) is None:
                    assert time.monotonic() < deadline, "the feed's rows never reached the cache"
                    time.sleep(0.05)
                for n, answer in before.items():
                    assert plane.predict_cached(n, PredictRequest(symbol="BBB")) is not None
                    again = c.post(f"/predict/{n}", json={"symbol": "BBB"}).json()
                    assert again == answer  # from the cache now, the same answer
                unknown = c.post("/predict/regime", json={"symbol": "ZZZ"})
                assert unknown.status_code == 404
    finally:
        store.close()


# ---- a client that stops reading -----------------------------------------------------------------
def test_a_client_that_stops_reading_is_dropped_and_the_others_keep_receiving(
    tmp_path: Path, model_dir: Path
) -> None:
    """Two subscribers; one never reads (a small socket buffer, the client library reads
    ahead one frame at most). Big messages (random: permessage-deflate would shrink repeated
    text to nothing) fill its socket, then its queue of 4: it is closed with 4429 while the
    other receives every message, before and after."""
    with live_server(tmp_path, model_dir, None, ws_queue_size=4) as live:
        host, port = live.url.removeprefix("http://").split(":")
        raw = socket.socket()
        # a bounded receive buffer (no autotuning), set before connecting; big enough that
        # reading it later is quick (a tiny window crawls at a delayed ACK per segment)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262_144)
        raw.connect((host, int(port)))
        # no client pings (the paused one could not answer the server's in time either way)
        # and no compression (the messages are random)
        opts: dict[str, Any] = {"ping_interval": None, "compression": None}
        clients = ExitStack()
        slow = clients.enter_context(
            _ws(live.url, "?symbols=AAA&models=regime", sock=raw, max_queue=1, **opts)
        )
        fast = clients.enter_context(
            _ws(live.url, "?symbols=AAA&models=regime", max_size=None, **opts)
        )
        received: list[int] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    received.append(json.loads(fast.recv(timeout=1))["i"])
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        hub, loop = live.app.state.live.hub, live.app.state.loop
        pad = base64.b64encode(os.urandom(49_152)).decode()  # 64 KiB, incompressible
        sent = 0

        def burst(k: int) -> None:
            nonlocal sent
            msgs = [("AAA", "regime", json.dumps({"i": sent + j, "pad": pad}).encode())
                    for j in range(k)]  # fmt: skip
            sent += k
            loop.call_soon_threadsafe(hub.publish, msgs)
            _wait("the fast client's messages", lambda: len(received) == sent)

        try:
            for _ in range(400):  # ≤ 100 MB; the slow socket holds a few MB
                burst(4)
                if live.metrics.ws_dropped._value.get() == 1:
                    break
            assert live.metrics.ws_dropped._value.get() == 1, "the slow client was never dropped"
            _wait("one client left", lambda: live.metrics.ws_clients._value.get() == 1)
            burst(4)  # the fast one still receives, after the drop
            assert received == list(range(sent))
            # the slow one, reading at last, finds what was queued and then the close code
            with pytest.raises(ConnectionClosed) as closed:
                _drain(slow)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_TOO_SLOW
        finally:
            stop.set()
            reader.join(10)
            clients.close()
