"""``signalstack serve``: the inference API under uvicorn (one worker; scale out with replicas).

Models come from ``SERVING_MODEL_DIR`` when set (one bundle directory per model), otherwise
from the MLflow registry alias ``MLFLOW_MODEL_ALIAS`` of ``<MLFLOW_MODEL_PREFIX><model>``;
feature rows for prediction by symbol from the store (``STORE_TYPE``). ``SERVING_FEED`` picks
where live predictions' new feature rows come from (see :mod:`signalstack.serving.feeds`);
``SERVING_WS_FANOUT`` where the WebSocket clients' predictions come from (see
:mod:`signalstack.serving.fanout`): in the cluster the replicas share the feed's consumer group
(each row predicted once) and each forwards ``market.predictions`` to its clients.
"""

from __future__ import annotations

import uvicorn

from signalstack.config import Settings
from signalstack.logs import get_logger
from signalstack.serving.app import create_app
from signalstack.serving.fanout import KafkaPredictionFanout
from signalstack.serving.feeds import (
    FeatureFeed,
    KafkaFeatureFeed,
    LocalFeatureFeed,
    group_id,
)
from signalstack.serving.live import KafkaPredictionPublisher
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import (
    DirectorySource,
    ModelRepository,
    ModelSource,
    RegistrySource,
)
from signalstack.store.base import open_store

log = get_logger(__name__)


def model_source(settings: Settings) -> ModelSource:
    s = settings.serving
    if s.model_dir is not None:
        return DirectorySource(s.model_dir)
    m = settings.mlflow
    return RegistrySource(m.tracking_uri, alias=m.model_alias, prefix=m.model_prefix)


def live_feed(settings: Settings) -> tuple[FeatureFeed | None, KafkaPredictionPublisher | None]:
    """The feed ``SERVING_FEED`` names, and the ``market.predictions`` publisher (Kafka only)."""
    s, k = settings.serving, settings.kafka
    if s.feed == "kafka":
        if "{hostname}" in s.feed_group_id:
            why = "each replica predicts and publishes every row: share one group"
            log.warning("serving.feed_group_per_replica", group=s.feed_group_id, why=why)
        feed = KafkaFeatureFeed(k.bootstrap_servers, k.features_topic, group_id(s.feed_group_id))
        return feed, KafkaPredictionPublisher(k.bootstrap_servers, k.predictions_topic)
    if s.feed == "local":
        assert s.feed_dir is not None  # the settings refuse local without a directory
        return LocalFeatureFeed(s.feed_dir), None
    return None, None


def live_fanout(
    settings: Settings, metrics: ServingMetrics | None = None
) -> KafkaPredictionFanout | None:
    """The WebSocket fan-out ``SERVING_WS_FANOUT`` names: ``market.predictions`` (kafka; auto
    with the Kafka feed), or None — the predictor's own messages (feed)."""
    s, k = settings.serving, settings.kafka
    mode = s.ws_fanout if s.ws_fanout != "auto" else ("kafka" if s.feed == "kafka" else "feed")
    if mode == "kafka":
        return KafkaPredictionFanout(k.bootstrap_servers, k.predictions_topic, metrics=metrics)
    return None


def run(settings: Settings) -> None:
    """Serve until SIGINT / SIGTERM (uvicorn's graceful shutdown: in-flight requests finish)."""
    s = settings.serving
    metrics = ServingMetrics()
    source = model_source(settings)
    repository = ModelRepository(source, s.models, interval_s=s.reload_interval_s, metrics=metrics)
    store = open_store(settings)
    try:
        feed, publisher = live_feed(settings)
        fanout = live_fanout(settings, metrics)
        app = create_app(
            settings, repository, store, metrics=metrics, feed=feed, publisher=publisher,
            fanout=fanout,
        )  # fmt: skip
        log.info("serving.start", host=s.host, port=s.port, source=source.description,
                 feed=feed.description if feed is not None else "none")  # fmt: skip
        config = uvicorn.Config(
            app, host=s.host, port=s.port, log_config=None, access_log=False, lifespan="on"
        )
        uvicorn.Server(config).run()
    finally:
        repository.stop()
        store.close()


__all__ = ["live_fanout", "live_feed", "model_source", "run"]
