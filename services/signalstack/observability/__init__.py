"""The HTTP side every service exposes, implemented once: ``/metrics`` (Prometheus),
``/health/live`` (and ``/health``), ``/health/ready``, with one readiness semantics
(:mod:`~signalstack.observability.probes`): a threaded server for the plain services
(:class:`HealthServer`) and a router for the FastAPI app
(:func:`signalstack.observability.fastapi.health_router`, imported on demand so the plain
services do not load FastAPI)."""

from signalstack.observability.probes import (
    HEALTH_PATH,
    LIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    Check,
    ProbeResult,
    always_ok,
    metrics_payload,
    probe,
)
from signalstack.observability.server import HealthServer

__all__ = [
    "HEALTH_PATH",
    "LIVE_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "Check",
    "HealthServer",
    "ProbeResult",
    "always_ok",
    "metrics_payload",
    "probe",
]
