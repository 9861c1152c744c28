"""The ``signalstack backfill`` command: arguments → :class:`BackfillRunner` → exit status."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import httpx
import orjson
import pandas as pd

from signalstack.backfill.bars import YFinanceBars
from signalstack.backfill.kafka_sink import TradeProducer
from signalstack.backfill.metrics import export
from signalstack.backfill.progress import progress_for
from signalstack.backfill.run import (
    BackfillError,
    BackfillIncompleteError,
    BackfillOptions,
    BackfillResult,
    BackfillRunner,
    wall_clock,
)
from signalstack.backfill.scheduled import run_scheduled, scheduled_options, skipped
from signalstack.config import Settings, split_symbols
from signalstack.logs import get_logger
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.store import StoreError, open_store

log = get_logger(__name__)


def _date(value: str | None, name: str) -> dt.date:
    if not value:
        raise BackfillError(f"--{name} is required (YYYY-MM-DD) unless --resume is given")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as err:
        raise BackfillError(f"--{name} must be a date YYYY-MM-DD, got {value!r}") from err


def parse_now(value: str | None) -> pd.Timestamp | None:
    """``--as-of``: an ISO 8601 time (UTC when it names no zone), or None for the wall clock."""
    if not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as err:
        raise BackfillError(f"--as-of must be an ISO 8601 time, got {value!r}") from err
    return ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")


def _symbols(settings: Settings, symbols: str | None) -> tuple[str, ...]:
    syms = split_symbols(symbols) if symbols else tuple(settings.market.symbols)
    if not syms:
        raise BackfillError("no symbols: pass --symbols or set MARKET_SYMBOLS")
    return syms


def _extended(settings: Settings, extended_hours: bool | None) -> bool:
    return settings.market.extended_hours if extended_hours is None else extended_hours


def options(
    settings: Settings,
    *,
    symbols: str | None,
    start: str | None,
    end: str | None,
    detect_gaps: bool,
    extended_hours: bool | None,
    merge_minutes: int,
    page_limit: int,
    source: str = "polygon",
    sink: str = "db",
) -> BackfillOptions:
    syms = _symbols(settings, symbols)
    lo, hi = _date(start, "start"), _date(end, "end")
    if hi < lo:
        raise BackfillError(f"--end {hi} is before --start {lo}")
    if not 1 <= page_limit <= 50_000:
        raise BackfillError(f"--page-limit must be in 1..50000, got {page_limit}")
    return BackfillOptions(
        symbols=syms, start=lo, end=hi, detect_gaps=detect_gaps, source=_source(source),
        sink="kafka" if sink == "kafka" else "db",
        extended_hours=_extended(settings, extended_hours),
        calendar=settings.market.calendar, merge_within_minutes=max(0, merge_minutes),
        page_limit=page_limit,
    )  # fmt: skip


def _source(source: str) -> Literal["polygon", "polygon-aggs", "yfinance"]:
    if source == "polygon":
        return "polygon"
    if source == "polygon-aggs":
        return "polygon-aggs"
    if source == "yfinance":
        return "yfinance"
    raise BackfillError(f"--source must be polygon, polygon-aggs or yfinance, got {source!r}")


def run(
    settings: Settings,
    *,
    symbols: str | None,
    start: str | None,
    end: str | None,
    source: str = "polygon",
    sink: str = "db",
    detect_gaps: bool = False,
    resume: str | None = None,
    dry_run: bool = False,
    scheduled: bool = False,
    extended_hours: bool | None = None,
    merge_minutes: int | None = None,
    page_limit: int | None = None,
    now: pd.Timestamp | None = None,
) -> BackfillResult:
    """Run (or resume, dry-run, or run the scheduled pass of) a backfill; raise
    :class:`BackfillIncompleteError` (exit 5) when ranges remain unhealed."""
    if _source(source) != "polygon" and sink != "db":
        raise BackfillError(
            f"--source {source} writes bars to ohlcv_1m: use --sink db (bars never become trades)"
        )
    if sink not in ("db", "kafka"):
        raise BackfillError(f"--sink must be db or kafka, got {sink!r}")
    cfg = settings.backfill
    merge = cfg.merge_minutes if merge_minutes is None else merge_minutes
    limit = cfg.page_limit if page_limit is None else page_limit

    def client(transport: httpx.AsyncBaseTransport) -> PolygonRestClient:
        return PolygonRestClient.from_settings(settings.polygon, transport=transport)

    def producer() -> TradeProducer:
        k = settings.kafka
        return TradeProducer(k.bootstrap_servers, k.trades_topic, settings.ingest)

    def yahoo() -> YFinanceBars:
        from signalstack.marketdata.yfinance_source import YFinanceSource

        return YFinanceBars(
            YFinanceSource(prepost=_extended(settings, extended_hours)),
            rate_per_s=cfg.yfinance_rate_per_s, max_retries=cfg.yfinance_max_retries,
        )  # fmt: skip

    try:
        store = open_store(settings)
    except StoreError as err:
        if scheduled and settings.store.type == "duckdb" and _file_locked(err):
            # DuckDB lets one process open the file: another pass (or the demo) has it
            log.info("backfill_skipped", reason="the embedded store is open in another process")
            return _report(settings, skipped())
        raise
    try:
        clock = (lambda: now) if now is not None else wall_clock
        runner = BackfillRunner(
            store, client, progress=progress_for(), now=clock, yfinance_factory=yahoo,
            producer_factory=producer,
        )  # fmt: skip
        if resume:
            result = runner.resume(resume)
        elif scheduled:
            syms = _symbols(settings, symbols)
            opts = scheduled_options(
                syms, runner.now(),
                cfg.lookback_sessions, calendar=settings.market.calendar,
                extended_hours=_extended(settings, extended_hours),
                merge_within_minutes=merge, page_limit=limit, source=_source(source),
                sink="kafka" if sink == "kafka" else "db",
            )  # fmt: skip
            result = run_scheduled(runner, opts)
        else:
            opts = options(
                settings, symbols=symbols, start=start, end=end, detect_gaps=detect_gaps,
                extended_hours=extended_hours, merge_minutes=merge, page_limit=limit,
                source=source, sink=sink,
            )  # fmt: skip
            if dry_run:
                result = runner.dry_run(opts)
                _print_gaps(result)
                return result
            result = runner.start(opts)
    finally:
        store.close()
    return _report(settings, result)


def _file_locked(err: StoreError) -> bool:
    """DuckDB refused the file because another process holds its lock (not a missing
    directory, a permission or a corrupt file: those are errors)."""
    import duckdb

    cause = err.__cause__
    text = str(cause).lower()
    return isinstance(cause, duckdb.IOException) and (
        "conflicting lock" in text or "could not set lock" in text
    )


def _report(settings: Settings, result: BackfillResult) -> BackfillResult:
    print(orjson.dumps(result.summary()).decode(), flush=True)
    cfg = settings.backfill
    export(result, pushgateway=cfg.pushgateway_url, textfile=cfg.metrics_file)
    if result.status == "failed":
        raise BackfillIncompleteError(
            f"backfill {result.run_id}: {result.stats.failed_ranges} range(s) not healed; "
            f"run `signalstack backfill --resume {result.run_id}`"
        )
    return result


def _print_gaps(result: BackfillResult) -> None:
    rows: list[dict[str, Any]] = [
        {"symbol": g.symbol, "session": str(g.session), "start": g.start.isoformat(),
         "end": g.end.isoformat(), "minutes": g.minutes}
        for g in result.gaps
    ]  # fmt: skip
    for row in rows:
        print(orjson.dumps(row).decode())
    print(orjson.dumps(result.summary()).decode(), flush=True)
