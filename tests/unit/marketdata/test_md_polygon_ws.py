"""WebSocket client ↔ fake Polygon server: the documented protocol, reconnects and failures."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
from websockets.asyncio.client import connect

from signalstack.marketdata.errors import PolygonAuthError
from signalstack.marketdata.fake_polygon import SimTape
from signalstack.marketdata.polygon_ws import Connected, PolygonWebSocketClient
from signalstack.marketdata.simulator import SimConfig, simulate


class Recorder:
    def __init__(self) -> None:
        self.reconnects = 0
        self.backoffs: list[tuple[float, bool]] = []
        self.states: list[bool] = []

    def on_reconnect(self) -> None:
        self.reconnects += 1

    def on_backoff(self, seconds: float, max_connections: bool) -> None:
        self.backoffs.append((seconds, max_connections))

    def on_connected(self, connected: bool) -> None:
        self.states.append(connected)


async def _drain(client, stop, until, timeout=20.0):
    """Run the client and consume its queue until ``until(items)``; return queue items."""
    items = []
    task = asyncio.create_task(client.run(stop))
    t0 = time.monotonic()
    try:
        while not until(items) and time.monotonic() - t0 < timeout:
            if task.done():
                task.result()
            with contextlib.suppress(TimeoutError):
                items.append(await asyncio.wait_for(client.queue.get(), 0.2))
    finally:
        stop.set()
        await task
    return items


def _trades(items):
    return [
        e
        for it in items
        if not isinstance(it, Connected)
        for e in orjson.loads(it)
        if e.get("ev") == "T"
    ]


def test_protocol_exchange_is_the_documented_one(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(start_on_subscribe=True, rate=None)

    async def main():
        async with connect(srv.ws_url) as ws:
            first = orjson.loads(await ws.recv())
            await ws.send(orjson.dumps({"action": "subscribe", "params": "T.AAPL"}).decode())
            before_auth = orjson.loads(await ws.recv())
            await ws.send(orjson.dumps({"action": "auth", "params": "test-key"}).decode())
            auth = orjson.loads(await ws.recv())
            await ws.send(orjson.dumps({"action": "subscribe", "params": "T.AAPL,T.MSFT"}).decode())
            sub = orjson.loads(await ws.recv())
            data = orjson.loads(await ws.recv())
            return first, before_auth, auth, sub, data

    first, before_auth, auth, sub, data = asyncio.run(main())
    assert first == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
    assert before_auth[0]["status"] == "error"
    assert auth == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
    assert [s["message"] for s in sub] == ["subscribed to: T.AAPL", "subscribed to: T.MSFT"]
    assert isinstance(data, list) and {e["ev"] for e in data} == {"T"}
    assert all(isinstance(e["t"], int) and e["t"] < 10**13 for e in data)  # milliseconds


def test_client_subscribes_and_queues_raw_frames_after_a_marker(
    fake_polygon_factory, small_market
) -> None:
    srv = fake_polygon_factory(rate=None)

    async def main():
        q: asyncio.Queue = asyncio.Queue(10_000)
        rec = Recorder()
        c = PolygonWebSocketClient(srv.ws_url, "test-key", ["T.AAPL", "T.MSFT"], q, observer=rec)
        items = await _drain(c, asyncio.Event(), lambda it: len(_trades(it)) >= len(small_market))
        return items, rec

    items, rec = asyncio.run(main())
    assert isinstance(items[0], Connected) and items[0].ok and items[0].subscribed.is_set()
    assert all(isinstance(i, bytes) for i in items[1:])  # unparsed frames
    assert len(_trades(items)) == len(small_market)
    assert rec.states[0] is True and rec.reconnects == 0


def test_only_subscribed_symbols_are_sent(fake_polygon_factory, small_market) -> None:
    srv = fake_polygon_factory(rate=None)
    n_aapl = int((small_market.sym == 0).sum())

    async def main():
        c = PolygonWebSocketClient(srv.ws_url, "test-key", ["T.AAPL"], asyncio.Queue(10_000))
        return await _drain(c, asyncio.Event(), lambda it: len(_trades(it)) >= n_aapl)

    trades = _trades(asyncio.run(main()))
    assert len(trades) == n_aapl and {t["sym"] for t in trades} == {"AAPL"}


def test_auth_failed_is_fatal_with_a_clear_message(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(refuse_auth=True)

    async def main():
        c = PolygonWebSocketClient(
            srv.ws_url, "test-key", ["T.AAPL"], asyncio.Queue(10), backoff_base=0.01
        )
        await c.run(asyncio.Event())

    with pytest.raises(PolygonAuthError, match=r"refused the API key.*POLYGON_API_KEY"):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert srv.logins == 1  # no retry loop against a refused key


def test_max_connections_backs_off_long_then_connects(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(reject_logins=2, rate=None)

    async def main():
        rec = Recorder()
        c = PolygonWebSocketClient(
            srv.ws_url, "test-key", ["T.AAPL"], asyncio.Queue(10_000), observer=rec,
            backoff_base=0.01, max_connections_backoff=(0.3, 0.4), seed=2,
        )  # fmt: skip
        items = await _drain(c, asyncio.Event(), lambda it: len(_trades(it)) > 0)
        return items, rec

    items, rec = asyncio.run(main())
    assert srv.max_connections_sent == 2
    assert [m for _, m in rec.backoffs] == [True, True]
    assert all(0.3 <= s <= 0.4 for s, _ in rec.backoffs)  # the long range, not 0.01 * 2**n
    assert _trades(items)


def test_second_connection_with_the_same_key_gets_max_connections(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(rate=1000)

    async def main():
        async with connect(srv.ws_url) as a, connect(srv.ws_url) as b:
            for ws in (a, b):
                await ws.recv()
            await a.send('{"action":"auth","params":"test-key"}')
            await a.recv()
            await b.send('{"action":"auth","params":"test-key"}')
            reply = orjson.loads(await b.recv())
            await b.wait_closed()
            return reply, b.close_code

    reply, code = asyncio.run(main())
    assert reply[0]["status"] == "max_connections" and code == 1008


def test_drops_reconnect_with_backoff_and_new_markers(fake_polygon_factory) -> None:
    # A tape long enough (6 s at 20k trades/s) that four drops fit in it however slow the machine
    # is; the drain stops as soon as the fifth connection has delivered trades.
    market = simulate(SimConfig(seed=5, symbols=("AAPL", "MSFT"), trades_per_day=60_000))
    srv = fake_polygon_factory(market, rate=20_000, batch=100, drop_every=5, max_drops=4)

    def fifth_connection_delivered(items) -> bool:
        marks = [k for k, it in enumerate(items) if isinstance(it, Connected)]
        return len(marks) >= 5 and any(not isinstance(it, Connected) for it in items[marks[4] :])

    async def main():
        rec = Recorder()
        c = PolygonWebSocketClient(
            srv.ws_url, "test-key", ["T.AAPL", "T.MSFT"], asyncio.Queue(10_000), observer=rec,
            backoff_base=0.1, backoff_cap=0.1, seed=5,
        )  # fmt: skip
        items = await _drain(
            c, asyncio.Event(), lambda it: fifth_connection_delivered(it) or srv.done.is_set(),
            timeout=20,
        )  # fmt: skip
        return items, rec

    items, rec = asyncio.run(main())
    markers = [i for i in items if isinstance(i, Connected)]
    assert srv.drops == 4
    assert [m.number for m in markers] == [1, 2, 3, 4, 5]
    assert rec.reconnects == 4 and all(not m for _, m in rec.backoffs)
    # seeded full jitter: every wait is ≥ 60 ms, a dozen 5 ms frames the tape plays to nobody
    assert all(0.06 <= s <= 0.1 for s, _ in rec.backoffs)
    # trades were really lost while away: gaps in the tape between the first and last received
    got = {(e["sym"], e["i"]) for e in _trades(items)}
    tape = SimTape(market)
    window = [(e["sym"], e["i"]) for e in tape.ws_events(0, len(tape))]
    pos = [k for k, ident in enumerate(window) if ident in got]
    missing = [ident for ident in window[pos[0] : pos[-1] + 1] if ident not in got]
    assert len(missing) >= 4 * 100  # at least a frame per reconnect


def test_bounded_queue_holds_the_reader_not_the_memory(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(rate=None, batch=50)

    async def main():
        q: asyncio.Queue = asyncio.Queue(5)
        c = PolygonWebSocketClient(srv.ws_url, "test-key", ["T.AAPL", "T.MSFT"], q)
        stop = asyncio.Event()
        task = asyncio.create_task(c.run(stop))
        await asyncio.sleep(1.0)
        full = q.qsize()
        frames = c.frames
        stop.set()
        while not q.empty():
            q.get_nowait()
        await asyncio.wait_for(task, 5)
        return full, frames

    full, frames = asyncio.run(main())
    assert full == 5 and frames <= 7  # the reader waits on the queue instead of buffering
