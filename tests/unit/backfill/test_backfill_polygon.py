"""Polygon REST → store backfill against the fake Polygon server (history mode) and DuckDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from signalstack.backfill.run import BackfillBusyError, BackfillOptions, BackfillRunner, run_lock
from signalstack.marketdata.fake_polygon import FakePolygonServer
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.marketdata.simulator import SimulatedMarket
from signalstack.store.duckdb import DuckDBStore

from .conftest import DAY, SYMBOLS, client_factory

ET = "America/New_York"
LO = pd.Timestamp(DAY).tz_localize(ET).tz_convert("UTC")
HI = LO + pd.Timedelta(days=1)


@pytest.fixture
def store_factory(tmp_path) -> Iterator[Callable[[str], DuckDBStore]]:
    opened: list[DuckDBStore] = []

    def make(name: str = "store") -> DuckDBStore:
        s = DuckDBStore(str(tmp_path / f"{name}.duckdb"))
        s.migrate()
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def opts(**kw: object) -> BackfillOptions:
    base: dict[str, object] = {"symbols": SYMBOLS, "start": DAY, "end": DAY, "page_limit": 500}
    return BackfillOptions(**{**base, **kw})  # type: ignore[arg-type]


def contents(store: DuckDBStore) -> dict[str, pd.DataFrame]:
    trades = store.trades(list(SYMBOLS), LO, HI).drop(columns=["ts_ingest"])
    feats = store.training_frame(list(SYMBOLS), LO, HI, HI)
    return {"trades": trades, "bars": store.bars(list(SYMBOLS), LO, HI), "features": feats}


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for k in a:
        pd.testing.assert_frame_equal(
            a[k].reset_index(drop=True), b[k].reset_index(drop=True), obj=k
        )


def expected_trades(market: SimulatedMarket) -> int:
    """Distinct trades of the regular session 09:30-16:00 ET (13:30-20:00 UTC on DAY)."""
    open_ = pd.Timestamp(f"{DAY} 09:30", tz=ET).value
    close = pd.Timestamp(f"{DAY} 16:00", tz=ET).value
    keep = (market.ts_event >= open_) & (market.ts_event < close) & ~market.is_duplicate
    return int(keep.sum())


def test_full_day_then_again_adds_nothing(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
    history_market: SimulatedMarket,
) -> None:
    srv = fake_history()
    store = store_factory("a")
    runner = BackfillRunner(store, client_factory(srv))
    first = runner.start(opts(detect_gaps=True))
    assert first.status == "ok" and first.healed
    n = expected_trades(history_market)
    assert store.count("trades") == n == first.stats.trades_stored
    assert first.stats.ranges == len(SYMBOLS)  # an empty store: each session is one gap
    assert first.stats.api_calls >= n // 500  # pages of 500
    bars = store.count("ohlcv_1m")
    assert bars == first.stats.bars > 300 * len(SYMBOLS)
    assert store.count("features") == first.stats.features > 0
    before = contents(store)

    # the same backfill again: no gap is left (every barless minute was checked), nothing fetched
    again = runner.start(opts(detect_gaps=True))
    assert again.status == "ok" and again.stats.ranges == 0 and again.stats.api_calls == 0
    # and a forced full reload stores nothing new and changes no bar or feature
    full = runner.start(opts(detect_gaps=False))
    assert full.stats.ranges == len(SYMBOLS) and full.stats.trades_fetched == n
    assert full.stats.trades_stored == 0
    assert_same(before, contents(store))
    run = store.backfill_run(first.run_id)
    assert run is not None and run.status == "ok" and run.rows == n
    assert run.stats["api_calls"] == first.stats.api_calls


def test_a_gap_is_healed_with_the_bars_and_features_of_the_full_day(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history()
    ref = store_factory("ref")
    BackfillRunner(ref, client_factory(srv)).start(opts(detect_gaps=False))
    want = contents(ref)

    store = store_factory("gap")
    # the live path lost 10:00-10:30 ET of AAPL: trades, bars and features
    live = want["trades"].assign(ts_ingest=0)
    a = pd.Timestamp(f"{DAY} 10:00", tz=ET).tz_convert("UTC")
    b = a + pd.Timedelta(minutes=30)
    lost = (live["symbol"] == "AAPL") & (live["ts_event"] >= a.value) & (live["ts_event"] < b.value)
    store.write_trades(live[~lost])
    bars = want["bars"]
    store.write_bars(bars[~((bars["symbol"] == "AAPL") & (bars["ts"] > a) & (bars["ts"] <= b))])
    feats = want["features"]
    store.write_features(feats[~((feats["symbol"] == "AAPL") & (feats["ts"] > a))])

    runner = BackfillRunner(store, client_factory(srv))
    dry = runner.dry_run(opts(detect_gaps=True))
    # the lost half hour, and the minutes this thin tape really had no trade in (never
    # checked in this store): candidates, fetched once and then checked
    assert [g for g in dry.gaps if g.start <= a and b <= g.end and g.symbol == "AAPL"]
    healed = runner.start(opts(detect_gaps=True))
    assert healed.status == "ok" and healed.stats.ranges == len(dry.gaps)
    assert healed.stats.trades_stored == int(lost.sum()) > 0
    got = contents(store)
    for k in ("bars", "features"):
        pd.testing.assert_frame_equal(got[k], want[k], obj=k)
    pd.testing.assert_frame_equal(
        got["trades"].drop(columns=["source"]), want["trades"].drop(columns=["source"])
    )
    assert runner.dry_run(opts(detect_gaps=True)).gaps == []


def test_429_and_503_are_retried_and_reported(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
    history_market: SimulatedMarket,
) -> None:
    srv = fake_history(rest_429_every=3, rest_503_every=4)
    store = store_factory("faults")
    result = BackfillRunner(store, client_factory(srv)).start(opts(detect_gaps=False))
    assert result.status == "ok"
    assert result.stats.http_429 > 0 and result.stats.http_5xx > 0
    assert result.stats.retries == result.stats.http_429 + result.stats.http_5xx
    assert store.count("trades") == expected_trades(history_market)


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (the subprocess test kills for real)."""


