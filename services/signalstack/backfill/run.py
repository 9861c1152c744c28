"""``signalstack backfill``: plan the ranges, fetch their trades, write bars and features.

1. **Plan**: the gaps of ``ohlcv_1m`` on the calendar (``--detect-gaps``) or every session in
   full, one :class:`~signalstack.store.base.BackfillRange` per range, recorded as ``pending``
   in ``backfill_ranges`` with the run in ``backfill_runs`` (options and counters as JSON).
2. **Fetch**: Polygon REST ``/v3/trades`` a page at a time, validated as the ingest validates,
   straight into the store through its idempotent writer (a trade stored twice is one row).
   After every page the range's cursor (the newest ts_event stored) is recorded, so a killed
   run resumes there (``--resume RUN_ID``) and ends with exactly the rows of one that was not.
3. **Bars and features**: once every range of a (symbol, session) is fetched, the local stream
   engine replays that session's stored trades, as it does live, and the bars of the fetched
   minutes and the features from the first fetched minute on are upserted. Then the ranges are
   ``done``: checked, never reported as gaps again.

A range the source refused (after the client's retries with backoff) is ``failed``; the run is
then ``failed`` and the result reports it unhealed (the CLI's exit status says so).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import groupby
from typing import Any, Literal

import pandas as pd

from signalstack.backfill.gaps import Gap, find_gaps, session_bounds
from signalstack.backfill.polygon import StatusCounter, trade_pages
from signalstack.backfill.progress import LogProgress, Progress
from signalstack.errors import SignalStackError
from signalstack.features.sessions import session_index
from signalstack.logs import get_logger
from signalstack.marketdata.errors import PolygonAuthError, PolygonRestError
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.store.base import BackfillRange, BackfillRun, Store
from signalstack.store.gaps import sessions

log = get_logger(__name__)

NY = "America/New_York"
ENGINE_CHUNK = 100_000  # trades per engine batch (sorted: none is ever late)


class BackfillError(SignalStackError):
    """A backfill could not start (bad arguments, unknown run id)."""

    exit_code = 2


class BackfillIncompleteError(SignalStackError):
    """The run ended with ranges not healed; ``--resume`` the run id to try them again."""

    exit_code = 5


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    source: Literal["polygon"] = "polygon"
    sink: Literal["db"] = "db"
    detect_gaps: bool = True
    extended_hours: bool = False
    calendar: str = "XNYS"
    merge_within_minutes: int = 15  # join gaps this close into one request
    page_limit: int = 50_000  # results per /v3/trades page (Polygon's maximum)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d, "symbols": list(self.symbols), "start": str(self.start), "end": str(self.end)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BackfillOptions:
        return cls(
            **{
                **d,
                "symbols": tuple(d["symbols"]),
                "start": dt.date.fromisoformat(d["start"]),
                "end": dt.date.fromisoformat(d["end"]),
            }
        )


@dataclass(slots=True)
class BackfillStats:
    ranges: int = 0
    minutes: int = 0  # minutes the ranges cover
    minutes_healed: int = 0  # minutes of the ranges now done
    api_calls: int = 0
    retries: int = 0
    http_429: int = 0
    http_5xx: int = 0
    trades_fetched: int = 0
    trades_stored: int = 0
    rejected: int = 0
    bars: int = 0
    features: int = 0
    failed_ranges: int = 0

    def add(self, other: dict[str, int]) -> None:
        for k, v in other.items():
            if hasattr(self, k) and k not in ("ranges", "minutes", "minutes_healed"):
                setattr(self, k, getattr(self, k) + int(v))


@dataclass(slots=True)
class BackfillResult:
    run_id: str
    status: str  # "ok" | "failed" | "dry-run" | "skipped" (another scheduled pass runs)
    stats: BackfillStats
    gaps: list[Gap] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def healed(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "healed": self.healed,
            "duration_s": round(self.duration_s, 3),
            **asdict(self.stats),
        }


def _minutes(rng: BackfillRange) -> int:
    return int((rng.end - rng.start) / pd.Timedelta(minutes=1))


def session_of(rng: BackfillRange) -> dt.date:
    """The session a range belongs to: its New York date (extended hours stay in the day)."""
    return rng.start.tz_convert(NY).date()


def plan_ranges(run_id: str, gaps: Sequence[Gap]) -> list[BackfillRange]:
    return [BackfillRange(run_id, i, g.symbol, g.start, g.end) for i, g in enumerate(gaps)]


def whole_sessions(opts: BackfillOptions) -> list[Gap]:
    """Every session of every symbol in full (no gap detection)."""
    out = []
    for symbol in opts.symbols:
        for day in sessions(opts.start, opts.end, opts.calendar):
            lo, hi = session_bounds(day, opts.calendar, opts.extended_hours)
            out.append(Gap(symbol, day, lo, hi))
    return out


class _FetchedMinutes:
    """The engine's sink for one (symbol, session): bars of the fetched minutes only, features
    from the first fetched minute on (earlier rows cannot depend on the fetched trades)."""

    def __init__(self, store: Store, ranges: Sequence[BackfillRange]) -> None:
        self.store = store
        self.ranges = [(r.start, r.end) for r in ranges]
        self.first = min(r.start for r in ranges)
        self.bars = 0
        self.features = 0

    def write_bars(self, df: pd.DataFrame) -> int:
        ends = pd.DatetimeIndex(df["ts"])
        keep = pd.Series(False, index=df.index)
        for lo, hi in self.ranges:  # bar end e covers [e - 1 minute, e)
            keep |= (ends > lo) & (ends <= hi)
        n = self.store.write_bars(df[keep.to_numpy()]) if keep.any() else 0
        self.bars += n
        return n

    def write_features(self, df: pd.DataFrame) -> int:
        sel = df[pd.DatetimeIndex(df["ts"]) > self.first]
        n = self.store.write_features(sel) if len(sel) else 0
        self.features += n
        return n


class BackfillRunner:
    """One run: plan (or load, when resuming), fetch, compute, record. Synchronous API; the
    REST client runs on a private event loop."""

    def __init__(
        self,
        store: Store,
        client_factory: Any,  # (transport: httpx.AsyncBaseTransport) -> PolygonRestClient
        *,
        progress: Progress | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.store = store
        self.client_factory = client_factory
        self.progress = progress or LogProgress()
        self.clock = clock

    # ------------------------------------------------------------------ entry points
    def dry_run(self, opts: BackfillOptions) -> BackfillResult:
        gaps = self._gaps(opts)
        stats = BackfillStats(ranges=len(gaps), minutes=sum(g.minutes for g in gaps))
        result = BackfillResult("dry-run", "dry-run", stats, gaps)
        self.progress.finish(result.summary())
        return result

    def start(self, opts: BackfillOptions, run_id: str | None = None) -> BackfillResult:
        run_id = run_id or f"bf-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        gaps = self._gaps(opts)
        run = BackfillRun(
            run_id, opts.source, opts.symbols, opts.start, opts.end, "running",
            options=opts.to_json(),
        )  # fmt: skip
        self.store.record_backfill_run(run)
        ranges = plan_ranges(run_id, gaps)
        self.store.record_backfill_ranges(ranges)
        return self._execute(run, opts, ranges)

    def resume(self, run_id: str) -> BackfillResult:
        run = self.store.backfill_run(run_id)
        if run is None:
            raise BackfillError(f"no backfill run {run_id!r} to resume")
        opts = BackfillOptions.from_json(dict(run.options))
        run = replace(run, status="running", error="", finished_at=None)
        self.store.record_backfill_run(run)
        return self._execute(run, opts, self.store.backfill_ranges(run_id))

    # ------------------------------------------------------------------ internals
    def _gaps(self, opts: BackfillOptions) -> list[Gap]:
        if not opts.detect_gaps:
            return whole_sessions(opts)
        return find_gaps(
            self.store, opts.symbols, opts.start, opts.end, calendar=opts.calendar,
            extended_hours=opts.extended_hours, merge_within_minutes=opts.merge_within_minutes,
        )  # fmt: skip

    def _execute(
        self, run: BackfillRun, opts: BackfillOptions, ranges: list[BackfillRange]
    ) -> BackfillResult:
        t0 = self.clock()
        stats = BackfillStats(
            ranges=len(ranges),
            minutes=sum(_minutes(r) for r in ranges),
        )
        stats.add({k: v for k, v in run.stats.items() if k in ("bars", "features")})
        self.progress.start(run.run_id, ranges, stats.minutes)
        error = ""
        try:
            asyncio.run(self._fetch_and_compute(opts, ranges, stats))
        except PolygonAuthError as err:
            error = str(err)
        final = self.store.backfill_ranges(run.run_id)
        stats.trades_fetched = sum(r.trades for r in final)
        stats.trades_stored = sum(r.stored for r in final)
        stats.failed_ranges = sum(r.status != "done" for r in final)
        stats.minutes_healed = sum(_minutes(r) for r in final if r.status == "done")
        status = "ok" if stats.failed_ranges == 0 else "failed"
        if status == "failed" and not error:
            error = f"{stats.failed_ranges} range(s) not healed; resume with --resume {run.run_id}"
        result = BackfillResult(run.run_id, status, stats, duration_s=self.clock() - t0)
        self.store.record_backfill_run(
            replace(
                run, status=status, rows=stats.trades_stored, error=error,
                finished_at=dt.datetime.now(dt.UTC), stats=asdict(stats),
            )
        )  # fmt: skip
        self.progress.finish(result.summary())
        return result

    async def _fetch_and_compute(
        self, opts: BackfillOptions, ranges: list[BackfillRange], stats: BackfillStats
    ) -> None:
        counter = StatusCounter()
        client: PolygonRestClient = self.client_factory(counter)
        try:

            def key(r: BackfillRange) -> tuple[str, dt.date]:
                return (r.symbol, session_of(r))

            for _, group in groupby(sorted(ranges, key=lambda r: (*key(r), r.seq)), key=key):
                todo = list(group)
                if all(r.status == "done" for r in todo):
                    continue
                fetched = [await self._fetch(client, opts, r, stats) for r in todo]
                if all(r.status in ("fetched", "done") for r in fetched):
                    self._compute(opts, fetched, stats)
                    self.store.record_backfill_ranges([replace(r, status="done") for r in fetched])
                for r in fetched:
                    self.progress.range_done(
                        replace(r, status="done") if r.status == "fetched" else r
                    )
        finally:
            stats.api_calls = client.requests
            stats.retries = client.retries
            stats.http_429 = counter.throttled
            stats.http_5xx = counter.server_errors
            await client.aclose()

    async def _fetch(
        self,
        client: PolygonRestClient,
        opts: BackfillOptions,
        rng: BackfillRange,
        stats: BackfillStats,
    ) -> BackfillRange:
        if rng.status in ("fetched", "done"):
            return rng
        gte = rng.cursor_ns if rng.cursor_ns is not None else rng.start.value
        try:
            async for page in trade_pages(client, rng.symbol, gte, rng.end.value, opts.page_limit):
                if page.rejects:
                    self.store.write_dlq(page.rejects)
                    stats.rejected += len(page.rejects)
                stored = self.store.write_trades(page.trades) if len(page.trades) else 0
                cursor = page.max_ts_ns if page.max_ts_ns is not None else rng.cursor_ns
                rng = replace(
                    rng, status="pending", cursor_ns=cursor,
                    trades=rng.trades + page.results, stored=rng.stored + stored,
                )  # fmt: skip
                self.store.record_backfill_ranges([rng])
                self.progress.page(rng)
        except PolygonRestError as err:
            log.warning("backfill_range_failed", seq=rng.seq, symbol=rng.symbol, error=str(err))
            rng = replace(rng, status="failed")
            self.store.record_backfill_ranges([rng])
            return rng
        rng = replace(rng, status="fetched")
        self.store.record_backfill_ranges([rng])
        return rng

    def _compute(
        self, opts: BackfillOptions, ranges: list[BackfillRange], stats: BackfillStats
    ) -> None:
        """Replay the session's stored trades through the local engine (as live)."""
        from signalstack.engines.local import LocalEngine

        symbol, day = ranges[0].symbol, session_of(ranges[0])
        lo, hi = session_bounds(day, opts.calendar, opts.extended_hours)
        trades = self.store.trades([symbol], lo, hi)
        if trades.empty:
            return
        sink = _FetchedMinutes(self.store, ranges)
        engine = LocalEngine(
            sink, sessions=session_index(opts.calendar, opts.extended_hours),
            extended_hours=opts.extended_hours, calendar=opts.calendar,
        )  # fmt: skip
        for i in range(0, len(trades), ENGINE_CHUNK):
            engine.process(trades.iloc[i : i + ENGINE_CHUNK])
        engine.flush()
        stats.bars += sink.bars
        stats.features += sink.features
