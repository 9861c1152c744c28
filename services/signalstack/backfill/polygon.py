"""Polygon REST ``/v3/trades`` for one range → validated trade frames and DLQ records.

Every result goes through the ingest's validation (:func:`signalstack.schemas.trade.check_trade`,
the one contract of ``market.trades``); a result that fails it becomes a DLQ record with the
reason and the raw result, never a silently dropped or half-parsed row. HTTP statuses are
counted by :class:`StatusCounter`, the client's transport, so the summary can say how many
429s and 5xx the source answered (the client retries them with backoff and jitter).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import pandas as pd

from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.marketdata.wire import rest_trade_to_event
from signalstack.schemas.trade import InvalidTradeError, check_trade
from signalstack.store.base import TRADE_COLUMNS, DlqRecord

DLQ_SOURCE: Final = "backfill.polygon_rest"


class StatusCounter(httpx.AsyncBaseTransport):
    """An httpx transport that counts responses by status code (and transport errors as 0)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.statuses: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            resp = await self.inner.handle_async_request(request)
        except httpx.TransportError:
            self.statuses[0] += 1
            raise
        self.statuses[resp.status_code] += 1
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def throttled(self) -> int:
        return self.statuses[429]

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)


@dataclass(frozen=True, slots=True)
class TradePage:
    """One page of results: the valid trades as a store frame (and as ``market.trades``
    events, row for row), the rejects, the page's size."""

    trades: pd.DataFrame
    rejects: list[DlqRecord]
    results: int
    events: tuple[dict[str, Any], ...] = ()

    @property
    def max_ts_ns(self) -> int | None:
        return int(self.trades["ts_event"].max()) if len(self.trades) else None


def to_page(symbol: str, results: list[dict[str, Any]], ts_ingest: int) -> TradePage:
    """Convert and validate one page of ``/v3/trades`` results."""
    good: list[dict[str, Any]] = []
    rejects: list[DlqRecord] = []
    for r in results:
        ev = rest_trade_to_event(symbol, r, ts_ingest)
        try:
            check_trade(ev)
        except InvalidTradeError as err:
            rejects.append(
                DlqRecord(
                    source=DLQ_SOURCE,
                    reason=err.reason.value,
                    payload=orjson.dumps(r, default=str).decode(),
                    detail=err.detail,
                    key=symbol,
                )
            )
            continue
        good.append(ev)
    frame = pd.DataFrame.from_records(good, columns=["schema_version", *TRADE_COLUMNS])
    return TradePage(frame.drop(columns=["schema_version"]), rejects, len(results), tuple(good))


async def trade_pages(
    client: PolygonRestClient, symbol: str, gte_ns: int, lt_ns: int, limit: int
) -> AsyncIterator[TradePage]:
    """The trades of ``gte_ns <= sip_timestamp < lt_ns``, oldest first, a page at a time."""
    async for page in client.trades(symbol, gte_ns=gte_ns, lt_ns=lt_ns, limit=limit):
        yield to_page(symbol, list(page), time.time_ns())
