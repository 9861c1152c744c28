"""Vendor bars → ``ohlcv_1m`` (``--source polygon-aggs`` against the fake Polygon server's
``/v2/aggs``, ``--source yfinance`` through the real yfinance code on recorded Yahoo frames), on
DuckDB and the real TimescaleDB: marked with their source, idempotent, never over an engine bar,
and replaced by the bars a later trade backfill makes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from signalstack.backfill.bars import YFinanceBars, checked, polygon_bar_pages
from signalstack.backfill.run import BackfillOptions, BackfillRunner
from signalstack.marketdata.fake_polygon import FakePolygonServer
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.marketdata.yfinance_source import YFinanceSource
from signalstack.store.base import Store
from signalstack.store.duckdb import DuckDBStore

from .conftest import DAY, KEY, SYMBOLS, client_factory
from .yahoo_replay import YahooReplay, forget_yfinance_state

ET = "America/New_York"
LO = pd.Timestamp(DAY).tz_localize(ET).tz_convert("UTC")
HI = LO + pd.Timedelta(days=1)
YDAYS = (dt.date(2025, 11, 18), dt.date(2025, 11, 20))  # the recorded Yahoo sessions
YLO = pd.Timestamp(YDAYS[0]).tz_localize(ET).tz_convert("UTC")
YHI = pd.Timestamp(YDAYS[1]).tz_localize(ET).tz_convert("UTC") + pd.Timedelta(days=1)
YNOW = pd.Timestamp("2025-11-21 12:00", tz="UTC")


@pytest.fixture(
    params=[pytest.param("duckdb"), pytest.param("timescale", marks=pytest.mark.integration)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "duckdb":
        s = DuckDBStore(str(tmp_path / "bars.duckdb"))
    else:
        from signalstack.store.timescale import TimescaleStore

        s = TimescaleStore(request.getfixturevalue("timescale_db").dsn)
    s.migrate()
    yield s
    s.close()


def opts(**kw: object) -> BackfillOptions:
    base: dict[str, object] = {"symbols": SYMBOLS, "start": DAY, "end": DAY, "page_limit": 200}
    return BackfillOptions(**{**base, **kw})  # type: ignore[arg-type]


def sources(store: Store, lo: pd.Timestamp = LO, hi: pd.Timestamp = HI) -> pd.Series:
    return store.bar_sources(list(SYMBOLS), lo, hi)["source"].value_counts()


async def fake_aggs(srv: FakePolygonServer) -> pd.DataFrame:
    """The fake's own minute aggregates of the regular session, as bars stamped with their end."""
    open_, close = pd.Timestamp(f"{DAY} 09:30", tz=ET), pd.Timestamp(f"{DAY} 16:00", tz=ET)
    rows = []
    async with PolygonRestClient(srv.rest_url, KEY, rate_per_s=10_000) as client:
        for sym in SYMBOLS:
            async for page in client.aggs(sym, 1, "minute", str(DAY), str(DAY)):
                rows += [{"symbol": sym, **r} for r in page]
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["t"], unit="ms", utc=True) + pd.Timedelta(minutes=1)
    df = df[(df["ts"] > open_) & (df["ts"] <= close)]
    return df.sort_values(["symbol", "ts"]).reset_index(drop=True)


def test_polygon_aggs_land_marked_equal_to_the_source_and_twice_adds_nothing(
    fake_history: Callable[..., FakePolygonServer], store: Store
) -> None:
    srv = fake_history(rest_429_every=3, rest_503_every=5)
    runner = BackfillRunner(store, client_factory(srv))
    first = runner.start(opts(source="polygon-aggs", detect_gaps=True, page_limit=50))
    assert first.status == "ok" and first.healed, first.summary()
    assert first.stats.http_429 > 0 and first.stats.http_5xx > 0 and first.stats.retries > 0
    want = asyncio.run(fake_aggs(srv))
    bars = store.bars(list(SYMBOLS), LO, HI)
    assert len(bars) == len(want) == first.stats.bars == first.stats.trades_stored > 600
    np.testing.assert_array_equal(bars["ts"].to_numpy(), want["ts"].to_numpy())
    for ours, theirs in [("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"),
                         ("volume", "v"), ("vwap", "vw"), ("trade_count", "n")]:  # fmt: skip
        np.testing.assert_allclose(bars[ours].to_numpy(float), want[theirs].to_numpy(float))
    assert sources(store).to_dict() == {"polygon_aggs": len(want)}
    assert store.count("features") == 0 and store.count("trades") == 0  # no fake trades
    before = store.bars(list(SYMBOLS), LO, HI)

    again = runner.start(opts(source="polygon-aggs", detect_gaps=True))
    assert again.status == "ok" and again.stats.ranges == 0 and again.stats.api_calls == 0
    full = runner.start(opts(source="polygon-aggs", detect_gaps=False))
    assert full.status == "ok" and full.stats.trades_fetched >= len(want)
    pd.testing.assert_frame_equal(store.bars(list(SYMBOLS), LO, HI), before)
    assert store.count("ohlcv_1m") == len(want)
    run = store.backfill_run(first.run_id)
    assert run is not None and run.source == "polygon-aggs" and run.status == "ok"


