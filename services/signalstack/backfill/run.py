"""``signalstack backfill``: plan the ranges, fetch their trades, write bars and features.

1. **Plan**: the gaps of ``ohlcv_1m`` on the calendar (``--detect-gaps``) or every session in
   full, one :class:`~signalstack.store.base.BackfillRange` per range, recorded as ``pending``
   in ``backfill_ranges`` with the run in ``backfill_runs`` (options and counters as JSON).
2. **Fetch**: Polygon REST ``/v3/trades`` a page at a time, validated as the ingest validates,
   straight into the store through its idempotent writer (a trade stored twice is one row).
   After every page the range's cursor (the newest ts_event stored) is recorded, so a killed
   run resumes there (``--resume RUN_ID``) and ends with exactly the rows of one that was not.
   A REST trade live ingest already stored is skipped: live WebSocket trades carry a
   millisecond timestamp, REST ones the full nanoseconds, so the writer's key (which includes
   the timestamp) would not see them as one; :func:`new_trades` matches on (exchange, trade_id)
   at the millisecond instead.
3. **Bars and features**: once every range of a (symbol, session) is fetched, the local stream
   engine replays that session's stored trades, as it does live, and the bars of the fetched
   minutes are upserted. A feature row (from the first fetched minute on) is upserted only if
   every bar its windows read is fetched or equals the stored bar (the store may no longer hold
   all the trades of the minutes outside the ranges, e.g. after trades retention); the others
   are left as they are and counted (``features_skipped``). Then the ranges are ``done``:
   checked, never reported as gaps again.

Minutes that may still receive trades are never fetched: ranges end at ``now - SETTLE`` (the
session's real end for the configured hours counts, not the regular close), and a range ending
later is never marked ``done``. A run holds the store's lock ``backfill.run.<run_id>`` while it
executes, so a ``--resume`` of a run still in progress (or two resumes) is refused.

A range the source refused (after the client's retries with backoff) is ``failed``; the run is
then ``failed`` and the result reports it unhealed (the CLI's exit status says so).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import groupby
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.backfill.bars import BAR_SOURCES, BarPage, YFinanceBars, polygon_bar_pages
from signalstack.backfill.gaps import MINUTE, Gap, clip_gaps, find_gaps
from signalstack.backfill.kafka_sink import KafkaProduceError, TradeProducer
from signalstack.backfill.polygon import StatusCounter, trade_pages
from signalstack.backfill.progress import LogProgress, Progress
from signalstack.errors import SignalStackError
from signalstack.features.definitions import LONGEST_WINDOW_MINUTES, VOLUME_RATIO_LOOKBACK
from signalstack.features.sessions import NS_PER_MINUTE, session_index
from signalstack.logs import get_logger
from signalstack.marketdata.errors import MarketDataError, PolygonAuthError, PolygonRestError
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.schemas.trade import NS_PER_MS
from signalstack.store.base import BackfillRange, BackfillRun, Store
from signalstack.store.gaps import NY, session_bounds, sessions

log = get_logger(__name__)

ENGINE_CHUNK = 100_000  # trades per engine batch (sorted: none is ever late)
SETTLE = pd.Timedelta(minutes=15)  # a minute this old gets no more trades (late prints settled)


class BackfillError(SignalStackError):
    """A backfill could not start (bad arguments, unknown run id)."""

    exit_code = 2


class BackfillBusyError(SignalStackError):
    """The run is being executed (or resumed) by another process right now."""

    exit_code = 4


class BackfillIncompleteError(SignalStackError):
    """The run ended with ranges not healed; ``--resume`` the run id to try them again."""

    exit_code = 5


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    source: Literal["polygon", "polygon-aggs", "yfinance"] = "polygon"
    sink: Literal["db", "kafka"] = "db"
    detect_gaps: bool = True
    extended_hours: bool = False
    calendar: str = "XNYS"
    merge_within_minutes: int = 15  # join gaps this close into one request
    page_limit: int = 50_000  # results per /v3/trades (or /v2/aggs) page (Polygon's maximum)

    @property
    def bars_only(self) -> bool:
        """A vendor-bar source (``polygon-aggs``, ``yfinance``): bars straight to ohlcv_1m."""
        return self.source in BAR_SOURCES

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
    trades_fetched: int = 0  # results fetched: trades, or bars for a vendor-bar source
    trades_stored: int = 0  # new rows: trades, or vendor bars written
    rejected: int = 0
    produced: int = 0  # --sink kafka: trades produced to market.trades (acknowledged)
    bars: int = 0
    features: int = 0
    features_skipped: int = 0  # rows not rewritten: a bar they read differs and was not fetched
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


def wall_clock() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def horizon(now: pd.Timestamp) -> pd.Timestamp:
    """The end of what may be fetched and marked checked: ``now - SETTLE``, on a minute."""
    return (now - SETTLE).floor("1min")


def new_trades(store: Store, trades: pd.DataFrame) -> pd.DataFrame:
    """The REST trades of one page (one symbol) the store does not hold yet under the
    live ingest's millisecond timestamp (or the same one): matched on (exchange, trade_id) and
    ``ts_event`` floored to the millisecond."""
    if trades.empty:
        return trades
    ts = trades["ts_event"].to_numpy(dtype="int64")
    lo = pd.Timestamp(int(ts.min()) - NS_PER_MS, tz="UTC")
    hi = pd.Timestamp(int(ts.max()) + NS_PER_MS, tz="UTC")
    have = store.trades([str(trades["symbol"].iloc[0])], lo, hi)
    if have.empty:
        return trades
    known = set(
        zip(
            have["exchange"].astype("int64").tolist(),
            have["trade_id"].astype(str).tolist(),
            (have["ts_event"].to_numpy(dtype="int64") // NS_PER_MS).tolist(),
            strict=True,
        )
    )
    dup = [
        k in known
        for k in zip(
            trades["exchange"].astype("int64").tolist(),
            trades["trade_id"].astype(str).tolist(),
            (ts // NS_PER_MS).tolist(),
            strict=True,
        )
    ]
    return trades[~pd.Series(dup, index=trades.index)]


def whole_sessions(opts: BackfillOptions) -> list[Gap]:
    """Every session of every symbol in full (no gap detection)."""
    out = []
    for symbol in opts.symbols:
        for day in sessions(opts.start, opts.end, opts.calendar):
            lo, hi = session_bounds(day, opts.calendar, opts.extended_hours)
            out.append(Gap(symbol, day, lo, hi))
    return out


class _FetchedMinutes:
    """The engine's sink for one (symbol, session). It keeps what the replay emits; then
    :meth:`commit` writes the bars of the fetched minutes, and the feature rows from the first
    fetched minute on whose windows read only trusted bars: fetched, or equal to the stored bar
    (volume, trade_count, close; a minute with no bar in both is equal too)."""

    def __init__(
        self, store: Store, ranges: Sequence[BackfillRange], stored_bars: pd.DataFrame
    ) -> None:
        self.store = store
        self.ranges = [(r.start, r.end) for r in ranges]
        self.first = min(r.start for r in ranges)
        self.stored_bars = stored_bars
        self._bars: list[pd.DataFrame] = []
        self._features: list[pd.DataFrame] = []
        self.bars = 0
        self.features = 0
        self.features_skipped = 0

    def write_bars(self, df: pd.DataFrame) -> int:
        self._bars.append(df)
        return len(df)

    def write_features(self, df: pd.DataFrame) -> int:
        self._features.append(df)
        return len(df)

    def _fetched(self, ends: pd.DatetimeIndex) -> npt.NDArray[np.bool_]:
        keep = np.zeros(len(ends), dtype=bool)
        for lo, hi in self.ranges:  # bar end e covers [e - 1 minute, e)
            keep |= (ends > lo) & (ends <= hi)
        return keep

    def _untrusted(self, replayed: pd.DataFrame) -> npt.NDArray[np.int64]:
        """Bar ends (ns) outside the fetched ranges where the replay and the store disagree."""
        cols = ["ts", "volume", "trade_count", "close"]

        def keyed(df: pd.DataFrame) -> pd.DataFrame:
            return df[cols].assign(ts=pd.DatetimeIndex(df["ts"]).as_unit("ns").asi8)

        both = keyed(replayed).merge(
            keyed(self.stored_bars), on="ts", how="outer", suffixes=("", "_s"), indicator=True
        )
        same = (
            (both["_merge"] == "both")
            & np.isclose(both["volume"], both["volume_s"])
            & (both["trade_count"] == both["trade_count_s"])
            & np.isclose(both["close"], both["close_s"])
        )
        ends = pd.DatetimeIndex(both["ts"].to_numpy(dtype="int64"), tz="UTC")
        # a vendor bar without a trade count (Yahoo: NULL) compares as NA: never equal
        bad = ~same.fillna(False).to_numpy(dtype=bool) & ~self._fetched(ends)
        return np.sort(ends[bad].as_unit("ns").asi8)

    def commit(self) -> None:
        cols = list(self.stored_bars.columns)
        bars = pd.concat(self._bars, ignore_index=True) if self._bars else None
        if bars is None or bars.empty:
            bars = pd.DataFrame({c: pd.Series(dtype=self.stored_bars[c].dtype) for c in cols})
        ends = pd.DatetimeIndex(bars["ts"])
        keep = self._fetched(ends)
        if keep.any():
            self.bars += self.store.write_bars(bars[keep])
        if not self._features:
            return
        feats = pd.concat(self._features, ignore_index=True)
        feats = feats[pd.DatetimeIndex(feats["ts"]) > self.first]
        if feats.empty:
            return
        bad = self._untrusted(bars)
        ok = self._trusted_rows(pd.DatetimeIndex(feats["ts"]), ends, bad)
        self.features_skipped += int((~ok).sum())
        if (~ok).any():
            log.warning(
                "backfill_features_skipped", symbol=str(feats["symbol"].iloc[0]),
                rows=int((~ok).sum()), untrusted_bars=len(bad),
            )  # fmt: skip
        if ok.any():
            self.features += self.store.write_features(feats[ok])

    @staticmethod
    def _trusted_rows(
        ts: pd.DatetimeIndex, bar_ends: pd.DatetimeIndex, bad: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Rows at ``ts`` whose windows — the minutes (T - 15m, T] and the 20 bars before T
        (the replay's bars) — contain no untrusted bar end."""
        t = ts.as_unit("ns").asi8
        if len(bad) == 0:
            return np.ones(len(t), dtype=bool)
        be = np.sort(bar_ends.as_unit("ns").asi8)
        # the (VOLUME_RATIO_LOOKBACK + 1)-th bar at or before T, when there is one
        at = np.searchsorted(be, t, side="right") - (VOLUME_RATIO_LOOKBACK + 1)
        oldest_bar = np.where(at >= 0, be[np.clip(at, 0, None)], np.iinfo(np.int64).min)
        lo = np.minimum(t - LONGEST_WINDOW_MINUTES * NS_PER_MINUTE, oldest_bar)
        # any untrusted end in (lo, T]?  (lo is a bar end the window starts after, or earlier)
        first_after_lo = np.searchsorted(bad, lo, side="left")
        first_after_t = np.searchsorted(bad, t, side="right")
        return np.asarray(first_after_t == first_after_lo)


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
        now: Callable[[], pd.Timestamp] = wall_clock,
        yfinance_factory: Callable[[], YFinanceBars] | None = None,
        producer_factory: Callable[[], TradeProducer] | None = None,
    ) -> None:
        self.store = store
        self.client_factory = client_factory
        self.yfinance_factory = yfinance_factory or default_yfinance
        self.producer_factory = producer_factory
        self.progress = progress or LogProgress()
        self.clock = clock
        self.now = now  # what "now" is for which minutes are settled (injected in tests)

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
        with self.store.try_lock(run_lock(run_id)) as mine:
            if not mine:
                raise BackfillBusyError(f"backfill run {run_id!r} is running elsewhere")
            self.store.record_backfill_ranges(ranges)
            return self._execute(run, opts, ranges)

    def resume(self, run_id: str) -> BackfillResult:
        with self.store.try_lock(run_lock(run_id)) as mine:
            if not mine:
                raise BackfillBusyError(
                    f"backfill run {run_id!r} is running or being resumed elsewhere; "
                    "resume it once that process has ended"
                )
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
            gaps = whole_sessions(opts)
        else:
            # A trade backfill heals minutes without an engine bar (a vendor bar is replaced by
            # the bar its trades make) and trusts only trade runs' checks; a vendor-bar run
            # fills minutes with no bar at all, and any run's check (no trades: no bar) holds.
            trades = not opts.bars_only
            gaps = find_gaps(
                self.store, opts.symbols, opts.start, opts.end, calendar=opts.calendar,
                extended_hours=opts.extended_hours,
                merge_within_minutes=opts.merge_within_minutes,
                bars_from=("trades",) if trades else None,
                checked_by=("polygon",) if trades else None,
            )  # fmt: skip
        return clip_gaps(gaps, horizon(self.now()))

    def _execute(
        self, run: BackfillRun, opts: BackfillOptions, ranges: list[BackfillRange]
    ) -> BackfillResult:
        t0 = self.clock()
        stats = BackfillStats(
            ranges=len(ranges),
            minutes=sum(_minutes(r) for r in ranges),
        )
        kept = ("bars", "features", "features_skipped", "produced")
        stats.add({k: v for k, v in run.stats.items() if k in kept})
        self.progress.start(run.run_id, ranges, stats.minutes)
        error = ""
        try:
            asyncio.run(self._fetch_and_compute(opts, ranges, stats))
        except (PolygonAuthError, MarketDataError, KafkaProduceError) as err:
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
        yahoo = self.yfinance_factory() if opts.source == "yfinance" else None
        producer = self._producer(opts)
        settled = horizon(self.now())
        try:

            def key(r: BackfillRange) -> tuple[str, dt.date]:
                return (r.symbol, session_of(r))

            for _, group in groupby(sorted(ranges, key=lambda r: (*key(r), r.seq)), key=key):
                todo = list(group)
                if all(r.status == "done" for r in todo):
                    continue
                if opts.bars_only:
                    fetched = [await self._fetch_bars(client, yahoo, opts, r) for r in todo]
                else:
                    fetched = [await self._fetch(client, opts, r, stats, producer) for r in todo]
                if any(r.end > settled for r in fetched):  # planned with another clock
                    log.warning("backfill_range_not_settled", symbol=todo[0].symbol)
                elif opts.bars_only:  # vendor bars are written as fetched: no replay
                    done = [replace(r, status="done") for r in fetched if r.status == "fetched"]
                    self.store.record_backfill_ranges(done)
                    stats.bars += sum(r.stored for r in fetched if r.status == "fetched")
                elif all(r.status in ("fetched", "done") for r in fetched):
                    self._compute(opts, fetched, stats)
                    self.store.record_backfill_ranges([replace(r, status="done") for r in fetched])
                for r in fetched:
                    self.progress.range_done(
                        replace(r, status="done") if r.status == "fetched" else r
                    )
        finally:
            stats.api_calls = client.requests + (yahoo.requests if yahoo else 0)
            stats.retries = client.retries + (yahoo.retries if yahoo else 0)
            stats.http_429 = counter.throttled + (yahoo.throttled if yahoo else 0)
            stats.http_5xx = counter.server_errors
            if producer is not None:
                stats.produced += producer.produced
                producer.close()
            await client.aclose()

    def _producer(self, opts: BackfillOptions) -> TradeProducer | None:
        if opts.sink != "kafka":
            return None
        if self.producer_factory is None:
            raise BackfillError("--sink kafka needs a Kafka producer (KAFKA_BOOTSTRAP_SERVERS)")
        return self.producer_factory()

    async def _fetch_bars(
        self,
        client: PolygonRestClient,
        yahoo: YFinanceBars | None,
        opts: BackfillOptions,
        rng: BackfillRange,
    ) -> BackfillRange:
        """Vendor bars of one range straight into ohlcv_1m (never over an engine bar); the
        cursor is the newest bar end written, so a resume asks from there."""
        if rng.status in ("fetched", "done"):
            return rng
        lo = pd.Timestamp(rng.cursor_ns, tz="UTC") if rng.cursor_ns is not None else rng.start

        async def pages() -> AsyncIterator[BarPage]:
            if yahoo is not None:
                yield await yahoo.page(rng.symbol, lo, rng.end, self.now())
            else:
                async for p in polygon_bar_pages(client, rng.symbol, lo, rng.end, opts.page_limit):
                    yield p

        try:
            async for page in pages():  # each page written and its cursor recorded at once
                if page.rejects:
                    self.store.write_dlq(page.rejects)
                stored = self.store.write_vendor_bars(page.bars) if len(page.bars) else 0
                rng = self._page_done(rng, page.max_end_ns, page.results, stored)
        except (PolygonRestError, MarketDataError) as err:
            return self._range_ended(rng, err)
        return self._range_ended(rng, None)

    async def _fetch(
        self,
        client: PolygonRestClient,
        opts: BackfillOptions,
        rng: BackfillRange,
        stats: BackfillStats,
        producer: TradeProducer | None = None,
    ) -> BackfillRange:
        if rng.status in ("fetched", "done"):
            return rng
        gte = rng.cursor_ns if rng.cursor_ns is not None else rng.start.value
        try:
            async for page in trade_pages(client, rng.symbol, gte, rng.end.value, opts.page_limit):
                if page.rejects:
                    self.store.write_dlq(page.rejects)
                    stats.rejected += len(page.rejects)
                fresh = new_trades(self.store, page.trades)
                if producer is not None and len(fresh):
                    # to market.trades first, acknowledged, then the store: a kill in between
                    # produces the page again on resume (consumers drop the copies), never less
                    producer.produce([page.events[i] for i in fresh.index])
                stored = self.store.write_trades(fresh) if len(fresh) else 0
                rng = self._page_done(rng, page.max_ts_ns, page.results, stored)
        except PolygonRestError as err:
            return self._range_ended(rng, err)
        return self._range_ended(rng, None)

    def _page_done(
        self, rng: BackfillRange, cursor_ns: int | None, results: int, stored: int
    ) -> BackfillRange:
        """A page is written: the range's cursor (the page's newest time, or where it was) and
        counts move on, recorded at once so a killed run resumes after it."""
        rng = replace(
            rng, status="pending", cursor_ns=cursor_ns if cursor_ns is not None else rng.cursor_ns,
            trades=rng.trades + results, stored=rng.stored + stored,
        )  # fmt: skip
        self.store.record_backfill_ranges([rng])
        self.progress.page(rng)
        return rng

    def _range_ended(self, rng: BackfillRange, err: Exception | None) -> BackfillRange:
        """The range is fetched, or failed with ``err``; recorded."""
        if err is not None:
            log.warning("backfill_range_failed", seq=rng.seq, symbol=rng.symbol, error=str(err))
        rng = replace(rng, status="fetched" if err is None else "failed")
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
        sink = _FetchedMinutes(self.store, ranges, self.store.bars([symbol], lo, hi + MINUTE))
        engine = LocalEngine(
            sink, sessions=session_index(opts.calendar, opts.extended_hours),
            extended_hours=opts.extended_hours, calendar=opts.calendar,
        )  # fmt: skip
        for i in range(0, len(trades), ENGINE_CHUNK):
            engine.process(trades.iloc[i : i + ENGINE_CHUNK])
        engine.flush()
        sink.commit()
        stats.bars += sink.bars
        stats.features += sink.features
        stats.features_skipped += sink.features_skipped


def default_yfinance() -> YFinanceBars:
    from signalstack.marketdata.yfinance_source import YFinanceSource

    return YFinanceBars(YFinanceSource())


def run_lock(run_id: str) -> str:
    """The store lock a process holds while it executes the run ``run_id``."""
    return f"backfill.run.{run_id}"
