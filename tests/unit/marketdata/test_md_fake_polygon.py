"""The fake Polygon server's REST and WebSocket behaviour (what the official client relies on)."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import orjson
import pandas as pd
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from signalstack.marketdata.conditions import load_bundled_conditions
from signalstack.marketdata.simulator import SimConfig, simulate

DAY = "2025-11-20"
KEY = {"apiKey": "test-key"}


def _get(srv, path, **params):
    return httpx.get(f"{srv.rest_url}{path}", params={**KEY, **params}, timeout=30)


def _with_key(url: str) -> httpx.URL:
    return httpx.URL(url).copy_merge_params(KEY)  # next_url carries a cursor but no key


def _all_trades(srv, sym, **params):
    """Every trade of ``sym`` over REST, following next_url."""
    out: list[dict] = []
    body = _get(srv, f"/v3/trades/{sym}", limit=50_000, order="asc", **params).json()
    out += body["results"]
    while "next_url" in body:
        body = httpx.get(_with_key(body["next_url"]), timeout=30).json()
        out += body["results"]
    return out


def _wait(pred, timeout=60.0, what="condition"):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _ny_date(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").tz_convert("America/New_York").strftime("%Y-%m-%d")


# ----------------------------------------------------------------------------- REST: history
def test_a_past_day_is_on_rest_from_the_start_without_any_websocket_client(
    fake_polygon_factory, small_market
) -> None:
    srv = fake_polygon_factory(restamp=False)  # start_on_subscribe: nobody ever subscribes
    got = _all_trades(srv, "AAPL")
    k = small_market.symbols.index("AAPL")
    expected = int(((small_market.sym == k) & ~small_market.is_duplicate).sum())
    assert len(got) == expected > 1000
    assert srv.position == 0  # and the WebSocket replay has not started


def test_timestamp_takes_a_date_and_a_bad_value_is_a_clear_400(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False)
    day = _all_trades(srv, "AAPL", timestamp=DAY)
    assert len(day) == len(_all_trades(srv, "AAPL")) > 0
    assert {_ny_date(r["sip_timestamp"]) for r in day} == {DAY}
    assert _all_trades(srv, "AAPL", **{"timestamp.gte": "2025-11-21"}) == []
    assert _all_trades(srv, "AAPL", **{"timestamp.lt": DAY}) == []
    assert len(_all_trades(srv, "AAPL", **{"timestamp.lte": DAY, "timestamp.gt": "2025-11-19"}))
    assert len(day) == len(_all_trades(srv, "AAPL", **{"timestamp.gte": DAY}))
    for bad in ("yesterday", "2025-13-01", "1.5"):
        r = _get(srv, "/v3/trades/AAPL", **{"timestamp.gte": bad})
        assert r.status_code == 400
        body = r.json()
        assert body["status"] == "ERROR"
        assert body["error"].startswith("timestamp.gte: expected a date YYYY-MM-DD or nano")
        assert bad in body["error"] and "invalid literal" not in body["error"]
    r = _get(srv, "/v3/trades/AAPL", limit="many")
    assert r.status_code == 400 and r.json()["error"] == "limit: expected an integer, got 'many'"


def _expected_minute_bars(
    trades: list[dict],
) -> dict[int, tuple[float, float, float, float, float]]:
    """Minute bars from ``/v3/trades`` results by the condition table (independent of the
    features library): t (ms) → (o, h, l, c, v)."""
    table = load_bundled_conditions()
    rows = sorted(trades, key=lambda r: (r["sip_timestamp"], r["sequence_number"]))
    out: dict[int, list] = {}
    for r in rows:
        c = r.get("conditions") or []
        t = r["sip_timestamp"] // 60_000_000_000 * 60_000
        b = out.setdefault(t, [None, -np.inf, np.inf, None, 0.0])
        if table.updates_open_close(c):
            b[0] = r["price"] if b[0] is None else b[0]
            b[3] = r["price"]
        if table.updates_high_low(c) or table.updates_open_close(c):
            b[1], b[2] = max(b[1], r["price"]), min(b[2], r["price"])
        if table.updates_volume(c):
            b[4] += r["size"]
    return {t: tuple(b) for t, b in out.items() if b[0] is not None}


def test_minute_bars_follow_the_consolidated_condition_rules(fake_polygon_factory) -> None:
    market = simulate(SimConfig(seed=11, symbols=("AAPL",), trades_per_day=20_000))
    srv = fake_polygon_factory(market, restamp=False)
    expected = _expected_minute_bars(_all_trades(srv, "AAPL"))
    body = _get(srv, f"/v2/aggs/ticker/AAPL/range/1/minute/{DAY}/{DAY}", limit=50_000).json()
    got = {b["t"]: (b["o"], b["h"], b["l"], b["c"], b["v"]) for b in body["results"]}
    assert len(got) == body["resultsCount"] >= 380
    assert got.keys() == expected.keys()
    wrong = [t for t in got if not np.allclose(got[t], expected[t])]
    assert wrong == [], f"{len(wrong)} of {len(got)} bars differ from the condition rules"


def test_aggregates_are_on_the_day_of_the_trades_served_in_live_mode(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(start_on_subscribe=False, rate=None)  # live: restamped to today
    _wait(srv.done.is_set, what="the tape to be published")
    trades = _all_trades(srv, "AAPL")
    today = _ny_date(trades[-1]["sip_timestamp"])
    body = _get(srv, f"/v2/aggs/ticker/AAPL/range/1/minute/{today}/{today}", limit=50_000).json()
    assert body["resultsCount"] > 0
    first, last = trades[0]["sip_timestamp"] // 10**6, trades[-1]["sip_timestamp"] // 10**6
    assert all(first - 60_000 < b["t"] <= last for b in body["results"])
    assert sum(b["n"] for b in body["results"]) > 0.9 * len(trades)
    # and none on the simulator's own date, which the served trades are not on
    if today != DAY:
        empty = _get(srv, f"/v2/aggs/ticker/AAPL/range/1/minute/{DAY}/{DAY}").json()
        assert empty["resultsCount"] == 0


def test_aggregates_sort_desc_unknown_ticker_and_bad_parameters(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False)
    path = f"/v2/aggs/ticker/AAPL/range/5/minute/{DAY}/{DAY}"
    asc = _get(srv, path).json()["results"]
    desc = []
    body = _get(srv, path, sort="desc", limit=20).json()
    desc += body["results"]
    while "next_url" in body:
        body = httpx.get(_with_key(body["next_url"])).json()
        desc += body["results"]
    assert [b["t"] for b in desc] == [b["t"] for b in asc][::-1] and len(asc) == 78
    r = _get(srv, f"/v2/aggs/ticker/ZZZZ/range/1/minute/{DAY}/{DAY}")
    assert r.status_code == 200
    assert r.json()["status"] == "OK" and r.json()["resultsCount"] == 0
    assert "results" not in r.json()
    for bad, msg in [
        ("/v2/aggs/ticker/AAPL/range/1/minute/someday/2025-11-20", "from: expected a date"),
        ("/v2/aggs/ticker/AAPL/range/1/fortnight/2025-11-20/2025-11-20", "timespan:"),
        ("/v2/aggs/ticker/AAPL/range/x/minute/2025-11-20/2025-11-20", "multiplier:"),
    ]:
        r = _get(srv, bad)
        assert r.status_code == 400 and r.json()["error"].startswith(msg), r.text
    day = _get(srv, f"/v2/aggs/ticker/AAPL/range/1/day/{DAY}/{DAY}").json()["results"]
    assert len(day) == 1 and _ny_date(day[0]["t"] * 10**6) == DAY
    assert pd.Timestamp(day[0]["t"], unit="ms", tz="UTC").tz_convert("America/New_York").hour == 0


def test_conditions_honour_asset_class_and_data_type(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False)

    def count(**q):
        return _get(srv, "/v3/reference/conditions", limit=1000, **q).json()["count"]

    assert count() == count(asset_class="stocks", data_type="trade") == 33
    assert count(asset_class="options") == 0
    assert count(data_type="quote") == 0
    assert count(asset_class="crypto", data_type="trade") == 0


def test_last_trade_quotes_and_previous_close_from_the_tape(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False)
    trades = _all_trades(srv, "MSFT")
    last = _get(srv, "/v2/last/trade/MSFT").json()
    assert last["status"] == "OK"
    lt = last["results"]
    assert lt["T"] == "MSFT" and lt["t"] == trades[-1]["sip_timestamp"]
    assert lt["i"] == trades[-1]["id"] and lt["p"] == trades[-1]["price"]
    nf = _get(srv, "/v2/last/trade/ZZZZ")
    assert nf.status_code == 404 and nf.json()["status"] == "NOT_FOUND"

    body = _get(srv, "/v3/quotes/MSFT", timestamp=DAY, order="asc", limit=500).json()
    quotes = body["results"]
    assert len(quotes) == 500 and "next_url" in body
    by_ts = {t["sip_timestamp"]: t for t in trades}
    for qt in quotes:
        trade = by_ts[qt["sip_timestamp"] + 1_000]  # each quote stands just before a trade
        p = trade["price"]
        assert qt["tape"] == trade["tape"]
        assert qt["bid_price"] < p < qt["ask_price"] and qt["ask_price"] - qt["bid_price"] < 0.1
        # sizes in shares by the round-lot tiers: 40-share lots between $250 and $1,000
        assert qt["bid_size"] % 40 == 0 and qt["ask_size"] % 40 == 0 and qt["ask_size"] > 0
    again = _get(srv, "/v3/quotes/MSFT", timestamp=DAY, order="asc", limit=500).json()
    assert again["results"] == quotes  # seeded

    prev = _get(srv, "/v2/aggs/ticker/MSFT/prev").json()
    (bar,) = prev["results"]
    day = _get(srv, f"/v2/aggs/ticker/MSFT/range/1/day/{DAY}/{DAY}").json()["results"][0]
    assert prev["resultsCount"] == 1 and bar["T"] == "MSFT"
    assert {k: bar[k] for k in "ohlcvt"} == {k: day[k] for k in "ohlcvt"}


# ----------------------------------------------------------------------------- WebSocket
async def _login(url: str, **kw):
    # No client-side flow control by default: a test client that stops reading and then closes
    # must still read the server's close frame (a paused reader would wait out close_timeout).
    ws = await connect(url, **{"max_queue": None, **kw})
    assert orjson.loads(await ws.recv())[0]["status"] == "connected"
    await ws.send(orjson.dumps({"action": "auth", "params": "test-key"}).decode())
    assert orjson.loads(await ws.recv())[0]["status"] == "auth_success"
    return ws


def test_channels_the_fake_does_not_serve_are_refused(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(rate=None)

    async def main():
        async with await _login(srv.ws_url) as ws:
            await ws.send(orjson.dumps({"action": "subscribe", "params": "Q.AAPL,A.*,T.AAPL"}))
            return orjson.loads(await ws.recv())

    st = asyncio.run(main())
    assert [s["status"] for s in st] == ["error", "error", "success"]
    assert st[2]["message"] == "subscribed to: T.AAPL"
    refused = st[:2]
    assert "Q.AAPL" in refused[0]["message"] and "A.*" in refused[1]["message"]
    assert all("not served" in s["message"] for s in refused)


def test_minute_aggregates_stream_as_am_events_built_from_the_bars(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False, rate=None)

    async def main():
        async with await _login(srv.ws_url) as ws:
            await ws.send(orjson.dumps({"action": "subscribe", "params": "AM.AAPL"}).decode())
            assert orjson.loads(await ws.recv())[0]["message"] == "subscribed to: AM.AAPL"
            events = []
            while not any(e.get("status") == "tape_ended" for e in events):
                events += orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            return events

    events = asyncio.run(main())
    assert {e["ev"] for e in events} == {"AM", "status"}  # no trades without a T topic
    am = [e for e in events if e["ev"] == "AM"]
    body = _get(srv, f"/v2/aggs/ticker/AAPL/range/1/minute/{DAY}/{DAY}", limit=50_000).json()
    rest = {b["t"]: (b["o"], b["h"], b["l"], b["c"], b["v"]) for b in body["results"]}
    starts = [e["s"] for e in am]
    assert starts == sorted(set(starts)) and set(starts) <= rest.keys()
    assert starts[0] == min(rest)  # from the first minute of the session
    assert len(am) >= 0.95 * len(rest) and all(e["e"] - e["s"] == 60_000 for e in am)
    # the same bars as REST, but for the few minutes a late print reached after they were sent
    same = [e for e in am if np.allclose((e["o"], e["h"], e["l"], e["c"], e["v"]), rest[e["s"]])]
    assert len(same) >= 0.9 * len(am)
    assert am[-1]["av"] == sum(e["v"] for e in am) and all(e["sym"] == "AAPL" for e in am)


def test_a_reader_that_stops_is_cut_off_as_a_slow_consumer_and_nobody_waits(
    fake_polygon_factory,
) -> None:
    market = simulate(SimConfig(seed=3, symbols=("AAPL", "MSFT"), trades_per_day=100_000))
    srv = fake_polygon_factory(
        market, rate=None, max_connections=2, slow_consumer_bytes=512 * 1024, pace_bytes=65536
    )
    n = len(market)

    async def statuses_until_closed(ws):
        out = []
        try:
            while True:
                out += [
                    e
                    for e in orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                    if e["ev"] == "status"
                ]
        except ConnectionClosed:
            return out

    async def main():
        b = await _login(srv.ws_url)  # B reads everything, as fast as it can
        await b.send(orjson.dumps({"action": "subscribe", "params": "T.*"}).decode())
        # A reads nothing: once its socket buffers are full, its backlog grows on the server.
        a = await _login(srv.ws_url, max_queue=1)
        await a.send(orjson.dumps({"action": "subscribe", "params": "T.*"}).decode())
        got, rest_ok = 0, 0
        while got < n:
            frame = orjson.loads(await asyncio.wait_for(b.recv(), 60))
            got += sum(1 for e in frame if e.get("ev") == "T")
            if srv.slow_consumers and not rest_ok:  # REST answers while A is being cut off
                async with httpx.AsyncClient() as h:
                    r = await h.get(f"{srv.rest_url}/v3/trades/AAPL", params={**KEY, "limit": 5})
                rest_ok = r.status_code
        # A now reads: its backlog, then the slow_consumer status, then the close.
        statuses = await statuses_until_closed(a)
        await b.close()
        return got, rest_ok, statuses, a.close_code

    got, rest_ok, statuses, code = asyncio.run(main())
    assert got == n  # B received the whole tape
    assert srv.slow_consumers == 1 and rest_ok == 200
    assert statuses[-1]["status"] == "slow_consumer" and "fast enough" in statuses[-1]["message"]
    assert code == 1013


def test_tape_end_is_announced_and_later_subscribers_are_told(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(rate=None, start_on_subscribe=False, max_connections=2)
    _wait(srv.done.is_set, what="the tape to end")

    async def late():
        async with await _login(srv.ws_url) as ws:
            await ws.send(orjson.dumps({"action": "subscribe", "params": "T.AAPL"}).decode())
            return orjson.loads(await asyncio.wait_for(ws.recv(), 10))

    st = asyncio.run(late())
    assert [s["status"] for s in st] == ["success", "tape_ended"]
    assert "ended after" in st[1]["message"]


def test_tape_loops_when_asked(fake_polygon_factory) -> None:
    market = simulate(SimConfig(seed=5, symbols=("AAPL",), trades_per_day=300))
    srv = fake_polygon_factory(market, rate=50_000, on_end="loop", restamp=True)
    n = len(market)

    async def main():
        async with await _login(srv.ws_url) as ws:
            await ws.send(orjson.dumps({"action": "subscribe", "params": "T.AAPL"}).decode())
            trades, statuses = [], []
            while len(trades) < 2 * n + 5:
                for e in orjson.loads(await asyncio.wait_for(ws.recv(), 30)):
                    (trades if e["ev"] == "T" else statuses).append(e)
            return trades, statuses

    trades, statuses = asyncio.run(main())
    assert any(s["status"] == "tape_restarted" for s in statuses)
    ids = [t["i"] for t in trades]
    assert len(set(ids[: 2 * n])) == 2 * n  # a live replay is new trades: new ids
    assert ids[n].endswith("-1") and ids[0] + "-1" == ids[n]
    unique = n - int(market.is_duplicate.sum())
    _wait(lambda: srv.published.count >= 2 * unique, what="two passes on REST")
    assert len({r["id"] for r in _all_trades(srv, "AAPL")}) >= 2 * unique


def test_a_looping_live_replay_keeps_recent_passes_on_rest_not_all() -> None:
    from signalstack.marketdata.fake_rest import Published

    pub = Published(("AAPL", "MSFT"))
    sym = np.array([0, 1, 0, 1], dtype=np.int32)
    pub.add(sym, np.array([10, 20, 30, 40]), np.arange(4))
    pub.add(sym[:2], np.array([5, 50]), np.array([4, 5]))
    assert pub.get("AAPL") == [(5, 4), (10, 0), (30, 2)] and pub.count == 6
    pub.drop_before(25)
    assert pub.get("AAPL") == [(30, 2)] and pub.get("MSFT") == [(40, 3), (50, 5)]
    assert pub.count == 3
