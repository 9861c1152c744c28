"""Fake Polygon servers for the market-data unit tests (loopback, in-process thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer, SimTape
from signalstack.marketdata.simulator import SimConfig, SimulatedMarket, simulate


@pytest.fixture(scope="session")
def small_market() -> SimulatedMarket:
    return simulate(SimConfig(seed=5, symbols=("AAPL", "MSFT"), trades_per_day=3_000))


@pytest.fixture
def fake_polygon_factory(
    small_market: SimulatedMarket,
) -> Iterator[Callable[..., FakePolygonServer]]:
    started: list[FakePolygonServer] = []

    def make(market: SimulatedMarket | None = None, **knobs: object) -> FakePolygonServer:
        srv = FakePolygonServer(SimTape(market or small_market), FakeConfig(**knobs)).start()  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield make
    for s in started:
        s.stop()