def test_engine_bars_win_and_a_later_trade_backfill_replaces_vendor_bars(
    fake_history: Callable[..., FakePolygonServer], store: Store, tmp_path: Path
) -> None:
    srv = fake_history()
    ref = DuckDBStore(str(tmp_path / "ref.duckdb"))
    ref.migrate()
    BackfillRunner(ref, client_factory(srv)).start(opts(detect_gaps=False))
    engine = ref.bars(list(SYMBOLS), LO, HI)
    ref_features = ref.training_frame(list(SYMBOLS), LO, HI, HI)
    ref.close()

    runner = BackfillRunner(store, client_factory(srv))
    # vendor bars first: then trades for AAPL's whole session, with gap detection, replace them
    assert runner.start(opts(source="polygon-aggs")).status == "ok"
    assert set(sources(store).index) == {"polygon_aggs"}
    healed = runner.start(opts(symbols=("AAPL",), detect_gaps=True))
    assert healed.status == "ok" and healed.stats.ranges == 1  # vendor minutes are trade gaps
    src = store.bar_sources(list(SYMBOLS), LO, HI)
    assert set(src.loc[src["symbol"] == "AAPL", "source"]) == {"trades"}
    assert set(src.loc[src["symbol"] == "MSFT", "source"]) == {"polygon_aggs"}
    aapl = store.bars(["AAPL"], LO, HI)
    pd.testing.assert_frame_equal(
        aapl, engine[engine["symbol"] == "AAPL"].reset_index(drop=True), check_like=True
    )

    # then the engine's bars for MSFT; a vendor reload afterwards changes none of them
    assert runner.start(opts(symbols=("MSFT",), detect_gaps=True)).status == "ok"
    reload = runner.start(opts(source="polygon-aggs", detect_gaps=False))
    assert reload.status == "ok" and reload.stats.bars == 0  # every minute has an engine bar
    pd.testing.assert_frame_equal(store.bars(list(SYMBOLS), LO, HI), engine)
    assert set(sources(store).index) == {"trades"}
    feats = store.training_frame(list(SYMBOLS), LO, HI, HI)
    pd.testing.assert_frame_equal(feats, ref_features)


def test_a_failed_aggs_range_resumes_from_its_cursor(
    fake_history: Callable[..., FakePolygonServer], store: Store
) -> None:
    srv = fake_history(rest_429_every=2)  # every other request is a 429: one retry is not enough
    broken = BackfillRunner(store, client_factory(srv, max_retries=0))
    first = broken.start(opts(source="polygon-aggs", page_limit=60))
    assert first.status == "failed" and first.stats.failed_ranges >= 1
    ranges = store.backfill_ranges(first.run_id)
    assert any(r.status == "failed" and r.cursor_ns is not None for r in ranges)
    partial = store.count("ohlcv_1m")
    assert partial > 0

    resumed = BackfillRunner(store, client_factory(srv)).resume(first.run_id)
    assert resumed.status == "ok" and resumed.healed
    assert store.count("ohlcv_1m") > partial
    want = asyncio.run(fake_aggs(srv))
    bars = store.bars(list(SYMBOLS), LO, HI)
    np.testing.assert_array_equal(bars["ts"].to_numpy(), want["ts"].to_numpy())
    np.testing.assert_allclose(bars["close"].to_numpy(), want["c"].to_numpy())


