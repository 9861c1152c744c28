"""Health checks and the one readiness semantics every service answers with.

A check is a callable returning ``(ok, why)``: ``why`` says what is wrong when ``ok`` is false
(and is ``"ok"`` or a short status otherwise). A probe runs its checks in order and answers:

- 200 ``{"status": "ok"}`` when every check passes;
- 503 ``{"status": "unavailable", "reason": why}`` with the first failing check's reason;
- 503 ``{"status": "unavailable", "reason": "check failed: <error>"}`` when a check raises: a
  broken check makes the service unready, it never breaks the HTTP server.

The HTTP server (:mod:`signalstack.observability.server`) and the FastAPI helper
(:mod:`signalstack.observability.fastapi`) both answer through :func:`probe` and
:func:`metrics_payload`, so every service has the same paths, bodies and status codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

Check = Callable[[], tuple[bool, str]]

#: the paths every service serves (``/health`` is liveness, for humans and old probes)
METRICS_PATH: Final = "/metrics"
LIVE_PATH: Final = "/health/live"
READY_PATH: Final = "/health/ready"
HEALTH_PATH: Final = "/health"
JSON: Final = "application/json"


def always_ok() -> tuple[bool, str]:
    """The liveness of a process whose HTTP thread answers at all."""
    return True, "ok"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str

    @property
    def status_code(self) -> int:
        return 200 if self.ok else 503

    def body(self) -> bytes:
        if self.ok:
            return orjson.dumps({"status": "ok"})
        return orjson.dumps({"status": "unavailable", "reason": self.reason})


def probe(checks: Sequence[Check]) -> ProbeResult:
    """Run ``checks`` in order; the first that fails (or raises) gives the reason."""
    for check in checks:
        try:
            ok, why = check()
        except Exception as err:  # a broken check answers 503, never kills the server
            return ProbeResult(False, f"check failed: {err!r}")
        if not ok:
            return ProbeResult(False, why or "not ready")
    return ProbeResult(True, "ok")


def metrics_payload(
    registry: CollectorRegistry | None = None, accept: str | None = None
) -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (Prometheus text or OpenMetrics)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry if registry is not None else REGISTRY), content_type


__all__ = [
    "HEALTH_PATH",
    "JSON",
    "LIVE_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "Check",
    "ProbeResult",
    "always_ok",
    "metrics_payload",
    "probe",
]
