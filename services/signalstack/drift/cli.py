"""``signalstack drift``: one pass, its summary on stdout, the exit status (job.py)."""

from __future__ import annotations

import pandas as pd
import typer

from signalstack.config import Settings
from signalstack.drift.job import run as run_pass
from signalstack.drift.metrics import DriftMetrics
from signalstack.drift.references import DriftError
from signalstack.store.base import to_utc


def parse_as_of(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    try:
        return to_utc(value)
    except ValueError:
        raise DriftError(f"--as-of must be an ISO 8601 time, got {value!r}") from None


def run(
    settings: Settings,
    *,
    as_of: str | None = None,
    retrain: str | None = None,
    show_metrics: bool = False,
) -> int:
    """One pass; returns the exit status (0 no drift, 7 drift)."""
    if retrain is not None:
        drift = settings.drift.model_copy(update={"retrain": retrain})
        settings = settings.model_copy(update={"drift": drift})
    metrics = DriftMetrics()
    report = run_pass(settings, now=parse_as_of(as_of), metrics=metrics)
    for line in report.lines():
        typer.echo(line)
    if show_metrics:
        typer.echo(metrics.exposition(), nl=False)
    return report.exit_code


__all__ = ["parse_as_of", "run"]
