"""Prometheus metrics of a backfill run (``signalstack_backfill_*``, no symbol label).

A backfill is a batch job (the CronJob's pass), so its figures describe the last run: gauges,
pushed to a Pushgateway (``BACKFILL_PUSHGATEWAY_URL``, job ``signalstack-backfill``) and/or
written to a node-exporter textfile (``BACKFILL_METRICS_FILE``). Exporting is best effort: a
Pushgateway that is down is logged, never a failed backfill.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from signalstack.backfill.run import BackfillResult
from signalstack.logs import get_logger

log = get_logger(__name__)

JOB: Final = "signalstack-backfill"
PREFIX: Final = "signalstack_backfill_last_"
# stats field → (metric name, help); minutes are exported in seconds (base units)
SECONDS_OF: Final = {"minutes": 60, "minutes_healed": 60}
FIELDS: Final = {
    "ranges": ("gap_ranges", "Ranges (gaps or sessions) the last run planned."),
    "minutes": ("gap_seconds", "Market time the last run's ranges cover."),
    "minutes_healed": ("healed_seconds", "Market time of the last run's ranges now healed."),
    "api_calls": ("api_calls", "Polygon REST requests of the last run, retries included."),
    "retries": ("retries", "Requests the last run retried (429, 5xx, transport errors)."),
    "http_429": ("http_429", "HTTP 429 answers the last run got."),
    "http_5xx": ("http_5xx", "HTTP 5xx answers the last run got."),
    "trades_stored": ("trades_stored", "Trades the last run stored (new rows)."),
    "rejected": ("rejected", "Results the last run sent to the DLQ."),
    "produced": (
        "trades_produced",
        "Trades the last run produced to market.trades (--sink kafka).",
    ),
    "failed_ranges": ("failed_ranges", "Ranges the last run left unhealed."),
}


def registry_for(result: BackfillResult, now: float | None = None) -> CollectorRegistry:
    """A registry holding the run's figures (``now``: wall-clock seconds, for the timestamps)."""
    r = CollectorRegistry()
    for field, (name, doc) in FIELDS.items():
        value = getattr(result.stats, field) * SECONDS_OF.get(field, 1)
        Gauge(PREFIX + name, doc, registry=r).set(value)
    Gauge(PREFIX + "duration_seconds", "Wall time of the last run.", registry=r).set(
        result.duration_s
    )
    Gauge(PREFIX + "healed", "1 if the last run healed every range, else 0.", registry=r).set(
        1 if result.healed else 0
    )
    Gauge(PREFIX + "skipped", "1 if the last pass skipped (another held the lock).",
          registry=r).set(1 if result.status == "skipped" else 0)  # fmt: skip
    Gauge(PREFIX + "run_timestamp_seconds", "When the last run ended (Unix time).",
          registry=r).set(time.time() if now is None else now)  # fmt: skip
    return r


def export(
    result: BackfillResult,
    *,
    pushgateway: str = "",
    textfile: str = "",
    now: float | None = None,
) -> None:
    """Push and/or write the run's metrics; failures are logged, never raised."""
    if not (pushgateway or textfile):
        return
    registry = registry_for(result, now)
    if textfile:
        try:
            write_to_textfile(textfile, registry)
        except OSError as err:
            log.warning("backfill_metrics_file_failed", path=textfile, error=str(err))
    if pushgateway:
        try:
            push_to_gateway(pushgateway, job=JOB, registry=registry, timeout=10)
        except OSError as err:  # URLError and connection errors
            log.warning("backfill_metrics_push_failed", url=pushgateway, error=str(err))