@pytest.fixture
def yahoo(tmp_path: Path) -> Iterator[Callable[..., YFinanceBars]]:
    import yfinance as yf

    yf.set_tz_cache_location(str(tmp_path / "yf-cache"))
    forget_yfinance_state()
    sessions: list[requests.Session] = []

    def make(rate_limited: int = 0) -> YFinanceBars:
        s = requests.Session()
        adapter = YahooReplay(rate_limited)
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        sessions.append(s)

        async def no_wait(_: float) -> None:
            return None

        return YFinanceBars(
            YFinanceSource(session=s), rate_per_s=1_000, backoff_base=0.0, sleep=no_wait, seed=1
        )

    yield make
    for s in sessions:
        s.close()
    forget_yfinance_state()


def test_yfinance_bars_land_marked_without_trade_count_and_twice_adds_nothing(
    yahoo: Callable[..., YFinanceBars], store: Store
) -> None:
    runner = BackfillRunner(store, client_factory_unused, now=lambda: YNOW, yfinance_factory=yahoo)
    o = opts(source="yfinance", start=YDAYS[0], end=YDAYS[1], detect_gaps=True)
    first = runner.start(o)
    assert first.status == "ok" and first.healed, first.summary()
    assert first.stats.api_calls == first.stats.ranges == 3 * len(SYMBOLS)  # one per session
    want = yahoo().source.bars("AAPL", YLO.to_pydatetime(), YHI.to_pydatetime(), "1m",
                          YNOW.to_pydatetime())  # fmt: skip
    bars = store.bars(["AAPL"], YLO, YHI)
    assert len(bars) == len(want) > 1000  # three sessions, the empty minutes have no bar
    np.testing.assert_array_equal(bars["ts"].to_numpy(), want["ts"].to_numpy())
    np.testing.assert_allclose(bars["close"].to_numpy(), want["close"].to_numpy())
    np.testing.assert_allclose(bars["volume"].to_numpy(), want["volume"].to_numpy())
    assert bars["trade_count"].isna().all() and bars["vwap"].isna().all()  # Yahoo has neither
    assert set(sources(store, YLO, YHI).index) == {"yfinance"}
    assert store.count("trades") == 0
    before = store.bars(list(SYMBOLS), YLO, YHI)

    again = runner.start(o)
    assert again.status == "ok" and again.stats.ranges == 0 and again.stats.api_calls == 0
    full = runner.start(replace_opts(o, detect_gaps=False))
    assert full.status == "ok"
    pd.testing.assert_frame_equal(store.bars(list(SYMBOLS), YLO, YHI), before)


def test_yfinance_rate_limits_are_retried_and_counted(
    yahoo: Callable[..., YFinanceBars], store: Store
) -> None:
    yb = yahoo(rate_limited=4)  # 429s (yfinance raises YFRateLimitError; it may retry once)
    runner = BackfillRunner(
        store, client_factory_unused, now=lambda: YNOW, yfinance_factory=lambda: yb
    )
    res = runner.start(opts(source="yfinance", symbols=("MSFT",), start=YDAYS[1], end=YDAYS[1]))
    assert res.status == "ok", res.summary()
    assert res.stats.retries >= 1 and res.stats.http_429 == res.stats.retries
    assert res.stats.api_calls == res.stats.retries + 1
    assert store.count("ohlcv_1m") > 300


def test_yahoo_refusing_old_history_fails_the_range_clearly(
    yahoo: Callable[..., YFinanceBars], store: Store
) -> None:
    late = YNOW + pd.Timedelta(days=60)  # 1m bars older than 30 days: Yahoo refuses them
    runner = BackfillRunner(
        store, client_factory_unused, now=lambda: late, yfinance_factory=lambda: yahoo()
    )
    res = runner.start(opts(source="yfinance", symbols=("MSFT",), start=YDAYS[1], end=YDAYS[1]))
    assert res.status == "failed" and res.stats.failed_ranges == 1 and res.stats.api_calls == 1
    assert store.count("ohlcv_1m") == 0


