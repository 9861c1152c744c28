"""``GET /health`` (what is loaded, from where, what failed; open like the probes) and
``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from signalstack.serving.dependencies import DataPlaneDep, MetricsDep
from signalstack.serving.schemas import HealthResponse

health_router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])


@health_router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Models not loaded yet"}},
)
async def health(dataplane: DataPlaneDep, response: Response) -> HealthResponse:
    """Status (``ok`` or ``loading``), the model source, each loaded model's version, kind,
    feature set and origin, and the last load failures."""
    d = dataplane.repository.describe()
    if not d["ready"]:
        response.status_code = 503
    return HealthResponse(status="ok" if d["ready"] else "loading", **d)


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text format"}},
)  # fmt: skip
async def metrics(m: MetricsDep) -> Response:
    """Prometheus metrics (``signalstack_serving_*``)."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
