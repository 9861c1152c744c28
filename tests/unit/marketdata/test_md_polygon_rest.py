"""Polygon REST client against the fake server: pagination, retries, auth, rate limit."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from signalstack.marketdata.conditions import load_bundled_conditions
from signalstack.marketdata.errors import PolygonAuthError, PolygonRestError
from signalstack.marketdata.polygon_rest import (
    PolygonRestClient,
    RateLimiter,
    load_conditions,
    retry_after_seconds,
)
from signalstack.marketdata.wire import rest_trade_to_event


def _published_ids(srv, sym):
    return [r for _, r in srv.published.get(sym)]


async def _collect(client, sym, **kw):
    out = []
    async for page in client.trades(sym, **kw):
        out.append(page)
    return out


@pytest.mark.parametrize("auth", ["header", "query"])
def test_trades_follow_next_url_with_the_key_re_added(fake_polygon_factory, auth) -> None:
    srv = fake_polygon_factory(start_on_subscribe=False, rate=None)
    _wait_done(srv)

    async def main():
        async with PolygonRestClient(srv.rest_url, "test-key", auth=auth, rate_per_s=1000) as c:
            pages = await _collect(c, "AAPL", gte_ns=0, limit=500, order="asc")
            return pages, c.requests

    pages, requests = asyncio.run(main())
    n = len(srv.published.get("AAPL"))
    assert n > 1000
    assert requests == -(-n // 500) and all(len(p) == 500 for p in pages[:-1])
    flat = [r for p in pages for r in p]
    assert len(flat) == n and len({r["id"] for r in flat}) == n
    ts = [r["sip_timestamp"] for r in flat]
    assert ts == sorted(ts)
    # and next_url alone, without the key, is refused: re-adding it is what made this work
    body = httpx.get(
        f"{srv.rest_url}/v3/trades/AAPL", params={"limit": 5, "apiKey": "test-key"}
    ).json()
    assert httpx.get(body["next_url"]).status_code == 401


def _wait_done(srv, timeout=20.0):
    t0 = time.time()
    while not srv.done.is_set() and time.time() - t0 < timeout:
        time.sleep(0.02)
    assert srv.done.is_set()


def test_trades_filters_and_default_descending_order(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(start_on_subscribe=False, rate=None)
    _wait_done(srv)
    keys = srv.published.get("MSFT")
    lo, hi = keys[100][0], keys[200][0]
    q = {"timestamp.gte": lo, "timestamp.lt": hi, "limit": 1000, "apiKey": "test-key"}
    body = httpx.get(f"{srv.rest_url}/v3/trades/MSFT", params=q).json()
    ts = [r["sip_timestamp"] for r in body["results"]]
    assert ts == sorted(ts, reverse=True)  # order defaults to desc
    assert min(ts) >= lo and max(ts) < hi
    assert len(ts) == sum(1 for t, _ in keys if lo <= t < hi)


def test_429_and_503_are_retried_honouring_retry_after(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(
        start_on_subscribe=False, rate=None, rest_429_every=2, rest_503_every=5, retry_after="0"
    )
    _wait_done(srv)

    async def main():
        async with PolygonRestClient(
            srv.rest_url, "test-key", rate_per_s=1000, backoff_base=5.0, seed=1
        ) as c:
            t0 = time.monotonic()
            pages = await _collect(c, "AAPL", gte_ns=0, limit=300, order="asc")
            return pages, c.retries, time.monotonic() - t0

    pages, retries, _ = asyncio.run(main())
    assert sum(len(p) for p in pages) == len(srv.published.get("AAPL"))
    assert retries == srv.rest_throttled > 0
    # Retry-After: 0 was honoured: with a 5 s backoff base the run would have taken much longer
    # (checked through the counts, not the clock: each retry is one throttled response).


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= retry_after_seconds(date, now=now) <= 31


def test_bad_key_is_an_auth_error_and_exhausted_retries_raise(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(
        start_on_subscribe=False, rate=None, rest_429_every=1, retry_after="0"
    )

    async def bad_key():
        async with PolygonRestClient(srv.rest_url, "wrong") as c:
            await _collect(c, "AAPL")

    with pytest.raises(PolygonAuthError, match="401"):
        asyncio.run(bad_key())

    async def throttled():
        async with PolygonRestClient(srv.rest_url, "test-key", max_retries=2) as c:
            await _collect(c, "AAPL")

    with pytest.raises(PolygonRestError, match="3 tries") as err:
        asyncio.run(throttled())
    assert err.value.status == 429


def test_conditions_load_from_rest_across_pages(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(start_on_subscribe=False, rate=None, rest_page_limit_cap=10)

    async def main():
        async with PolygonRestClient(srv.rest_url, "test-key", rate_per_s=1000) as c:
            before = c.requests
            t = await load_conditions(c)
            return t, c.requests - before

    table, requests = asyncio.run(main())
    assert table.source == "rest" and requests == 4  # 33 rows, the server pages by 10
    bundled = load_bundled_conditions()
    assert table.rules == bundled.rules


def test_conditions_fall_back_to_the_bundled_copy() -> None:
    async def main():
        async with PolygonRestClient("http://127.0.0.1:9", "k", max_retries=0) as c:
            return await load_conditions(c)

    assert asyncio.run(main()).source == "bundled"


def test_aggs_paginate(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False)  # a past day: its bars are on its own date

    async def main():
        async with PolygonRestClient(srv.rest_url, "test-key", rate_per_s=1000) as c:
            pages = []
            async for p in c.aggs("AAPL", 1, "minute", "2025-11-20", "2025-11-20", limit=100):
                pages.append(p)
            return pages, c.requests

    pages, req = asyncio.run(main())
    bars = [b for p in pages for b in p]
    assert req == len(pages) >= 4 and len(bars) >= 360  # minutes with a last-eligible print
    t = [b["t"] for b in bars]
    assert t == sorted(t) and len(set(t)) == len(t) and all(x % 60_000 == 0 for x in t)
    assert all(b["l"] <= min(b["o"], b["c"]) and b["h"] >= max(b["o"], b["c"]) for b in bars)


def test_rate_limiter_spaces_requests_by_the_plan_rate(monkeypatch) -> None:
    clock = [0.0]
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    lim = RateLimiter(rate=5 / 60, burst=5, clock=lambda: clock[0])  # Basic plan: 5 per minute

    async def main():
        for _ in range(12):
            await lim.acquire()

    asyncio.run(main())
    # 5 immediately, then one every 12 s
    assert clock[0] == pytest.approx(7 * 12.0, rel=1e-6)
    assert all(s == pytest.approx(12.0, rel=1e-6) for s in slept)


def _recorded(pages_by_cursor, seen):
    """A recorded Polygon (httpx transport): pages keyed by cursor, requests kept in ``seen``."""

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url)
        return httpx.Response(200, json=pages_by_cursor[req.url.params.get("cursor", "")])

    return httpx.MockTransport(handler)


def test_next_url_is_followed_on_the_configured_base_not_the_host_it_names() -> None:
    public = "https://api.polygon.io/v3/trades/AAPL?cursor="
    trade = {"id": "1", "price": 1.0, "size": 1, "sip_timestamp": 1, "exchange": 4}
    pages = {
        "": {"status": "OK", "results": [trade], "next_url": public + "p2"},
        "p2": {"status": "OK", "results": [trade], "next_url": public + "p3"},
        "p3": {"status": "OK", "results": [trade]},
    }
    seen: list[httpx.URL] = []

    async def main():
        async with PolygonRestClient(
            "http://recording.local:8080", "k", transport=_recorded(pages, seen), rate_per_s=1000
        ) as c:
            return await _collect(c, "AAPL")

    got = asyncio.run(main())
    assert [len(p) for p in got] == [1, 1, 1]
    assert {(u.scheme, u.host, u.port) for u in seen} == {("http", "recording.local", 8080)}
    assert [u.params.get("cursor") for u in seen] == [None, "p2", "p3"]
    assert all(u.path == "/v3/trades/AAPL" for u in seen)


def test_a_pages_status_is_surfaced_delayed_kept_error_raised() -> None:
    seen: list[httpx.URL] = []
    delayed = {"": {"status": "DELAYED", "request_id": "r1", "results": [{"id": "1"}]}}

    async def run(pages):
        async with PolygonRestClient(
            "http://recording.local", "k", transport=_recorded(pages, seen), rate_per_s=1000
        ) as c:
            return await _collect(c, "AAPL"), c.delayed_pages

    (page,), n_delayed = asyncio.run(run(delayed))
    assert page.status == "DELAYED" and page.request_id == "r1" and list(page) == [{"id": "1"}]
    assert n_delayed == 1
    error = {"": {"status": "ERROR", "request_id": "r2", "error": "Unknown ticker format"}}
    with pytest.raises(PolygonRestError, match="status ERROR: Unknown ticker format"):
        asyncio.run(run(error))


def test_last_trade_is_parsed_into_the_trades_shape(fake_polygon_factory) -> None:
    srv = fake_polygon_factory(restamp=False)

    async def main():
        async with PolygonRestClient(srv.rest_url, "test-key", rate_per_s=1000) as c:
            pages = c.trades("AAPL", gte_ns=0, order="desc", limit=1)
            newest = (await anext(pages))[0]  # the newest trade is all this needs
            await pages.aclose()
            return await c.last_trade("AAPL"), await c.last_trade("ZZZZ"), newest

    last, missing, newest = asyncio.run(main())
    assert missing is None
    assert last["sip_timestamp"] == newest["sip_timestamp"] and last["id"] == newest["id"]
    assert {k: last[k] for k in newest} == newest
    ev = rest_trade_to_event("AAPL", last, ts_ingest=1)
    assert ev["price"] == newest["price"] and ev["trade_id"] == newest["id"]