def test_bad_vendor_bars_go_to_the_dlq_with_their_reason() -> None:
    t0 = pd.Timestamp("2024-03-12 14:00", tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": "AAPL",
            "ts": [t0 + pd.Timedelta(minutes=i) for i in (1, 2, 3, 4)]
            + [t0 + pd.Timedelta(minutes=5, seconds=30)],
            "open": [10.0, 10.0, -1.0, 10.0, 10.0],
            "high": [11.0, 9.0, 11.0, 11.0, 11.0],
            "low": [9.0, 8.0, 9.0, 9.0, 9.0],
            "close": [10.5, 10.5, 10.0, 10.0, 10.0],
            "volume": [100.0, 100.0, 100.0, float("nan"), 100.0],
            "vwap": float("nan"),
            "trade_count": pd.array([3, 3, 3, 3, 3], dtype="Int64"),
            "source": "polygon_aggs",
        }
    )
    raw = [{"i": i} for i in range(5)]
    page = checked("AAPL", frame, raw, "polygon_aggs", t0, t0 + pd.Timedelta(hours=1))
    assert page.bars["ts"].tolist() == [t0 + pd.Timedelta(minutes=1)]
    assert [(r.reason, r.payload) for r in page.rejects] == [
        ("bar_high_low_inconsistent", '{"i":1}'),
        ("bad_price", '{"i":2}'),
        ("bad_volume", '{"i":3}'),
        ("bar_not_on_minute", '{"i":4}'),
    ]
    assert {r.source for r in page.rejects} == {"backfill.polygon_aggs"}


def test_aggs_pages_keep_only_the_range(fake_history: Callable[..., FakePolygonServer]) -> None:
    srv = fake_history()
    lo = pd.Timestamp(f"{DAY} 10:00", tz=ET).tz_convert("UTC")
    hi = lo + pd.Timedelta(minutes=30)

    async def go() -> list[pd.Timestamp]:
        async with PolygonRestClient(srv.rest_url, KEY, rate_per_s=10_000) as client:
            return [
                t
                async for page in polygon_bar_pages(client, "AAPL", lo, hi, 7)
                for t in page.bars["ts"]
            ]

    ends = asyncio.run(go())
    assert ends == sorted(ends) and len(ends) == len(set(ends)) > 20
    assert min(ends) > lo and max(ends) <= hi


def client_factory_unused(transport: object) -> PolygonRestClient:
    return PolygonRestClient("http://127.0.0.1:9", KEY, transport=transport)  # type: ignore[arg-type]


def replace_opts(o: BackfillOptions, **kw: object) -> BackfillOptions:
    from dataclasses import replace

    return replace(o, **kw)  # type: ignore[arg-type]


def test_the_source_migration_keeps_existing_bars_as_engine_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bars written before sql/duckdb/005_ohlcv_source.sql become ``trades`` bars, which a
    vendor bar then cannot replace; trade_count accepts NULL only afterwards."""
    import shutil

    from signalstack.store.migrations import sql_dir

    old = tmp_path / "sql"
    shutil.copytree(sql_dir(), old)
    (old / "duckdb" / "005_ohlcv_source.sql").unlink()
    monkeypatch.setenv("SIGNALSTACK_SQL_DIR", str(old))
    s = DuckDBStore(str(tmp_path / "old.duckdb"))
    try:
        s.migrate()
        t = pd.Timestamp("2024-03-12 14:00", tz="UTC")
        bar = pd.DataFrame({"symbol": ["AAPL"], "ts": [t], "open": [1.0], "high": [2.0],
                            "low": [1.0], "close": [2.0], "volume": [10.0], "vwap": [1.5],
                            "trade_count": [3]})  # fmt: skip
        s._sql(  # a bar written by the previous release (no source column)
            "INSERT INTO ohlcv_1m SELECT 'AAPL', ?, 1, 2, 1, 2, 10, 1.5, 3", [t.to_pydatetime()]
        )
        monkeypatch.delenv("SIGNALSTACK_SQL_DIR")
        assert s.migrate() == ["005_ohlcv_source"]
        assert s.bar_sources(["AAPL"], t, t + MIN)["source"].tolist() == ["trades"]
        vendor = bar.assign(close=9.0, high=9.0, trade_count=pd.array([None], dtype="Int64"),
                            source="yfinance")  # fmt: skip
        assert s.write_vendor_bars(vendor) == 0
        assert s.bars(["AAPL"], t, t + MIN)["close"].tolist() == [2.0]
        later = vendor.assign(ts=t + MIN)
        assert s.write_vendor_bars(later) == 1
        got = s.bars(["AAPL"], t, t + 2 * MIN)
        assert got["trade_count"].dtype == "Int64" and got["trade_count"].isna().tolist() == [
            False, True,
        ]  # fmt: skip
    finally:
        s.close()


MIN = pd.Timedelta(minutes=1)


def test_a_trade_backfill_beside_a_yahoo_bar_treats_it_as_untrusted() -> None:
    """A stored vendor bar without a trade count (NULL) outside the fetched ranges is not equal
    to the replay's bar: the feature rows reading it are left alone (it used to crash)."""
    from signalstack.backfill.run import _FetchedMinutes
    from signalstack.store.base import BackfillRange

    t = pd.Timestamp("2024-03-12 14:00", tz="UTC")

    def bars(counts: object, ends: list[pd.Timestamp]) -> pd.DataFrame:
        cols = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0, "volume": 10.0, "vwap": 1.0}
        return pd.DataFrame({"symbol": "AAPL", "ts": ends, **cols, "trade_count": counts})

    stored = bars(pd.array([None, 3], dtype="Int64"), [t + 3 * MIN, t + 4 * MIN])
    replayed = bars(np.array([5, 5, 3]), [t + MIN, t + 3 * MIN, t + 4 * MIN])
    ranges = [BackfillRange("r", 0, "AAPL", t, t + 2 * MIN)]
    fetched = _FetchedMinutes(None, ranges, stored)  # type: ignore[arg-type]
    assert fetched._untrusted(replayed).tolist() == [(t + 3 * MIN).value]


