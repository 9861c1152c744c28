"""The scheduled pass (``signalstack backfill --scheduled``), what the CronJob runs after the close:
detect the gaps of the configured symbols over the last closed sessions, heal them, report.

Two passes at once do not both load: the pass holds the store's named lock (a PostgreSQL
session advisory lock on TimescaleDB; DuckDB lets one process open its file at all) and a pass
that finds it taken exits cleanly with status ``skipped``.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pandas as pd

from signalstack.backfill.run import (
    SETTLE,
    BackfillOptions,
    BackfillResult,
    BackfillRunner,
    BackfillStats,
)
from signalstack.logs import get_logger
from signalstack.store.gaps import session_bounds, sessions

log = get_logger(__name__)

LOCK_NAME = "signalstack.backfill.scheduled"


def closed_sessions(
    now: pd.Timestamp, lookback: int, calendar: str = "XNYS", extended_hours: bool = False
) -> list[dt.date]:
    """The last ``lookback`` sessions that ended, for the configured hours (post-market too
    with ``extended_hours``), at least :data:`SETTLE` before ``now`` (UTC)."""
    now = now.tz_convert("UTC") if now.tzinfo else now.tz_localize("UTC")
    today = now.tz_convert("America/New_York").date()
    days = sessions(today - dt.timedelta(days=2 * lookback + 10), today, calendar)
    done = [d for d in days if session_bounds(d, calendar, extended_hours)[1] + SETTLE <= now]
    return done[-lookback:]


def scheduled_options(
    symbols: tuple[str, ...],
    now: pd.Timestamp,
    lookback: int,
    *,
    calendar: str = "XNYS",
    extended_hours: bool = False,
    merge_within_minutes: int = 15,
    page_limit: int = 50_000,
    source: Literal["polygon", "polygon-aggs", "yfinance"] = "polygon",
    sink: Literal["db", "kafka"] = "db",
) -> BackfillOptions | None:
    days = closed_sessions(now, lookback, calendar, extended_hours)
    if not days:
        return None
    return BackfillOptions(
        symbols=symbols, start=days[0], end=days[-1], detect_gaps=True, calendar=calendar,
        extended_hours=extended_hours, merge_within_minutes=merge_within_minutes,
        page_limit=page_limit, source=source, sink=sink,
    )  # fmt: skip


def run_scheduled(runner: BackfillRunner, opts: BackfillOptions | None) -> BackfillResult:
    """Heal ``opts`` under the scheduled pass's lock; ``skipped`` when another pass holds it."""
    if opts is None:
        return BackfillResult("scheduled", "ok", BackfillStats())
    with runner.store.try_lock(LOCK_NAME) as mine:
        if not mine:
            log.info("backfill_skipped", reason="another scheduled pass holds the lock")
            result = skipped()
            runner.progress.finish(result.summary())
            return result
        return runner.start(opts)


def skipped() -> BackfillResult:
    return BackfillResult("skipped", "skipped", BackfillStats())
