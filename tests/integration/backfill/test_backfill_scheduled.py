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


# the pass's "now" is passed to it (--as-of), never read from the wall clock twice
NOW = pd.Timestamp("2024-03-13T12:00:00Z")
DAY = closed_sessions(NOW, 1)[0]


@pytest.fixture
def fake() -> Iterator[FakePolygonServer]:
    market = simulate(SimConfig(seed=17, symbols=SYMBOLS, date=DAY, trades_per_day=2_000))
    cfg = FakeConfig(api_keys=frozenset({KEY}), restamp=False, rest_hold_trades=1)
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
        [sys.executable, "-m", "signalstack.cli", "backfill", "--scheduled", "--as-of", str(NOW)],
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

        # two passes at once: A is held at its first REST request, under the lock, while B runs
        a = start_pass(env)
        try:
            assert fake.rest_held.wait(240), "pass A never reached its first REST request"
            b = finish(start_pass(env))
            # and A's run cannot be resumed while A executes it (the run's advisory lock)
            runs = store._fetch_df("SELECT run_id FROM backfill_runs WHERE status = 'running'")
            assert len(runs) == 1
            resume = subprocess.run(
                [sys.executable, "-m", "signalstack.cli", "backfill",
                 "--resume", str(runs["run_id"].iloc[0])],
                env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert resume.returncode == 4, resume.stderr[-2000:]
            assert "running or being resumed elsewhere" in resume.stderr
        finally:
            fake.release_rest()
        assert b["status"] == "skipped" and b["api_calls"] == 0
        loaded = finish(a)
        assert loaded["status"] == "ok" and int(loaded["ranges"]) > 0  # type: ignore[call-overload]
        assert store.count("trades") == loaded["trades_stored"]
        third = finish(start_pass(env))
        assert third["status"] == "ok" and third["ranges"] == 0
    finally:
        store.close()
