"""``signalstack stream --engine local|spark``: build the engine from settings and run it.

The CLI calls :func:`run`; ``spark-apps/stream/main.py`` (the SparkApplication entry point)
calls :func:`run_spark`. Settings come from the environment (KAFKA_*, STORE_*, MARKET_*) plus
the stream-specific options below (also readable from STREAM_* variables).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

from signalstack.config import Settings
from signalstack.engines.alloc import reuse_freed_arrays
from signalstack.engines.base import EngineStats, FeaturePublisher
from signalstack.engines.kafka_io import KafkaFeaturePublisher, kafka_batches
from signalstack.engines.local import LocalEngine
from signalstack.features.trades import TradeBatch
from signalstack.logs import get_logger

log = get_logger(__name__)


def run(
    settings: Settings,
    engine: Literal["local", "spark"] = "local",
    *,
    source: Iterable[TradeBatch] | None = None,
    lateness_ms: int | None = None,
    checkpoint_dir: str | None = None,
    publish: bool = True,
) -> EngineStats:
    """Run the stream component until its source ends (bounded) or forever (Kafka).

    ``source``: an in-process iterator of trade batches — pandas frames or Arrow record batches
    (embedded default); when None the local engine consumes Kafka ``market.trades``. The local
    engine's process gets the allocator setting of :mod:`signalstack.engines.alloc`.
    """
    lateness = lateness_ms if lateness_ms is not None else settings.stream.lateness_ms
    if engine == "spark":
        return run_spark(settings, lateness_ms=lateness, checkpoint_dir=checkpoint_dir)
    from signalstack.store import open_store

    reuse_freed_arrays()
    store = open_store(settings)
    publisher: FeaturePublisher | None = None
    log_dir = settings.stream.feature_log_dir
    if publish and log_dir is not None:  # the feature log a `serve` with SERVING_FEED=local reads
        from signalstack.serving.feeds import FeatureLogPublisher

        publisher = FeatureLogPublisher(log_dir)
    elif publish and source is None:
        publisher = KafkaFeaturePublisher(
            settings.kafka.bootstrap_servers, settings.kafka.features_topic
        )
    batches = (
        source
        if source is not None
        else kafka_batches(settings.kafka.bootstrap_servers, settings.kafka.trades_topic)
    )
    eng = LocalEngine(
        store,
        publisher=publisher,
        source=batches,
        lateness=dt.timedelta(milliseconds=lateness),
        extended_hours=settings.market.extended_hours,
        calendar=settings.market.calendar,
    )
    try:
        return eng.run(flush_at_end=source is not None)
    finally:
        store.close()


def run_spark(
    settings: Settings, *, lateness_ms: int = 5_000, checkpoint_dir: str | None = None
) -> EngineStats:
    """Run the Spark job in this process (``spark.master`` from STREAM_SPARK_MASTER)."""
    from signalstack.engines.spark import SparkEngine, SparkJobConfig
    from signalstack.store import open_store

    cfg = SparkJobConfig(
        bootstrap=settings.kafka.bootstrap_servers,
        checkpoint_dir=checkpoint_dir or settings.stream.checkpoint_dir,
        trades_topic=settings.kafka.trades_topic,
        features_topic=settings.kafka.features_topic,
        dlq_topic=settings.kafka.dlq_topic,
        lateness_ms=lateness_ms,
        trigger_seconds=settings.stream.trigger_seconds,
        shuffle_partitions=settings.stream.shuffle_partitions,
        extended_hours=settings.market.extended_hours,
        calendar=settings.market.calendar,
        master=settings.stream.spark_master,
    )
    store = open_store(settings)
    publisher = KafkaFeaturePublisher(
        settings.kafka.bootstrap_servers, settings.kafka.features_topic
    )
    try:
        http = (settings.stream.http_host, settings.stream.http_port)  # /metrics, /health/*
        return SparkEngine(cfg, store, publisher=publisher, http=http).run()
    finally:
        store.close()
