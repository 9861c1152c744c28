"""yfinance source, offline: the real yfinance code runs against recorded Yahoo chart responses.

A ``requests.Session`` (a session type yfinance accepts) with a transport adapter answers
Yahoo's hosts from tests/fixtures/marketdata: the cookie and crumb endpoints, then
``/v8/finance/chart/{T}`` with the fixture body. Nothing is mocked inside yfinance.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter

from signalstack.marketdata.errors import HistoryLimitError
from signalstack.marketdata.yfinance_source import YFinanceSource, normalize, plan_requests

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "marketdata"
DAY_OPEN = dt.datetime(2025, 11, 20, 14, 30, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 11, 21, 12, 0, tzinfo=dt.UTC)


class YahooReplay(BaseAdapter):
    """Serves recorded Yahoo responses; records every request it saw."""

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.seen: list[tuple[str, dict[str, list[str]]]] = []

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        url = urlsplit(request.url)
        q = parse_qs(url.query)
        self.seen.append((url.netloc + url.path, q))
        resp = requests.Response()
        resp.url = request.url
        resp.request = request
        resp.headers["Content-Type"] = "application/json"
        if url.path.endswith("/getcrumb"):
            resp.status_code, resp._content = 200, b"replayCrumb"
        elif "/v8/finance/chart/" in url.path:
            sym = url.path.rsplit("/", 1)[1]
            interval = q.get("interval", ["1d"])[0]
            if q.get("range") == ["1d"]:
                interval = "1d"
            path = FIX / f"yahoo_chart_{sym}_{interval}.json"
            if self.status != 200:
                resp.status_code, resp._content = self.status, b"Too Many Requests"
            elif path.exists():
                resp.status_code, resp._content = 200, path.read_bytes()
            else:
                resp.status_code = 404
                resp._content = json.dumps(
                    {
                        "chart": {
                            "result": None,
                            "error": {
                                "code": "Not Found",
                                "description": "No data found, symbol may be delisted",
                            },
                        }
                    }
                ).encode()
        else:  # fc.yahoo.com cookie page and anything else
            resp.status_code, resp._content = 404, b""
        return resp

    def close(self) -> None:
        pass


@pytest.fixture
def yahoo(tmp_path, monkeypatch):
    import yfinance as yf

    yf.set_tz_cache_location(str(tmp_path / "yf-cache"))
    adapter = YahooReplay()
    s = requests.Session()
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s, adapter


def test_bars_parse_recorded_chart_through_yfinance(yahoo) -> None:
    session, adapter = yahoo
    src = YFinanceSource(session=session)
    bars = src.bars("AAPL", DAY_OPEN, DAY_OPEN + dt.timedelta(hours=6, minutes=30), "1m", now=NOW)
    raw = json.loads((FIX / "yahoo_chart_AAPL_1m.json").read_text())["chart"]["result"][0]
    quote = raw["indicators"]["quote"][0]
    present = [i for i, c in enumerate(quote["close"]) if c is not None]
    assert len(bars) == len(present) == 389  # the null minute is dropped, not invented
    # bar END in UTC = Yahoo's bar start + 1 minute
    first = pd.Timestamp(raw["timestamp"][present[0]], unit="s", tz="UTC")
    assert bars["ts_start"].iloc[0] == first
    assert bars["ts"].iloc[0] == first + pd.Timedelta(minutes=1)
    assert str(bars["ts"].dt.tz) == "UTC"
    k = present[-1]
    last = bars.iloc[-1]
    assert last["close"] == pytest.approx(quote["close"][k], abs=1e-6)
    assert last["volume"] == quote["volume"][k]
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert bars["vwap"].isna().all() and bars["trade_count"].isna().all()
    assert set(bars["source"]) == {"yfinance"}
    # yfinance really asked Yahoo's chart endpoint for 1m bars between our bounds
    chart_calls = [q for u, q in adapter.seen if "/v8/finance/chart/AAPL" in u and "period1" in q]
    assert chart_calls and chart_calls[0]["interval"] == ["1m"]
    assert int(chart_calls[0]["period1"][0]) == int(DAY_OPEN.timestamp())


def test_daily_bar_is_exchange_midnight_and_ends_a_day_later(yahoo) -> None:
    session, _ = yahoo
    bars = YFinanceSource(session=session).bars(
        "AAPL", dt.date(2025, 11, 20), dt.date(2025, 11, 21), "1d", now=NOW
    )
    assert len(bars) == 1
    assert bars["ts_start"].iloc[0] == pd.Timestamp("2025-11-20 05:00", tz="UTC")  # 00:00 New York
    assert bars["ts"].iloc[0] == pd.Timestamp("2025-11-21 05:00", tz="UTC")


def test_one_minute_history_limits_and_chunking() -> None:
    now = dt.datetime(2025, 11, 21, tzinfo=dt.UTC)
    reqs = plan_requests("1m", dt.date(2025, 11, 1), dt.date(2025, 11, 20), now)
    assert [r.end - r.start for r in reqs] == [dt.timedelta(days=7)] * 2 + [dt.timedelta(days=5)]
    assert reqs[0].start == dt.datetime(2025, 11, 1, tzinfo=dt.UTC) and reqs[-1].end == dt.datetime(
        2025, 11, 20, tzinfo=dt.UTC
    )
    with pytest.raises(HistoryLimitError, match="last 30 days"):
        plan_requests("1m", dt.date(2025, 10, 1), dt.date(2025, 10, 3), now)
    with pytest.raises(HistoryLimitError, match="60 days"):
        plan_requests("5m", dt.date(2025, 9, 1), dt.date(2025, 9, 3), now)
    assert len(plan_requests("1h", dt.date(2024, 1, 2), dt.date(2025, 1, 2), now)) == 1
    with pytest.raises(HistoryLimitError):
        plan_requests("60m", dt.date(2023, 1, 2), dt.date(2023, 1, 3), now)
    assert len(plan_requests("1d", dt.date(1990, 1, 2), dt.date(2025, 1, 2), now)) == 1
    with pytest.raises(ValueError, match="unknown interval"):
        plan_requests("7m", dt.date(2025, 11, 1), dt.date(2025, 11, 2), now)


def test_live_unfinished_bar_is_dropped() -> None:
    idx = pd.DatetimeIndex(
        ["2025-11-20 15:58", "2025-11-20 15:59"], tz="America/New_York", name="Datetime"
    )
    f = pd.DataFrame(
        {
            "Open": [1.0, 2.0],
            "High": [1.0, 2.0],
            "Low": [1.0, 2.0],
            "Close": [1.0, 2.0],
            "Volume": [5, 6],
        },
        index=idx,
    )
    now = dt.datetime(2025, 11, 20, 20, 59, 30, tzinfo=dt.UTC)  # 15:59:30 New York
    out = normalize(f, "AAPL", "1m", now)
    assert list(out["close"]) == [1.0]


def test_rate_limit_surfaces_as_marketdata_error(yahoo) -> None:
    from signalstack.marketdata.errors import MarketDataError

    session, adapter = yahoo
    adapter.status = 429
    with pytest.raises(MarketDataError):
        YFinanceSource(session=session).bars(
            "AAPL", DAY_OPEN, DAY_OPEN + dt.timedelta(hours=1), "1m", now=NOW
        )