def test_polygon_bars_are_asked_for_as_traded_not_split_adjusted(
    fake_history: Callable[..., FakePolygonServer], store: Store
) -> None:
    """Engine bars are prices as traded; Polygon split-adjusts aggregates by default, which
    would mix two price scales in ohlcv_1m after a split."""
    import httpx

    srv = fake_history()
    seen: list[httpx.URL] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url)
            return await self.inner.handle_async_request(request)

    plain = client_factory(srv)
    runner = BackfillRunner(store, lambda t: plain(Recording(t)))
    assert runner.start(opts(source="polygon-aggs", symbols=("AAPL",))).status == "ok"
    aggs = [u for u in seen if u.path.startswith("/v2/aggs/")]
    # the first request of each range says so; next_url pages carry Polygon's cursor, which
    # encodes the original query
    firsts = [u for u in aggs if "cursor" not in u.params]
    assert firsts and all(u.params.get("adjusted") == "false" for u in firsts)


def test_a_vendor_bar_never_replaces_a_better_ranked_one(store: Store) -> None:
    """Trades > Polygon aggregates (as traded, with vwap and count) > Yahoo (split-adjusted, no
    vwap): a Yahoo reload over Polygon's bars writes nothing; Polygon's over Yahoo's replaces
    them; a bar of the same source replaces its own (a re-fetch corrects)."""
    t = pd.Timestamp("2024-03-12 14:01", tz="UTC")

    def bar(source: str, close: float, minute: int = 0) -> pd.DataFrame:
        yahoo = source == "yfinance"
        return pd.DataFrame(
            {
                "symbol": ["AAPL"], "ts": [t + minute * MIN], "open": [close], "high": [close],
                "low": [close], "close": [close], "volume": [10.0],
                "vwap": [np.nan if yahoo else close],
                "trade_count": pd.array([None if yahoo else 4], dtype="Int64"),
                "source": [source],
            }
        )  # fmt: skip

    def stored(minute: int = 0) -> tuple[str, float]:
        df = store.bar_sources(["AAPL"], t - MIN, t + 5 * MIN)
        src = df.loc[df["ts"] == t + minute * MIN, "source"].item()
        close = store.bars(["AAPL"], t - MIN, t + 5 * MIN)
        return src, float(close.loc[close["ts"] == t + minute * MIN, "close"].item())

    assert store.write_vendor_bars(bar("polygon_aggs", 100.0)) == 1
    assert store.write_vendor_bars(bar("yfinance", 50.0)) == 0  # worse: kept out
    assert stored() == ("polygon_aggs", 100.0)
    assert store.write_vendor_bars(bar("polygon_aggs", 101.0)) == 1  # same source: corrects
    assert stored() == ("polygon_aggs", 101.0)
    assert store.write_vendor_bars(bar("yfinance", 50.0, minute=1)) == 1
    assert store.write_vendor_bars(bar("polygon_aggs", 102.0, minute=1)) == 1  # better: replaces
    assert stored(1) == ("polygon_aggs", 102.0)
