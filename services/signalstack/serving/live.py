"""Live predictions: new feature rows (a :class:`~signalstack.serving.feeds.FeatureFeed`) →
each served model's prediction → the WebSocket subscribers, ``market.predictions`` and the
``predictions`` / ``anomalies`` tables.

- :class:`SessionCache`: each symbol's newest rows of its current session, in memory, fed by
  the feed (and filled from the store on a miss). The stream predicts from it, and
  ``/predict/*`` by symbol answers from it instead of reading the store per request.
- :class:`LivePredictor`: a thread polling the feed; per row and model
  ``DataPlane.predict_rows`` (the same path as ``/predict``), then the fan-out, the store
  (idempotent upserts on the tables' keys, retried with backoff), Kafka (when configured) and
  only then the feed's commit: at least once, never a duplicate row.
- :class:`Hub`: the subscribers, on the event loop; each has a bounded queue, and one whose
  queue is full (it stopped reading) is marked dropped — its handler closes it with
  :data:`CLOSE_TOO_SLOW` — while the others go on receiving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.logs import get_logger
from signalstack.serving.feeds import FeatureFeed, FeatureRow
from signalstack.serving.repository import LoadedModel

if TYPE_CHECKING:
    from signalstack.serving.dataplane import DataPlane, Prediction
    from signalstack.serving.metrics import ServingMetrics
    from signalstack.store.base import Store

log = get_logger(__name__)

F8 = npt.NDArray[np.float64]
SCHEMA_VERSION: Final = 1
#: the WebSocket close codes (RFC 6455 leaves 4000–4999 to applications)
CLOSE_BAD_SUBSCRIPTION: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SUBSCRIBE_TIMEOUT: Final = 4408
CLOSE_TOO_SLOW: Final = 4429
_NY: Final = "America/New_York"


def session_of(ts: pd.Timestamp) -> dt.date:
    """A row's trading session: its New York calendar date (a session never crosses midnight)."""
    return ts.tz_convert(_NY).date()


def cacheable(model: LoadedModel) -> bool:
    """The cache keeps ``FEATURE_COLUMNS``: a model reading other columns is not served from it."""
    return tuple(model.bundle.meta.feature_columns) == tuple(FEATURE_COLUMNS)


# ---- the per-symbol session cache ---------------------------------------------------------------
@dataclass
class _Entry:
    session: dt.date
    ts: list[int] = field(default_factory=list)  # ns, ascending
    values: list[F8] = field(default_factory=list)
    complete: bool = False  # holds every row of the session up to its newest

    def put(self, ts: int, values: F8) -> None:
        i = bisect_right(self.ts, ts)
        if i and self.ts[i - 1] == ts:  # a replayed row replaces the one with its key
            self.values[i - 1] = values
            return
        self.ts.insert(i, ts)
        self.values.insert(i, values)


