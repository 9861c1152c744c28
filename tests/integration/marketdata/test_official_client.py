"""The official Polygon (Massive) client, unchanged, against `signalstack fake-polygon`.

The server runs as a user would start it: the CLI in its own process, ``--port 0 --port-file``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from massive import RESTClient, WebSocketClient
from massive.websocket.models import EquityAgg, EquityTrade

from signalstack.marketdata.conditions import load_bundled_conditions
from signalstack.marketdata.simulator import SimConfig, simulate

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 11, 20)
SYMBOLS = ("AAPL", "MSFT")
PER_DAY = 4_000
KEY = "official-client-key"


@pytest.fixture(scope="module")
def fake_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port_file = tmp_path_factory.mktemp("fake-polygon") / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalstack.cli", "fake-polygon",
         "--symbols", ",".join(SYMBOLS), "--date", DAY.isoformat(), "--api-key", KEY,
         "--port", "0", "--port-file", str(port_file), "--trades-per-day", str(PER_DAY),
         "--rate", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        while not port_file.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"signalstack fake-polygon exited with {proc.returncode}: {out}")
            if time.monotonic() - t0 > 120:
                pytest.fail("signalstack fake-polygon did not write its port file in 120 s")
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def rest(fake_port: int) -> RESTClient:
    return RESTClient(api_key=KEY, base=f"http://127.0.0.1:{fake_port}")


@pytest.fixture(scope="module")
def expected_trades() -> dict[str, int]:
    m = simulate(SimConfig(seed=7, symbols=SYMBOLS, date=DAY, trades_per_day=PER_DAY))
    return {s: int(((m.sym == k) & ~m.is_duplicate).sum()) for k, s in enumerate(SYMBOLS)}


def test_official_client_pages_trades_by_date(rest: RESTClient, expected_trades) -> None:
    trades = list(rest.list_trades("AAPL", timestamp=DAY, order="asc", limit=1000))
    assert len(trades) == expected_trades["AAPL"] > 4_000  # five pages and more
    ts = [t.sip_timestamp for t in trades]
    assert ts == sorted(ts) and len({t.id for t in trades}) == len(trades)
    window = list(
        rest.list_trades(
            "MSFT", timestamp_gte=DAY, timestamp_lt=DAY + dt.timedelta(days=1), limit=50_000
        )
    )
    assert len(window) == expected_trades["MSFT"]
    assert list(rest.list_trades("AAPL", timestamp=DAY - dt.timedelta(days=1))) == []


def test_official_client_lists_conditions(rest: RESTClient) -> None:
    conds = list(rest.list_conditions(asset_class="stocks", data_type="trade", limit=10))
    assert {c.id for c in conds} == set(load_bundled_conditions().ids)
    assert all(c.update_rules is not None for c in conds)
    assert list(rest.list_conditions(asset_class="options")) == []


def test_official_client_lists_minute_aggregates_by_the_condition_rules(rest: RESTClient) -> None:
    bars = list(rest.list_aggs("AAPL", 1, "minute", DAY, DAY, limit=50_000))
    assert len(bars) > 350
    table = load_bundled_conditions()
    trades = list(rest.list_trades("AAPL", timestamp=DAY, order="asc", limit=50_000))
    by_minute: dict[int, list[tuple[float, list[int]]]] = {}
    for t in trades:
        by_minute.setdefault(t.sip_timestamp // 60_000_000_000 * 60_000, []).append(
            (t.price, t.conditions or [])
        )
    for b in bars:
        hl = [p for p, c in by_minute[b.timestamp] if table.updates_high_low(c)]
        assert (b.high, b.low) == (max(hl), min(hl))
        assert b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close)
    desc = list(rest.list_aggs("AAPL", 1, "minute", DAY, DAY, sort="desc", limit=50_000))
    assert [b.timestamp for b in desc] == [b.timestamp for b in bars][::-1]
    assert list(rest.list_aggs("ZZZZ", 1, "minute", DAY, DAY)) == []


def test_official_client_last_trade_quotes_and_previous_close(rest: RESTClient) -> None:
    last = rest.get_last_trade("AAPL")
    newest = next(iter(rest.list_trades("AAPL", timestamp=DAY, order="desc", limit=1)))
    assert (last.ticker, last.id, last.price) == ("AAPL", newest.id, newest.price)
    quotes = []
    for q in rest.list_quotes("AAPL", timestamp=DAY, order="asc", limit=100):
        quotes.append(q)
        if len(quotes) == 250:
            break
    assert len(quotes) == 250 and all(q.bid_price < q.ask_price for q in quotes)
    (prev,) = rest.get_previous_close_agg("AAPL")
    assert prev.ticker == "AAPL" and prev.low <= prev.close <= prev.high and prev.volume > 0


def test_official_websocket_client_receives_trades_and_minute_aggregates(
    fake_port: int, rest: RESTClient
) -> None:
    got: list[EquityTrade] = []
    aggs: list[EquityAgg] = []

    async def main() -> None:
        ws = WebSocketClient(
            api_key=KEY, feed=f"127.0.0.1:{fake_port}", secure=False,
            subscriptions=["T.AAPL", "AM.AAPL"], max_reconnects=0,
        )  # fmt: skip

        async def handle(msgs: list) -> None:
            got.extend(m for m in msgs if isinstance(m, EquityTrade))
            aggs.extend(m for m in msgs if isinstance(m, EquityAgg))
            if len(got) >= 1_000 and len(aggs) >= 5:
                await ws.close()

        await asyncio.wait_for(ws.connect(handle), 120)

    asyncio.run(main())
    assert len(got) >= 1_000 and {t.symbol for t in got} == {"AAPL"}
    served = {t.id for t in rest.list_trades("AAPL", timestamp=DAY, limit=50_000)}
    assert {t.id for t in got} <= served  # the WebSocket replays the day REST serves
    ms = np.array([t.timestamp for t in got])
    assert (dt.datetime.fromtimestamp(ms.min() / 1000, dt.UTC).date()) == DAY
    bars = {b.timestamp: b for b in rest.list_aggs("AAPL", 1, "minute", DAY, DAY, limit=50_000)}
    assert all(a.event_type == "AM" and a.symbol == "AAPL" for a in aggs)
    assert all(a.end_timestamp - a.start_timestamp == 60_000 for a in aggs)
    assert all(a.start_timestamp in bars for a in aggs)
    assert sum(a.close == bars[a.start_timestamp].close for a in aggs) >= 0.8 * len(aggs)


def test_the_fake_polygon_command_documents_itself() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "signalstack.cli", "fake-polygon", "--help"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    for opt in ("--symbols", "--date", "--api-key", "--port", "--port-file", "--loop"):
        assert opt in out
