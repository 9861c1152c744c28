"""``GET /health`` (what is loaded, from where, what failed; open like the probes). The probes
``/health/live`` and ``/health/ready`` and ``/metrics`` come from :mod:`signalstack.observability`
like every service's."""

from __future__ import annotations

from fastapi import APIRouter, Response

from signalstack.serving.dependencies import DataPlaneDep
from signalstack.serving.schemas import HealthResponse

health_router = APIRouter(tags=["health"])


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
