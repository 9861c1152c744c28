"""The inference API as a FastAPI app: :func:`create_app` wires the model repository, the data
plane, the routers, the error map, auth, the body limit, metrics, (optional) CORS and — given a
feature feed — the live predictions behind ``WS /ws/predictions``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from signalstack import __version__
from signalstack.config import Settings
from signalstack.observability.fastapi import health_router as observability_router
from signalstack.observability.fastapi import metrics_router
from signalstack.serving.auth import require_token
from signalstack.serving.cache import SessionCache
from signalstack.serving.dataplane import DataPlane
from signalstack.serving.errors import install_error_handlers
from signalstack.serving.fanout import KafkaPredictionFanout, describe
from signalstack.serving.feeds import FeatureFeed
from signalstack.serving.hub import Hub
from signalstack.serving.live import KafkaPredictionPublisher, LivePredictor, loop_fanout
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.middleware import BodyLimitMiddleware, MetricsMiddleware
from signalstack.serving.repository import ModelRepository
from signalstack.serving.routers import health, predict, v2, ws
from signalstack.store.base import Store


def create_app(
    settings: Settings,
    repository: ModelRepository,
    store: Store | None = None,
    *,
    metrics: ServingMetrics | None = None,
    feed: FeatureFeed | None = None,
    publisher: KafkaPredictionPublisher | None = None,
    fanout: KafkaPredictionFanout | None = None,
) -> FastAPI:
    """The app. Its lifespan starts the repository's polling (models load in the background:
    readiness is 503 until they have) and stops it — unless the caller started it already,
    in which case the caller stops it too. With a ``feed``, the lifespan also runs the live
    predictor (predictions to the WebSocket clients, the store and ``publisher``), and its
    session cache answers ``/predict`` by symbol. With a ``fanout`` (the cluster), the
    WebSocket clients get ``market.predictions`` — every replica's predictions — instead of
    this process's predictor's alone."""
    metrics = metrics or repository.metrics or ServingMetrics()
    if repository.metrics is None:
        repository.metrics = metrics
    s = settings.serving
    hub = Hub(metrics)
    cache = SessionCache(s.cache_rows) if feed is not None else None
    dataplane = DataPlane(repository, store, metrics, cache=cache)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = not repository.running
        repository.start()
        predictor: LivePredictor | None = None
        to_hub = loop_fanout(asyncio.get_running_loop(), hub)
        if fanout is not None:
            fanout.deliver = to_hub
            fanout.start()
        if feed is not None and cache is not None:
            predictor = LivePredictor(
                feed, dataplane, cache=cache, store=store, publisher=publisher,
                fanout=to_hub if fanout is None else None, metrics=metrics,
            )  # fmt: skip
            predictor.start()
        app.state.predictor = predictor
        app.state.loop = asyncio.get_running_loop()  # the hub's: publish runs on it
        try:
            yield
        finally:
            if predictor is not None:
                await asyncio.to_thread(predictor.stop)
            if fanout is not None:
                await asyncio.to_thread(fanout.stop)
            if owned:
                await asyncio.to_thread(repository.stop)

    app = FastAPI(
        title="SignalStack inference API",
        version=__version__,
        description=(
            "Open Inference Protocol v2 (/v2) and /predict/* for the regime (XGBoost), "
            "direction (LSTM) and anomaly (Isolation Forest) models."
        ),
        lifespan=lifespan,
    )
    app.state.dataplane = dataplane
    app.state.metrics = metrics
    app.state.live = ws.LiveConfig(
        hub=hub, models=repository.names, feed=describe(feed, fanout),
        queue_size=s.ws_queue_size, subscribe_timeout_s=s.ws_subscribe_timeout_s,
        token=s.api_token,
    )  # fmt: skip
    install_error_handlers(app)

    token = settings.serving.api_token
    guarded = [Depends(require_token(token))] if token and token.get_secret_value() else []
    app.include_router(v2.health_router)
    app.include_router(health.health_router)  # /health: the detailed status page
    # /health/live, /health/ready and /metrics as every service serves them (one module, one
    # readiness semantics); /metrics behind the token when one is set, the probes open.
    app.include_router(
        observability_router(
            ready=(lambda: (dataplane.ready(), "models not loaded yet"),),
            metrics=False,
            health_alias=False,
        )
    )
    app.include_router(v2.router, dependencies=guarded)
    app.include_router(predict.router, dependencies=guarded)
    app.include_router(metrics_router(metrics.registry), dependencies=guarded)
    app.include_router(ws.router)  # checks the token itself (a WebSocket has no 401)

    # outermost last: metrics see every response, the 413s included
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serving.max_body_bytes)
    if settings.serving.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.serving.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


__all__ = ["create_app"]