class SessionCache:
    """The newest ``capacity`` rows of each (symbol, feature_set_version)'s current session.

    :meth:`rows` answers only when it can answer exactly as the store would for the newest
    rows: it holds at least ``limit`` rows of the session, or every row of the session (it saw
    the session begin, or the store said it had fewer). Otherwise None: read the store (and
    :meth:`seed` the cache with the answer)."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, row: FeatureRow) -> None:
        session = session_of(row.ts)
        key = (row.symbol, row.feature_set_version)
        with self._lock:
            e = self._entries.get(key)
            if e is None or session > e.session:
                # a tracked symbol's next session starts with this row (the feed is in order
                # per symbol); a symbol first seen now may have older rows of it elsewhere
                tracked = e is not None and (e.complete or len(e.ts) >= self.capacity)
                e = self._entries[key] = _Entry(session, complete=tracked)
            elif session < e.session:
                return  # a replay of an older session
            e.put(int(row.ts.value), row.values)
            self._trim(e)

    def seed(self, symbol: str, fsv: int, frame: pd.DataFrame, limit: int) -> None:
        """Merge the store's answer for the symbol's newest ``limit`` rows (oldest first)."""
        if frame.empty:
            return
        ts = pd.DatetimeIndex(frame["ts"])
        session = session_of(ts[-1])
        values = frame.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
        with self._lock:
            e = self._entries.get((symbol, fsv))
            if e is not None and e.session > session:
                return
            if e is None or e.session < session:
                e = self._entries[(symbol, fsv)] = _Entry(session)
            for t, v in zip(ts.asi8.tolist(), values, strict=True):
                i = bisect_right(e.ts, t)
                if not (i and e.ts[i - 1] == t):  # the feed's copy of a row wins
                    e.put(t, v)
            e.complete = e.complete or len(frame) < limit
            self._trim(e)

    def mark_complete(self, symbol: str, fsv: int, session: dt.date) -> None:
        """The cache holds every row of ``session`` (the store had none before them)."""
        with self._lock:
            e = self._entries.get((symbol, fsv))
            if e is not None and e.session == session and len(e.ts) < self.capacity:
                e.complete = True

    def _trim(self, e: _Entry) -> None:
        extra = len(e.ts) - self.capacity
        if extra > 0:
            del e.ts[:extra], e.values[:extra]
            e.complete = False

    def rows(
        self, symbol: str, fsv: int, limit: int, upto: pd.Timestamp | None = None,
        *, partial: bool = False,
    ) -> tuple[F8, pd.Timestamp] | None:  # fmt: skip
        """The newest ``limit`` rows (``FEATURE_COLUMNS`` order, oldest first) at or before
        ``upto`` and the newest row's time; None when the cache cannot answer exactly
        (``partial``: answer with what it has)."""
        with self._lock:
            e = self._entries.get((symbol, fsv))
            if e is None:
                return None
            n = len(e.ts) if upto is None else bisect_right(e.ts, int(upto.value))
            if n == 0 or (n < limit and not (e.complete or partial)):
                return None
            picked = e.values[max(0, n - limit) : n]
            newest = e.ts[n - 1]
        return np.vstack(picked), pd.Timestamp(newest, tz="UTC")


# ---- messages -----------------------------------------------------------------------------------
def prediction_json(p: Prediction, predicted_at_ns: int | None = None) -> bytes:
    """One ``market.predictions`` value (schemas/json/prediction.v1.json); also the WebSocket
    message."""
    if p.ts is None or p.symbol is None:
        raise ValueError("a streamed prediction has a symbol and a time")
    ts = pd.Timestamp(p.ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "symbol": p.symbol,
        "ts": int(ts.value),
        "ts_iso": ts.isoformat(),
        "model_name": p.model_name,
        "model_version": p.model_version,
        "feature_set_version": p.feature_set_version,
        "prediction": p.label,
        "probabilities": dict(zip(p.classes, p.probabilities, strict=True)) if p.classes else None,
        "score": p.score,
        "threshold": p.threshold,
        "is_anomaly": p.is_anomaly,
        "predicted_at": time.time_ns() if predicted_at_ns is None else predicted_at_ns,
    }
    return orjson.dumps(out)


def prediction_rows(predictions: Sequence[Prediction]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``predictions`` rows of a batch, and the ``anomalies`` rows of the scores over the
    model's threshold. ``value``: the predicted class's probability, or the score."""
    preds: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    for p in predictions:
        if p.classes:
            value = max(p.probabilities)
            label: str | None = p.label
        else:
            assert p.score is not None
            value = p.score
            label = None if p.is_anomaly is None else ("anomaly" if p.is_anomaly else "normal")
            if p.is_anomaly:
                anomalies.append({"symbol": p.symbol, "ts": p.ts, "model_version": p.model_version,
                                  "score": p.score, "is_anomaly": True})  # fmt: skip
        preds.append({"symbol": p.symbol, "ts": p.ts, "model_name": p.model_name,
                      "model_version": p.model_version, "value": value, "label": label,
                      "feature_set_version": p.feature_set_version})  # fmt: skip
    return pd.DataFrame(preds), pd.DataFrame(anomalies)


class KafkaPredictionPublisher:
    """Predictions → ``market.predictions`` (key = symbol), idempotent producer, acks=all."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )

    def publish(self, messages: Sequence[tuple[str, bytes]], timeout_s: float = 30.0) -> None:
        """Send and wait for the broker's acknowledgements (before the feed commits)."""
        failed: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        for symbol, value in messages:
            self._producer.produce(self.topic, key=symbol.encode(), value=value, on_delivery=done)
            self._producer.poll(0)
        left = self._producer.flush(timeout_s)
        if left or failed:
            raise RuntimeError(f"{self.topic}: {left} unacknowledged, errors {failed[:3]}")

    def close(self) -> None:
        self._producer.flush(10)


# ---- fan-out ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subscription:
    symbols: frozenset[str] | None  # None: every symbol
    models: frozenset[str]

    def wants(self, symbol: str, model: str) -> bool:
        return model in self.models and (self.symbols is None or symbol in self.symbols)


