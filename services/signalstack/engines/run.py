"""``signalstack stream --engine local|spark``: build the engine from settings and run it.

The CLI calls :func:`run`; ``spark-apps/stream/main.py`` (the SparkApplication entry point)
calls :func:`run_spark`. Settings come from the environment (KAFKA_*, STORE_*, MARKET_*) plus
the stream-specific options below (also readable from STREAM_* variables).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from typing import Literal

from signalstack.config import Settings
from signalstack.engines.alloc import reuse_freed_arrays
from signalstack.engines.base import EngineStats
from signalstack.engines.kafka_io import KafkaFeaturePublisher, kafka_batches
from signalstack.engines.local import LocalEngine
from signalstack.features.trades import TradeBatch
from signalstack.logs import get_logger

log = get_logger(__name__)


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v else default


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
    lateness = lateness_ms if lateness_ms is not None else _env_int("STREAM_LATENESS_MS", 5_000)
    if engine == "spark":
        return run_spark(settings, lateness_ms=lateness, checkpoint_dir=checkpoint_dir)
    from signalstack.store import open_store

    reuse_freed_arrays()
    store = open_store(settings)
    publisher = (
        KafkaFeaturePublisher(settings.kafka.bootstrap_servers, settings.kafka.features_topic)
        if (publish and source is None)
        else None
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
    """Run the Spark job in this process (``spark.master`` from SPARK_MASTER, default local[2])."""
    from signalstack.engines.spark import SparkEngine, SparkJobConfig
    from signalstack.store import open_store

    cfg = SparkJobConfig(
        bootstrap=settings.kafka.bootstrap_servers,
        checkpoint_dir=checkpoint_dir
        or os.environ.get("STREAM_CHECKPOINT_DIR", ".cache/checkpoints/stream"),
        trades_topic=settings.kafka.trades_topic,
        features_topic=settings.kafka.features_topic,
        dlq_topic=settings.kafka.dlq_topic,
        lateness_ms=lateness_ms,
        trigger_seconds=float(os.environ.get("STREAM_TRIGGER_SECONDS", "1")),
        shuffle_partitions=_env_int("STREAM_SHUFFLE_PARTITIONS", 2),
        extended_hours=settings.market.extended_hours,
        calendar=settings.market.calendar,
        master=os.environ.get("SPARK_MASTER", "local[2]"),
    )
    store = open_store(settings)
    publisher = KafkaFeaturePublisher(
        settings.kafka.bootstrap_servers, settings.kafka.features_topic
    )
    try:
        return SparkEngine(cfg, store, publisher=publisher).run()
    finally:
        store.close()
