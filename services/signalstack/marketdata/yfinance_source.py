"""History bars from Yahoo Finance through the real ``yfinance`` API (backfill's fallback source).

Yahoo's limits (POLYGON.md, mirrored in yfinance): ``1m`` only within the last ~30 days and at
most 7 days per request; ``2m``–``90m`` within 60 days; ``60m``/``1h`` within 730 days; daily and
longer unlimited. :func:`plan_requests` refuses ranges Yahoo would refuse (a clear
:class:`HistoryLimitError` instead of an empty frame) and splits ``1m`` ranges into 7-day requests.

Bars come back in the store's shape: ``symbol, ts`` (the bar's **end**, UTC — yfinance stamps the
start), ``ts_start, open, high, low, close, volume, vwap, trade_count, source``. Yahoo has no VWAP
or trade count (NaN / <NA>). ``auto_adjust=False`` keeps prices as traded (Yahoo's Close is
already split-adjusted; dividend adjustment would not match the trades). An intraday bar that has
not ended yet (Yahoo's live row) is dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from signalstack.marketdata.errors import HistoryLimitError, MarketDataError

UTC: Final = dt.UTC
INTERVALS: Final = (
    "1m",
    "2m",
    "5m",
    "15m",
    "30m",
    "60m",
    "90m",
    "1h",
    "1d",
    "5d",
    "1wk",
    "1mo",
    "3mo",
)
_INTRADAY_MAX_AGE: Final = {
    "1m": dt.timedelta(days=30),
    **{i: dt.timedelta(days=60) for i in ("2m", "5m", "15m", "30m", "90m")},
    "60m": dt.timedelta(days=730),
    "1h": dt.timedelta(days=730),
}
_PER_REQUEST: Final = {"1m": dt.timedelta(days=7)}
_LENGTH: Final = {
    "1m": pd.Timedelta(minutes=1), "2m": pd.Timedelta(minutes=2), "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15), "30m": pd.Timedelta(minutes=30),
    "60m": pd.Timedelta(hours=1), "90m": pd.Timedelta(minutes=90), "1h": pd.Timedelta(hours=1),
    "1d": pd.Timedelta(days=1), "5d": pd.Timedelta(days=5), "1wk": pd.Timedelta(weeks=1),
}  # fmt: skip
COLUMNS: Final = (
    "symbol", "ts", "ts_start", "open", "high", "low", "close", "volume", "vwap", "trade_count",
    "source",
)  # fmt: skip


@dataclass(frozen=True)
class Request:
    start: dt.datetime  # inclusive, UTC
    end: dt.datetime  # exclusive, UTC


def _utc(t: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(t, dt.datetime):
        return dt.datetime(t.year, t.month, t.day, tzinfo=UTC)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def plan_requests(
    interval: str,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    now: dt.datetime | None = None,
) -> list[Request]:
    """Split [start, end) into requests Yahoo accepts; raise :class:`HistoryLimitError` if it
    reaches further back than the interval allows."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVALS)}")
    s, e = _utc(start), _utc(end)
    if e <= s:
        raise ValueError(f"empty range: start {s.isoformat()} is not before end {e.isoformat()}")
    now = _utc(now or dt.datetime.now(UTC))
    max_age = _INTRADAY_MAX_AGE.get(interval)
    if max_age is not None and s < now - max_age:
        raise HistoryLimitError(
            f"Yahoo serves {interval} bars only for the last {max_age.days} days; "
            f"{s.date()} is {(now - s).days} days ago (use a coarser interval or Polygon /v2/aggs)"
        )
    step = _PER_REQUEST.get(interval)
    if step is None:
        return [Request(s, e)]
    out, cur = [], s
    while cur < e:
        nxt = min(e, cur + step)
        out.append(Request(cur, nxt))
        cur = nxt
    return out


def normalize(
    frame: pd.DataFrame, symbol: str, interval: str, now: dt.datetime | None = None
) -> pd.DataFrame:
    """A ``Ticker.history`` frame (index = bar start, exchange tz) → the store's bar shape."""
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    idx = pd.DatetimeIndex(frame.index)
    if idx.tz is None:  # daily frames from download() drop the zone: they are exchange midnights
        idx = idx.tz_localize("America/New_York")
    start = idx.tz_convert("UTC")
    if interval in _LENGTH:
        end = start + _LENGTH[interval]
    else:  # monthly/quarterly: calendar lengths in the exchange zone
        months = {"1mo": 1, "3mo": 3}[interval]
        end = (idx + pd.DateOffset(months=months)).tz_convert("UTC")
    out = pd.DataFrame(
        {
            "symbol": symbol,
            "ts": end,
            "ts_start": start,
            "open": frame["Open"].to_numpy(dtype="float64"),
            "high": frame["High"].to_numpy(dtype="float64"),
            "low": frame["Low"].to_numpy(dtype="float64"),
            "close": frame["Close"].to_numpy(dtype="float64"),
            "volume": frame["Volume"].to_numpy(dtype="float64"),
            "vwap": float("nan"),
            "trade_count": pd.array([pd.NA] * len(frame), dtype="Int64"),
            "source": "yfinance",
        }
    )
    now_ts = pd.Timestamp(_utc(now or dt.datetime.now(UTC)))
    out = out[out["ts"] <= now_ts]  # Yahoo's live, unfinished bar
    out = out.dropna(subset=["open", "high", "low", "close"])
    return out.drop_duplicates(subset=["symbol", "ts"], keep="last").reset_index(drop=True)


class YFinanceSource:
    """Bars for one or more symbols via ``yfinance.Ticker.history``."""

    def __init__(self, session: Any = None, timeout: float = 10.0, prepost: bool = False) -> None:
        self.session = session
        self.timeout = timeout
        self.prepost = prepost

    def bars(
        self,
        symbol: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        interval: str = "1m",
        now: dt.datetime | None = None,
    ) -> pd.DataFrame:
        import yfinance as yf

        ticker = yf.Ticker(symbol, session=self.session)
        parts = []
        for req in plan_requests(interval, start, end, now):
            try:
                frame = ticker.history(
                    start=req.start, end=req.end, interval=interval, prepost=self.prepost,
                    actions=False, auto_adjust=False, repair=False, timeout=self.timeout,
                )  # fmt: skip
            except Exception as err:  # yfinance raises its own tree (YFRateLimitError, ...)
                raise MarketDataError(
                    f"yfinance {symbol} {interval} {req.start}..{req.end}: {err}"
                ) from err
            parts.append(normalize(frame, symbol, interval, now))
        out = (
            pd.concat(parts, ignore_index=True)
            if parts
            else normalize(pd.DataFrame(), symbol, interval)
        )
        return out.drop_duplicates(subset=["symbol", "ts"], keep="last").reset_index(drop=True)

    def bars_many(
        self, symbols: Iterable[str], start: dt.datetime | dt.date, end: dt.datetime | dt.date,
        interval: str = "1m", now: dt.datetime | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        frames = [self.bars(s, start, end, interval, now) for s in symbols]
        return pd.concat(frames, ignore_index=True)
