"""Ingest against the real Kafka broker (session fixture ``kafka``) and the fake Polygon server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer, SimTape
from signalstack.marketdata.simulator import SimulatedMarket


@pytest.fixture
def fake_polygon() -> Iterator[Callable[..., FakePolygonServer]]:
    started: list[FakePolygonServer] = []

    def make(market: SimulatedMarket, **knobs: Any) -> FakePolygonServer:
        srv = FakePolygonServer(SimTape(market), FakeConfig(**knobs)).start()
        started.append(srv)
        return srv

    yield make
    for s in started:
        s.stop()