class _DieAfter(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, requests: int) -> None:
        self.inner, self.left = inner, requests

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.left -= 1
        if self.left < 0:
            raise _Killed
        return await self.inner.handle_async_request(request)


def test_killed_run_resumes_from_its_cursor_to_the_same_rows(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history()
    ref = store_factory("ref")
    BackfillRunner(ref, client_factory(srv)).start(opts(detect_gaps=True))

    store = store_factory("killed")
    base = client_factory(srv)

    def dying(transport: httpx.AsyncBaseTransport) -> PolygonRestClient:
        return base(_DieAfter(transport, 4))  # four pages of AAPL, then the process "dies"

    with pytest.raises(_Killed):
        BackfillRunner(store, dying).start(opts(detect_gaps=True), run_id="r-killed")
    run = store.backfill_run("r-killed")
    assert run is not None and run.status == "running"
    ranges = store.backfill_ranges("r-killed")
    assert [r.status for r in ranges] == ["pending", "pending"]
    assert ranges[0].cursor_ns is not None and ranges[0].stored == 4 * 500
    assert ranges[1].cursor_ns is None

    calls: list[int] = []

    def counting(transport: httpx.AsyncBaseTransport) -> PolygonRestClient:
        c = base(transport)
        calls.append(0)
        return c

    resumed = BackfillRunner(store, counting).resume("r-killed")
    assert resumed.status == "ok" and calls == [0]
    assert_same(contents(ref), contents(store))
    got = store.backfill_ranges("r-killed")
    assert [r.status for r in got] == ["done", "done"]
    # restarting at the cursor, not at the range start: the four stored pages are not re-read
    n_aapl = int((contents(ref)["trades"]["symbol"] == "AAPL").sum())
    assert n_aapl <= got[0].trades < n_aapl + 500  # only the trades at the cursor again
    assert got[0].stored == n_aapl
    assert store.backfill_run("r-killed").status == "ok"  # type: ignore[union-attr]


class _DiesAfterWrite:
    """A store that "dies" right after its Nth ``write_trades`` returns: the trades are
    stored, the range's cursor and counters are not (a kill between the two writes)."""

    def __init__(self, inner: DuckDBStore, writes: int) -> None:
        self.inner, self.left = inner, writes

    def write_trades(self, df: pd.DataFrame) -> int:
        n = self.inner.write_trades(df)
        self.left -= 1
        if self.left == 0:
            raise _Killed
        return n

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_killed_between_storing_a_page_and_recording_it_resumes_to_the_same_rows(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history()
    ref = store_factory("ref")
    BackfillRunner(ref, client_factory(srv)).start(opts(detect_gaps=True))

    store = store_factory("killed")
    dying = _DiesAfterWrite(store, 3)  # the third page is stored, its progress is not
    with pytest.raises(_Killed):
        BackfillRunner(dying, client_factory(srv)).start(  # type: ignore[arg-type]
            opts(detect_gaps=True), run_id="r-torn"
        )
    ranges = store.backfill_ranges("r-torn")
    assert ranges[0].stored == 2 * 500 and store.count("trades") == 3 * 500  # torn
    resumed = BackfillRunner(store, client_factory(srv)).resume("r-torn")
    assert resumed.status == "ok"
    assert [r.status for r in store.backfill_ranges("r-torn")] == ["done", "done"]
    assert_same(contents(ref), contents(store))


def test_trades_live_ingest_stored_at_the_millisecond_are_not_stored_again(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history()
    ref = store_factory("ref")
    BackfillRunner(ref, client_factory(srv)).start(opts(detect_gaps=False, symbols=("AAPL",)))
    every = ref.trades(["AAPL"], LO, HI)
    identity = ["symbol", "exchange", "trade_id"]
    assert not every.duplicated(identity).any()
    # live ingest stored the first half with the WebSocket's millisecond timestamps
    live = every.iloc[: len(every) // 2].copy()
    live["ts_event"] = live["ts_event"] // 1_000_000 * 1_000_000
    assert (live["ts_event"] != every["ts_event"].iloc[: len(live)]).any()  # sub-ms REST times
    store = store_factory("live")
    store.write_trades(live)
    result = BackfillRunner(store, client_factory(srv)).start(
        opts(detect_gaps=False, symbols=("AAPL",))
    )
    assert result.status == "ok"
    got = store.trades(["AAPL"], LO, HI)
    assert not got.duplicated(identity).any()
    assert len(got) == len(every) and result.stats.trades_stored == len(every) - len(live)


def test_minutes_not_settled_are_neither_fetched_nor_checked(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history()
    store = store_factory("now")
    now = pd.Timestamp(f"{DAY} 14:00", tz=ET).tz_convert("UTC")  # mid-session
    settled = now - pd.Timedelta(minutes=15)
    o = opts(detect_gaps=True, symbols=("AAPL",))
    result = BackfillRunner(store, client_factory(srv), now=lambda: now).start(o)
    assert result.status == "ok"
    assert [r.end for r in store.backfill_ranges(result.run_id)] == [settled]
    assert int(store.trades(["AAPL"], LO, HI)["ts_event"].max()) < settled.value
    assert store.bars(["AAPL"], LO, HI)["ts"].max() <= settled
    # the afternoon is not checked: once it has settled it is found and fetched
    close = pd.Timestamp(f"{DAY} 16:00", tz=ET).tz_convert("UTC")
    later = BackfillRunner(store, client_factory(srv), now=lambda: close + pd.Timedelta(hours=1))
    gaps = later.dry_run(o).gaps
    assert gaps and gaps[0].start <= settled and gaps[-1].end == close


def test_a_range_planned_past_what_has_settled_is_never_marked_done(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    # planned with a clock that has the whole session settled, executed with one (moved back)
    # that has not: the range is fetched but not checked, and the run says it is not healed
    srv = fake_history()
    store = store_factory("clock")
    times = iter([pd.Timestamp(f"{DAY} 18:00", tz=ET), pd.Timestamp(f"{DAY} 14:00", tz=ET)])
    runner = BackfillRunner(store, client_factory(srv), now=lambda: next(times))
    result = runner.start(opts(detect_gaps=True, symbols=("AAPL",)))
    assert result.status == "failed" and result.stats.failed_ranges == 1
    assert [r.status for r in store.backfill_ranges(result.run_id)] == ["fetched"]
    assert store.checked_ranges(["AAPL"], LO, HI) == []


def test_a_run_being_resumed_elsewhere_is_not_resumed_again(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history()
    store = store_factory("busy")
    base = client_factory(srv)

    def dying(transport: httpx.AsyncBaseTransport) -> PolygonRestClient:
        return base(_DieAfter(transport, 1))

    with pytest.raises(_Killed):
        BackfillRunner(store, dying).start(opts(detect_gaps=True), run_id="r-busy")
    before = srv.rest_requests
    with store.try_lock(run_lock("r-busy")) as held:  # another process resumes it right now
        assert held
        with pytest.raises(BackfillBusyError, match="elsewhere"):
            BackfillRunner(store, base).resume("r-busy")
        assert srv.rest_requests == before
    assert BackfillRunner(store, base).resume("r-busy").status == "ok"


def test_a_range_the_source_refuses_leaves_the_run_unhealed(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    srv = fake_history(rest_503_every=1)  # every request fails
    store = store_factory("down")
    result = BackfillRunner(store, client_factory(srv, max_retries=2)).start(
        opts(detect_gaps=True, symbols=("AAPL",))
    )
    assert result.status == "failed" and not result.healed
    assert result.stats.failed_ranges == 1 and result.stats.retries == 2
    assert [r.status for r in store.backfill_ranges(result.run_id)] == ["failed"]
    # not checked: the next detection still reports the gap
    assert BackfillRunner(store, client_factory(srv)).dry_run(opts(symbols=("AAPL",))).gaps
    assert np.isfinite(result.duration_s)
    assert store.backfill_run(result.run_id).error.startswith("1 range")  # type: ignore[union-attr]


def test_options_round_trip() -> None:
    o = opts(detect_gaps=True, extended_hours=True, merge_within_minutes=3)
    assert BackfillOptions.from_json(o.to_json()) == o
    assert o.to_json()["start"] == DAY.isoformat() and isinstance(dt.date.today(), dt.date)


def test_bars_outside_the_fetched_ranges_are_left_alone(
    fake_history: Callable[..., FakePolygonServer],
    store_factory: Callable[[str], DuckDBStore],
) -> None:
    # The engine replays the session's stored trades, but only the fetched minutes' bars are
    # written: a live bar whose trades the store no longer holds in full must not be
    # replaced by one made from what is left.
    srv = fake_history()
    ref = store_factory("ref")
    BackfillRunner(ref, client_factory(srv)).start(opts(detect_gaps=False, symbols=("AAPL",)))
    want = contents(ref)
    trades, bars = want["trades"].assign(ts_ingest=0), want["bars"]
    a = pd.Timestamp(f"{DAY} 10:00", tz=ET).tz_convert("UTC")
    b = a + pd.Timedelta(minutes=5)
    kept = bars[(bars["ts"] > b + pd.Timedelta(minutes=60)) & (bars["trade_count"] >= 4)]
    m = kept["ts"].iloc[0]  # a live minute an hour later, whose trades we half lose
    in_m = (trades["ts_event"] >= (m - pd.Timedelta(minutes=1)).value) & (
        trades["ts_event"] < m.value
    )
    half = in_m & (in_m.cumsum() % 2 == 0)
    lost = (trades["ts_event"] >= a.value) & (trades["ts_event"] < b.value)

    store = store_factory("partial")
    store.write_trades(trades[~lost & ~half])
    store.write_bars(bars[~((bars["ts"] > a) & (bars["ts"] <= b))])
    store.write_features(want["features"])  # what the live engine wrote
    healed = BackfillRunner(store, client_factory(srv)).start(
        opts(detect_gaps=True, symbols=("AAPL",), merge_within_minutes=0)
    )
    assert healed.status == "ok"
    # nor are the feature rows whose windows read that bar: the fetched minutes' rows are
    # recomputed, the rows reading minute m (its 15 minutes, the 20 bars after it) are kept
    assert healed.stats.features_skipped > 0
    pd.testing.assert_frame_equal(
        store.training_frame(["AAPL"], LO, HI, HI).reset_index(drop=True),
        want["features"].reset_index(drop=True),
        obj="features",
    )
    got = store.bars(["AAPL"], LO, HI)
    pd.testing.assert_frame_equal(
        got[got["ts"] == m].reset_index(drop=True), bars[bars["ts"] == m].reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(
        got[(got["ts"] > a) & (got["ts"] <= b)].reset_index(drop=True),
        bars[(bars["ts"] > a) & (bars["ts"] <= b)].reset_index(drop=True),
    )