class Subscriber:
    """One client: its subscription and bounded queue (made on the event loop)."""

    def __init__(self, subscription: Subscription, max_queue: int) -> None:
        self.subscription = subscription
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max_queue)
        self.dropped = asyncio.Event()


Message = tuple[str, str, bytes]  # symbol, model, JSON


class Hub:
    """The subscribers; :meth:`publish` runs on the event loop (never blocks)."""

    def __init__(self, metrics: ServingMetrics | None = None) -> None:
        self.metrics = metrics
        self._subscribers: set[Subscriber] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def add(self, s: Subscriber) -> None:
        self._subscribers.add(s)
        if self.metrics is not None:
            self.metrics.ws_clients.set(len(self._subscribers))

    def remove(self, s: Subscriber) -> None:
        self._subscribers.discard(s)
        if self.metrics is not None:
            self.metrics.ws_clients.set(len(self._subscribers))

    def publish(self, messages: Iterable[Message]) -> None:
        batch = list(messages)
        for s in list(self._subscribers):
            if s.dropped.is_set():
                continue
            for symbol, model, value in batch:
                if not s.subscription.wants(symbol, model):
                    continue
                try:
                    s.queue.put_nowait(value)
                except asyncio.QueueFull:  # it stopped reading: drop it, never wait for it
                    s.dropped.set()
                    self.remove(s)
                    if self.metrics is not None:
                        self.metrics.ws_dropped.inc()
                    break


