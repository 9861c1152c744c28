"""Prometheus metrics of a drift pass (``signalstack_drift_*``).

The drift job is a CronJob: each pass fills its own registry, which is pushed to a Pushgateway
(``DRIFT_PUSHGATEWAY_URL``, job ``signalstack-drift``) when configured. Pushing is best effort:
a Pushgateway that is down is logged, never a failed pass. The registry is also there to read
(tests, ``signalstack drift --metrics``).

Pushgateway semantics: a PUT replaces every metric of the job's group, a POST only the metric
families it carries. A pass that succeeded PUTs its whole registry (stale series of models no
longer checked go away). A pass that failed POSTs what it has — never
``last_success_timestamp_seconds``, which only a successful pass registers — so the gateway
keeps the last success's time while ``last_run`` and
``runs_total{outcome="error"}`` move on.

- ``signalstack_drift_psi{model,input}``: PSI of each model input over the last window;
- ``signalstack_drift_psi_max{model}``: the largest of them (what the alert rule watches,
  against ``signalstack_drift_alert_threshold``);
- ``signalstack_drift_window_rows{model}``: feature rows in the window;
- ``signalstack_drift_alert_threshold`` / ``_warn_threshold``: DRIFT_ALERT_PSI / DRIFT_WARN_PSI;
- ``signalstack_drift_last_run_timestamp_seconds``: when the pass ended (Unix time), failed
  or not;
- ``signalstack_drift_last_success_timestamp_seconds``: when the last pass that succeeded
  ended — an alert on its age catches a drift job that keeps failing (or stopped running);
- ``signalstack_drift_runs_total{outcome}``: passes by outcome (stable, warn, alert,
  no_data, no_models, error) — in one process; pushed, each pass replaces the last;
- ``signalstack_drift_retrain_requests_total{mode,action}``: what was done about a drift.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    push_to_gateway,
    pushadd_to_gateway,
)

from signalstack.logs import get_logger

if TYPE_CHECKING:
    from signalstack.drift.job import DriftReport

log = get_logger(__name__)

JOB: Final = "signalstack-drift"


class DriftMetrics:
    """The gauges and counters of drift passes, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._observed = False
        self.psi = Gauge(
            "signalstack_drift_psi",
            "PSI of a model input over the last window.",
            ["model", "input"],
            registry=r,
        )
        self.psi_max = Gauge(
            "signalstack_drift_psi_max", "Largest input PSI of a model.", ["model"], registry=r
        )
        self.rows = Gauge(
            "signalstack_drift_window_rows",
            "Feature rows in the model's window.",
            ["model"],
            registry=r,
        )
        self.alert_threshold = Gauge(
            "signalstack_drift_alert_threshold",
            "PSI from which an input counts as drifted.",
            registry=r,
        )
        self.warn_threshold = Gauge(
            "signalstack_drift_warn_threshold",
            "PSI from which an input is worth a look.",
            registry=r,
        )
        self.last_run = Gauge(
            "signalstack_drift_last_run_timestamp_seconds",
            "When the last drift pass ended (Unix time).",
            registry=r,
        )
        # registered by :meth:`succeeded` only (see the module docstring)
        self.last_success = Gauge(
            "signalstack_drift_last_success_timestamp_seconds",
            "When the last successful drift pass ended (Unix time).",
            registry=None,
        )
        self._succeeded = False
        self.runs = Counter(
            "signalstack_drift_runs", "Drift passes by outcome.", ["outcome"], registry=r
        )
        self.retrains = Counter(
            "signalstack_drift_retrain_requests",
            "Retraining requests by mode and what happened.",
            ["mode", "action"],
            registry=r,
        )

    def observe(self, report: DriftReport, now: float | None = None) -> None:
        """Record one pass (``now``: wall-clock seconds of its end)."""
        self.alert_threshold.set(report.alert_psi)
        self.warn_threshold.set(report.warn_psi)
        for m in report.models:
            self.rows.labels(m.model).set(m.rows)
            if not m.psi:
                continue
            for name, value in m.psi.items():
                self.psi.labels(m.model, name).set(value)
            self.psi_max.labels(m.model).set(m.max_psi)
        self.runs.labels(report.outcome).inc()
        self._observed = True
        if report.retrain is not None:
            self.retrains.labels(report.retrain.mode, report.retrain.action).inc()
        self.last_run.set(time.time() if now is None else now)

    def failed(self, now: float | None = None) -> None:
        """A pass that failed: counted as ``error`` unless it was already observed (its
        retraining request failed after the PSI was recorded)."""
        if not self._observed:
            self.runs.labels("error").inc()
        self.last_run.set(time.time() if now is None else now)

    def succeeded(self, now: float | None = None) -> None:
        """The pass (PSI, rows, any retraining request) completed: ``last_success`` is now."""
        self.last_success.set(time.time() if now is None else now)
        if not self._succeeded:
            self.registry.register(self.last_success)
            self._succeeded = True

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()

    def push(self, url: str) -> bool:
        """Push to the Pushgateway at ``url`` (a success replaces the group, a failure adds
        to it: see the module docstring); False (logged) when it fails."""
        if not url:
            return False
        send = push_to_gateway if self._succeeded else pushadd_to_gateway
        try:
            send(url, job=JOB, registry=self.registry, timeout=10)
        except OSError as err:  # URLError and connection errors
            log.warning("drift_metrics_push_failed", url=url, error=str(err))
            return False
        return True


__all__ = ["JOB", "DriftMetrics"]
