"""The same endpoints for a FastAPI app: ``app.include_router(health_router(...))``.

Paths, bodies and status codes are those of :class:`~signalstack.observability.HealthServer`
(both answer through :func:`~signalstack.observability.probes.probe`). An app that already
serves its own ``/health`` (a richer status page) or guards ``/metrics`` with a token leaves
them out with ``health_alias=False`` / ``metrics=False`` and mounts :func:`metrics_router`
where it wants it.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry

from signalstack.observability.probes import (
    HEALTH_PATH,
    JSON,
    LIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    Check,
    always_ok,
    metrics_payload,
    probe,
)

_PROBE_DOC = {
    200: {"description": 'Healthy: `{"status": "ok"}`'},
    503: {"description": 'Not healthy: `{"status": "unavailable", "reason": "…"}`'},
}


def metrics_router(registry: CollectorRegistry | None = None) -> APIRouter:
    """``GET /metrics``: the registry (None: the default one), content-negotiated."""
    router = APIRouter(tags=["observability"])

    @router.get(METRICS_PATH, response_class=Response, include_in_schema=True)
    def metrics(request: Request) -> Response:
        body, ctype = metrics_payload(registry, request.headers.get("accept"))
        return Response(body, media_type=ctype)

    return router


def health_router(
    *,
    live: Sequence[Check] = (always_ok,),
    ready: Sequence[Check] = (),
    registry: CollectorRegistry | None = None,
    metrics: bool = True,
    health_alias: bool = True,
) -> APIRouter:
    """``/health/live``, ``/health/ready`` (+ ``/health`` as live, + ``/metrics``)."""
    live_checks, ready_checks = tuple(live), tuple(ready)
    router = APIRouter(tags=["observability"])

    def answer(checks: tuple[Check, ...]) -> Response:
        result = probe(checks)
        return Response(result.body(), status_code=result.status_code, media_type=JSON)

    @router.get(LIVE_PATH, responses=_PROBE_DOC)  # type: ignore[arg-type]
    def health_live() -> Response:
        return answer(live_checks)

    @router.get(READY_PATH, responses=_PROBE_DOC)  # type: ignore[arg-type]
    def health_ready() -> Response:
        return answer(ready_checks)

    if health_alias:
        router.add_api_route(HEALTH_PATH, health_live, methods=["GET"], responses=_PROBE_DOC)  # type: ignore[arg-type]
    if metrics:
        router.include_router(metrics_router(registry))
    return router


__all__ = ["health_router", "metrics_router"]