# ---- the predictor ------------------------------------------------------------------------------
class LivePredictor:
    """Feed → predictions → fan-out, store, Kafka → commit, on a thread of its own."""

    def __init__(
        self,
        feed: FeatureFeed,
        dataplane: DataPlane,
        *,
        cache: SessionCache,
        store: Store | None = None,
        publisher: KafkaPredictionPublisher | None = None,
        fanout: Callable[[list[Message]], None] | None = None,
        metrics: ServingMetrics | None = None,
        poll_s: float = 0.5,
        backoff_cap_s: float = 10.0,
    ) -> None:
        self.feed = feed
        self.dataplane = dataplane
        self.cache = cache
        self.store = store
        self.publisher = publisher
        self.fanout = fanout
        self.metrics = metrics
        self.poll_s = poll_s
        self.backoff_cap_s = backoff_cap_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if metrics is not None:
            feed.on_reject = lambda _why: metrics.feed_rejected.inc()

    # ---- one batch (synchronous: tests call it directly) ---------------------------------------
    def predict(self, rows: Sequence[FeatureRow]) -> list[Prediction]:
        """Each row (in time order per symbol) through every loaded model of its feature set;
        a row enters the cache just before it is predicted, so each sees the rows up to it."""
        out: list[Prediction] = []
        models = self.dataplane.repository.models
        for r in sorted(rows, key=lambda r: (r.symbol, r.ts.value)):
            self.cache.add(r)
            for model in models.values():
                if model.bundle.meta.feature_set_version != r.feature_set_version:
                    continue
                try:
                    matrix = self._session_rows(model, r)
                    p = self.dataplane.predict_rows(
                        model, matrix, symbol=r.symbol, ts=r.ts.to_pydatetime()
                    )
                except Exception as err:  # one bad row never stops the stream
                    log.warning("serving.live_predict_failed", model=model.name,
                                symbol=r.symbol, ts=r.ts.isoformat(), error=str(err))  # fmt: skip
                    self._error("predict")
                    continue
                self.dataplane.observe(p)
                out.append(p)
        return out

    def _session_rows(self, model: LoadedModel, r: FeatureRow) -> F8 | pd.DataFrame:
        """The session's rows up to ``r`` (the last ``sequence_length``): from the cache; on a
        miss the store's rows merged into it (the store may lag the feed, or lack rows the
        feed delivered: the union of both is the answer)."""
        limit = model.bundle.meta.sequence_length or 1
        fsv = r.feature_set_version
        if limit == 1:
            return r.values[None, :] if cacheable(model) else r.frame()
        if not cacheable(model):
            return self._store_rows(r, limit)
        got = self.cache.rows(r.symbol, fsv, limit, upto=r.ts)
        if got is None and self.store is not None:
            stored = self._stored(r, limit)
            if stored.empty:  # nothing of this session before r in the store: r starts it
                self.cache.mark_complete(r.symbol, fsv, session_of(r.ts))
            else:
                self.cache.seed(r.symbol, fsv, stored, limit)
        if got is None:
            got = self.cache.rows(r.symbol, fsv, limit, upto=r.ts, partial=True)
        if got is None or got[1] != r.ts:  # a replayed row older than the cache keeps
            return self._store_rows(r, limit)
        return got[0]

    def _stored(self, r: FeatureRow, limit: int) -> pd.DataFrame:
        """The store's newest ``limit`` rows of r's session at or before r."""
        if self.store is None:
            return r.frame().iloc[0:0]
        stored = self.store.session_features(r.symbol, limit, r.feature_set_version, as_of=r.ts)
        if len(stored) and session_of(pd.Timestamp(stored["ts"].iloc[-1])) != session_of(r.ts):
            return stored.iloc[0:0]  # the store's newest rows are of an earlier session
        return stored

    def _store_rows(self, r: FeatureRow, limit: int) -> pd.DataFrame:
        """The store's rows before r, and r (the store may lag the feed)."""
        stored = self._stored(r, limit)
        rows = pd.concat([stored[stored["ts"] < r.ts], r.frame()], ignore_index=True)
        return rows.tail(limit).reset_index(drop=True)

    def handle(self, rows: Sequence[FeatureRow]) -> list[Prediction]:
        """One batch: predict, fan out, store, publish (the caller commits the feed after)."""
        predictions = self.predict(rows)
        if not predictions:
            return predictions
        stamp = time.time_ns()
        messages = [(str(p.symbol), p.model_name, prediction_json(p, stamp)) for p in predictions]
        if self.fanout is not None:
            self.fanout(messages)
        preds, anomalies = prediction_rows(predictions)
        if self.store is not None:
            store = self.store
            self._retry("store", lambda: store.write_predictions(preds))
            if len(anomalies):
                self._retry("store", lambda: store.write_anomalies(anomalies))
        if self.publisher is not None:
            publisher = self.publisher
            self._retry("kafka", lambda: publisher.publish([(s, v) for s, _m, v in messages]))
        if self.metrics is not None:
            self.metrics.live_predictions.inc(len(predictions))
        return predictions

    def _retry(self, stage: str, fn: Callable[[], Any]) -> None:
        """``fn`` until it succeeds (backoff 0.5 s doubling to the cap) or the predictor stops:
        the feed is not committed before, so nothing is lost."""
        wait = 0.5
        while True:
            try:
                fn()
                return
            except Exception as err:
                self._error(stage)
                log.warning("serving.live_write_failed", stage=stage, error=str(err),
                            retry_in_s=wait)  # fmt: skip
                if self._stop.wait(wait):
                    raise
                wait = min(wait * 2, self.backoff_cap_s)

    def _error(self, stage: str) -> None:
        if self.metrics is not None:
            self.metrics.live_errors.labels(stage).inc()

    # ---- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        wait = 0.5
        while not self._stop.is_set():
            try:
                rows = self.feed.poll(self.poll_s)
                if rows:
                    if self.metrics is not None:
                        self.metrics.feed_rows.inc(len(rows))
                    self.handle(rows)
                self.feed.commit()
                wait = 0.5
            except Exception as err:  # a feed that fails is retried, never a dead thread
                if self._stop.is_set():
                    break
                log.error("serving.live_failed", error=str(err), retry_in_s=wait)
                self._error("feed")
                self._stop.wait(wait)
                wait = min(wait * 2, self.backoff_cap_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="live-predictor", daemon=True)
        self._thread.start()
        log.info("serving.live_started", feed=self.feed.description)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the batch in hand (a poll waits ``poll_s`` at most), then close the feed
        — on this thread once the predictor's is done: a Kafka consumer is not closed under a
        thread polling it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            alive = self._thread.is_alive()
            self._thread = None
            if alive:  # stuck in a write to a store that is away: leave its feed to it
                log.warning("serving.live_stop_timeout", timeout_s=timeout_s)
                return
        self.feed.close()
        if self.publisher is not None:
            self.publisher.close()


def loop_fanout(loop: asyncio.AbstractEventLoop, hub: Hub) -> Callable[[list[Message]], None]:
    """A fan-out callable for the predictor's thread: the hub's publish, run on ``loop``."""

    def fanout(messages: list[Message]) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(hub.publish, messages)

    return fanout


__all__ = [
    "CLOSE_BAD_SUBSCRIPTION",
    "CLOSE_SUBSCRIBE_TIMEOUT",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "Hub",
    "KafkaPredictionPublisher",
    "LivePredictor",
    "SessionCache",
    "Subscriber",
    "Subscription",
    "cacheable",
    "loop_fanout",
    "prediction_json",
    "prediction_rows",
    "session_of",
]
