"""Live predictions: new feature rows (a :class:`~signalstack.serving.feeds.FeatureFeed`) →
each served model's prediction → the WebSocket subscribers, ``market.predictions`` and the
``predictions`` / ``anomalies`` tables.

:class:`LivePredictor`: a thread polling the feed; per row and model ``DataPlane.predict_rows``
(the same path as ``/predict``; the LSTM's sequence from the
:class:`~signalstack.serving.cache.SessionCache`), then the fan-out to the
:class:`~signalstack.serving.hub.Hub`, the store (idempotent upserts on the tables' keys,
retried with backoff), Kafka (when configured) and only then the feed's commit: at least once,
never a duplicate row. The message is :func:`prediction_json` (schemas/json/prediction.v1.json).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from signalstack.logs import get_logger
from signalstack.serving.background import Background
from signalstack.serving.cache import SessionCache, cacheable, session_of
from signalstack.serving.feeds import FeatureFeed, FeatureRow
from signalstack.serving.hub import Hub, Message
from signalstack.serving.repository import LoadedModel

if TYPE_CHECKING:
    from signalstack.serving.dataplane import DataPlane, Prediction
    from signalstack.serving.metrics import ServingMetrics
    from signalstack.store.base import Store

log = get_logger(__name__)

F8 = npt.NDArray[np.float64]
SCHEMA_VERSION: Final = 1


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


# ---- the predictor ------------------------------------------------------------------------------
class LivePredictor(Background):
    """Feed → predictions → fan-out, store, Kafka → commit, on a thread of its own."""

    thread_name = "live-predictor"

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
        super().__init__()
        self.feed = feed
        self.dataplane = dataplane
        self.cache = cache
        self.store = store
        self.publisher = publisher
        self.fanout = fanout
        self.metrics = metrics
        self.poll_s = poll_s
        self.backoff_cap_s = backoff_cap_s
        if metrics is not None:
            feed.on_reject = lambda _why: metrics.feed_rejected.inc()
            feed.on_lag = metrics.feed_consumer_lag.set
        # a rebalance: the symbols' rows before it are not those after it (another replica
        # had the partition meanwhile), so no sequence may join them
        feed.on_rebalance = cache.clear

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
        if got is not None:
            return got[0]
        held = self.cache.rows(r.symbol, fsv, limit, upto=r.ts, partial=True)
        if held is None or held[1] != r.ts:  # a replayed row older than the cache keeps
            return self._store_rows(r, limit)
        if self.store is None:
            return held[0]
        stored = self._stored(r, limit)
        if stored.empty:  # nothing of this session before r in the store: r starts it
            self.cache.mark_complete(r.symbol, fsv, session_of(r.ts))
            return held[0]
        self.cache.seed(r.symbol, fsv, stored, limit)
        got = self.cache.rows(r.symbol, fsv, limit, upto=r.ts)
        if got is None or got[1] != r.ts:  # the cache keeps newer rows than these: the store
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
                    try:
                        self.handle(rows)
                    except Exception:  # never committed: the next poll delivers it again
                        self.feed.rewind()
                        raise
                self.feed.commit()
                wait = 0.5
            except Exception as err:  # a feed that fails is retried, never a dead thread
                if self._stop.is_set():
                    break
                log.error("serving.live_failed", error=str(err), retry_in_s=wait)
                self._error("feed")
                self._stop.wait(wait)
                wait = min(wait * 2, self.backoff_cap_s)

    def _started(self) -> None:
        log.info("serving.live_started", feed=self.feed.description)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the batch in hand (a poll waits ``poll_s`` at most), then close the feed
        — on this thread once the predictor's is done: a Kafka consumer is not closed under a
        thread polling it."""
        if not self._halt(timeout_s):  # stuck in a write to a store that is away: leave its feed
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
    "KafkaPredictionPublisher",
    "LivePredictor",
    "loop_fanout",
    "prediction_json",
    "prediction_rows",
]
