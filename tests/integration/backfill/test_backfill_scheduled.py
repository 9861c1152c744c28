"""`signalstack backfill --scheduled` on the real TimescaleDB: two passes never both load."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pandas as pd
import pytest

from signalstack.backfill.scheduled import LOCK_NAME, closed_sessions
from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer, SimTape
from signalstack.marketdata.simulator import SimConfig, simulate
from signalstack.store.timescale import TimescaleStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
SYMBOLS = ("AAPL", "MSFT")
KEY = "scheduled-key"


@pytest.fixture
def fake() -> Iterator[FakePolygonServer]:
    # the pass heals the last closed session of the wall clock: the fake serves that day
    day = closed_sessions(pd.Timestamp.now(tz="UTC"), 1)[0]
    market = simulate(SimConfig(seed=17, symbols=SYMBOLS, date=day, trades_per_day=2_000))
    cfg = FakeConfig(api_keys=frozenset({KEY}), restamp=False)
    srv = FakePolygonServer(SimTape(market), cfg).start()
    yield srv
    srv.stop()


def scheduled_env(srv: FakePolygonServer, dsn: str) -> dict[str, str]:
    u = urlsplit(dsn)
    return {
        **os.environ, "STORE_TYPE": "timescale", "TIMESCALE_HOST": u.hostname or "",
        "TIMESCALE_PORT": str(u.port), "TIMESCALE_USER": u.username or "",
        "TIMESCALE_PASSWORD": u.password or "", "TIMESCALE_DATABASE": u.path.lstrip("/"),
        "POLYGON_REST_URL": srv.rest_url, "POLYGON_API_KEY": KEY,
        "POLYGON_REST_RATE_PER_S": "10", "BACKFILL_PAGE_LIMIT": "200",
        "BACKFILL_LOOKBACK_SESSIONS": "1", "MARKET_SYMBOLS": ",".join(SYMBOLS),
        "LOG_FORMAT": "json",
    }  # fmt: skip


def start_pass(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "signalstack.cli", "backfill", "--scheduled"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    summary: dict[str, object] = orjson.loads(out.strip().splitlines()[-1])
    return summary


def test_a_pass_skips_while_another_holds_the_lock_and_two_never_both_load(
    fake: FakePolygonServer, timescale_db
) -> None:
    env = scheduled_env(fake, timescale_db.dsn)
    store = TimescaleStore(timescale_db.dsn)
    try:
        store.migrate()
        with store.try_lock(LOCK_NAME) as held:
            assert held
            skipped = finish(start_pass(env))
            assert skipped["status"] == "skipped" and skipped["api_calls"] == 0
        assert store.count("trades") == 0 and fake.rest_requests == 0

        # two passes at once: one heals, the other skips or (started after) finds nothing
        a, b = start_pass(env), start_pass(env)
        results = [finish(a), finish(b)]
        loaders = [r for r in results if int(r["ranges"]) > 0]  # type: ignore[call-overload]
        assert len(loaders) == 1 and loaders[0]["status"] == "ok"
        assert store.count("trades") == loaders[0]["trades_stored"]
        assert {r["status"] for r in results} <= {"ok", "skipped"}
        third = finish(start_pass(env))
        assert third["status"] == "ok" and third["ranges"] == 0
    finally:
        store.close()
