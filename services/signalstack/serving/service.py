"""``signalstack serve``: the inference API under uvicorn (one worker; scale out with replicas).

Models come from ``SERVING_MODEL_DIR`` when set (one bundle directory per model), otherwise
from the MLflow registry alias ``MLFLOW_MODEL_ALIAS`` of ``<MLFLOW_MODEL_PREFIX><model>``;
feature rows for prediction by symbol from the store (``STORE_TYPE``).
"""

from __future__ import annotations

import uvicorn

from signalstack.config import Settings
from signalstack.logs import get_logger
from signalstack.serving.app import create_app
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


def run(settings: Settings) -> None:
    """Serve until SIGINT / SIGTERM (uvicorn's graceful shutdown: in-flight requests finish)."""
    s = settings.serving
    metrics = ServingMetrics()
    source = model_source(settings)
    repository = ModelRepository(source, s.models, interval_s=s.reload_interval_s, metrics=metrics)
    store = open_store(settings)
    try:
        app = create_app(settings, repository, store, metrics=metrics)
        log.info("serving.start", host=s.host, port=s.port, source=source.description)
        config = uvicorn.Config(
            app, host=s.host, port=s.port, log_config=None, access_log=False, lifespan="on"
        )
        uvicorn.Server(config).run()
    finally:
        repository.stop()
        store.close()


__all__ = ["model_source", "run"]
