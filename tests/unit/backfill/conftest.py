"""Backfill fixtures: a simulated day served by the fake Polygon server (history mode)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import pytest

from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer, SimTape
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.marketdata.simulator import SimConfig, SimulatedMarket, simulate

DAY = dt.date(2024, 3, 12)  # a Tuesday, regular hours 13:30-20:00 UTC (EDT)
SYMBOLS = ("AAPL", "MSFT")
KEY = "backfill-key"


@pytest.fixture(scope="session")
def history_market() -> SimulatedMarket:
    return simulate(SimConfig(seed=9, symbols=SYMBOLS, date=DAY, trades_per_day=3_000))


@pytest.fixture
def fake_history(
    history_market: SimulatedMarket,
) -> Iterator[Callable[..., FakePolygonServer]]:
    started: list[FakePolygonServer] = []

    def make(market: SimulatedMarket | None = None, **knobs: object) -> FakePolygonServer:
        cfg = FakeConfig(api_keys=frozenset({KEY}), restamp=False, **knobs)  # type: ignore[arg-type]
        srv = FakePolygonServer(SimTape(market or history_market), cfg).start()
        started.append(srv)
        return srv

    yield make
    for s in started:
        s.stop()


def client_factory(
    srv: FakePolygonServer, **kw: object
) -> Callable[[httpx.AsyncBaseTransport], PolygonRestClient]:
    def make(transport: httpx.AsyncBaseTransport) -> PolygonRestClient:
        return PolygonRestClient(
            srv.rest_url, KEY, rate_per_s=10_000, backoff_base=0.001, backoff_cap=0.01,
            seed=1, transport=transport, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    return make
