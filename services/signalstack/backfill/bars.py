"""Vendor minute bars for one range → checked ``ohlcv_1m`` rows marked with their source.

Two sources, one shape (``BAR_COLUMNS`` + ``source``, ``ts`` = the bar's END):

- ``polygon-aggs``: Polygon REST ``/v2/aggs/ticker/{T}/range/1/minute/{from}/{to}`` (``t`` is
  the window's start in ms, ``n`` the trade count, ``vw`` the VWAP), a page at a time through
  the same client as the trades (rate limit, 429/5xx retried with backoff and jitter);
- ``yfinance``: Yahoo's 1m bars through the real yfinance API
  (:class:`~signalstack.marketdata.yfinance_source.YFinanceSource`; no VWAP, no trade count),
  rate limited and retried here (yfinance raises its rate-limit error instead of waiting).

Bars never become trades. Each bar is checked (finite prices > 0, low <= open, close <= high,
volume >= 0, trade count >= 0 when given, on a minute); a bar that fails goes to the DLQ with
the reason, never silently dropped. Only bars whose minute lies in the range are kept (Polygon's
minute bars include extended hours; the range is within the configured session).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd

from signalstack.marketdata.errors import HistoryLimitError, MarketDataError
from signalstack.marketdata.polygon_rest import PolygonRestClient, RateLimiter, backoff_delay
from signalstack.marketdata.yfinance_source import YFinanceSource
from signalstack.store.base import BAR_COLUMNS, DlqRecord

MINUTE: Final = pd.Timedelta(minutes=1)
# --source value → ohlcv_1m.source
BAR_SOURCES: Final = {"polygon-aggs": "polygon_aggs", "yfinance": "yfinance"}
COLUMNS: Final = (*BAR_COLUMNS, "source")


@dataclass(frozen=True, slots=True)
class BarPage:
    """One page (or request) of bars: the valid ones in the range, the rejects, the results."""

    bars: pd.DataFrame
    rejects: list[DlqRecord]
    results: int

    @property
    def max_end_ns(self) -> int | None:
        return int(pd.DatetimeIndex(self.bars["ts"]).asi8.max()) if len(self.bars) else None


def empty_bars() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})


def _reason(df: pd.DataFrame) -> pd.Series:
    """Why each bar is refused ('' when it is valid)."""
    px = df[["open", "high", "low", "close"]].to_numpy(dtype="float64")
    vol = df["volume"].to_numpy(dtype="float64")
    n = df["trade_count"].astype("Float64")
    start = pd.DatetimeIndex(df["ts"]) - MINUTE
    out = np.full(len(df), "", dtype=object)
    checks: list[tuple[Any, str]] = [
        (start != start.floor("1min"), "bar_not_on_minute"),
        ((n < 0).fillna(False).to_numpy(dtype=bool), "bad_trade_count"),
        (~np.isfinite(vol) | (vol < 0), "bad_volume"),
        (
            (px[:, 2] > np.minimum(px[:, 0], px[:, 3]))
            | (px[:, 1] < np.maximum(px[:, 0], px[:, 3])),
            "bar_high_low_inconsistent",
        ),
        (~np.isfinite(px).all(axis=1) | (px <= 0).any(axis=1), "bad_price"),
    ]
    for bad, reason in checks:  # the last check that fails names the reason
        out[np.asarray(bad, dtype=bool)] = reason
    return pd.Series(out, index=df.index)


def checked(
    symbol: str,
    frame: pd.DataFrame,
    raw: list[dict[str, Any]],
    source: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> BarPage:
    """Split ``frame`` (one row per ``raw`` result) into valid bars of ``[start, end)`` and DLQ
    records (source ``backfill.<source>``, the raw result as payload)."""
    if frame.empty:
        return BarPage(empty_bars(), [], len(raw))
    frame = frame.reset_index(drop=True)
    why = _reason(frame)
    rejects = [
        DlqRecord(
            source=f"backfill.{source}", reason=str(why[i]),
            payload=orjson.dumps(raw[i], default=str).decode(),
            detail=f"{symbol} bar ending {frame['ts'].iloc[i]}", key=symbol,
        )
        for i in np.flatnonzero(why.to_numpy() != "")
    ]  # fmt: skip
    ts = pd.DatetimeIndex(frame["ts"])
    keep = (why.to_numpy() == "") & (ts - MINUTE >= start) & (ts <= end)
    return BarPage(frame[keep].reset_index(drop=True), rejects, len(raw))


def polygon_frame(symbol: str, results: list[dict[str, Any]]) -> pd.DataFrame:
    """``/v2/aggs`` minute results → bars stamped with their end (``t`` + 1 minute)."""
    if not results:
        return empty_bars()

    def num(key: str) -> Any:
        return np.array(
            [float(r[key]) if isinstance(r.get(key), int | float) else np.nan for r in results]
        )

    t = [r.get("t") if isinstance(r.get("t"), int) else None for r in results]
    start = pd.to_datetime(pd.Series(t, dtype="Int64"), unit="ms", utc=True)
    counts = [r.get("n") if isinstance(r.get("n"), int) else None for r in results]
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": start + MINUTE,
            "open": num("o"), "high": num("h"), "low": num("l"), "close": num("c"),
            "volume": num("v"), "vwap": num("vw"),
            "trade_count": pd.array(counts, dtype="Int64"),
            "source": BAR_SOURCES["polygon-aggs"],
        }
    )  # fmt: skip


async def polygon_bar_pages(
    client: PolygonRestClient, symbol: str, start: pd.Timestamp, end: pd.Timestamp, limit: int
) -> AsyncIterator[BarPage]:
    """The minute bars of ``[start, end)`` (bar starts from ``start`` to ``end - 1 minute``)."""
    from_ms = start.value // 1_000_000
    to_ms = end.value // 1_000_000 - 1  # ``to`` is inclusive of the window starting there
    # adjusted=false: prices as traded, like the engine's bars from trades in the same table
    # (Polygon's default split-adjusts history, which would put a step at every split)
    pages = client.aggs(symbol, 1, "minute", from_ms, to_ms, adjusted=False, limit=limit)
    async for page in pages:
        raw = list(page)
        bad = [r for r in raw if not isinstance(r.get("t"), int)]
        good = [r for r in raw if isinstance(r.get("t"), int)]
        out = checked(symbol, polygon_frame(symbol, good), good, "polygon_aggs", start, end)
        out.rejects.extend(
            DlqRecord(
                source="backfill.polygon_aggs", reason="bar_without_time",
                payload=orjson.dumps(r, default=str).decode(), detail=symbol, key=symbol,
            )
            for r in bad
        )  # fmt: skip
        yield BarPage(out.bars, out.rejects, len(raw))


class YFinanceBars:
    """Yahoo 1m bars for a range: one yfinance call (split by yfinance's 7-day rule inside
    :class:`YFinanceSource`), rate limited, rate-limit and network errors retried with
    full-jitter backoff. ``requests``/``retries`` count like the Polygon client's."""

    def __init__(
        self,
        source: YFinanceSource,
        *,
        rate_per_s: float = 0.5,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], Any] = asyncio.sleep,
        seed: int | None = None,
    ) -> None:
        self.source = source
        self.limiter = RateLimiter(rate_per_s)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not crypto
        self.requests = 0
        self.retries = 0
        self.throttled = 0

    async def page(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp
    ) -> BarPage:
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire()
            self.requests += 1
            try:
                frame = await asyncio.to_thread(
                    self.source.bars, symbol, start.to_pydatetime(), end.to_pydatetime(), "1m",
                    now.to_pydatetime(),
                )  # fmt: skip
                break
            except HistoryLimitError:
                raise  # Yahoo refuses this range for good: retrying cannot help
            except MarketDataError as err:
                if "rate" in str(err).lower():
                    self.throttled += 1
                if attempt == self.max_retries:
                    raise
                self.retries += 1
                await self.sleep(
                    backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng)
                )
        bars = frame.loc[:, list(COLUMNS)] if len(frame) else empty_bars()
        raw: list[dict[str, Any]] = [
            {str(k): (None if pd.isna(v) else str(v) if k == "ts" else v) for k, v in row.items()}
            for row in frame.loc[:, ["ts", "open", "high", "low", "close", "volume"]].to_dict(
                "records"
            )
        ]
        return checked(symbol, bars, raw, "yfinance", start, end)
