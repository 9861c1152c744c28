"""`signalstack backfill` as a user runs it: a subprocess against the fake Polygon server (history
mode), into DuckDB and the real TimescaleDB; SIGKILLed half-way and resumed."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pandas as pd
import pytest

from signalstack.backfill.run import BackfillOptions, BackfillRunner
from signalstack.marketdata.fake_polygon import FakeConfig, FakePolygonServer, SimTape
from signalstack.marketdata.polygon_rest import PolygonRestClient
from signalstack.marketdata.simulator import SimConfig, SimulatedMarket, simulate
from signalstack.store.base import Store
from signalstack.store.duckdb import DuckDBStore
from signalstack.store.gaps import session_bounds
from signalstack.store.timescale import TimescaleStore

REPO = Path(__file__).resolve().parents[3]
DAY = dt.date(2024, 3, 12)
SYMBOLS = ("AAPL", "MSFT")
KEY = "backfill-cli-key"
ET = "America/New_York"
LO = pd.Timestamp(DAY).tz_localize(ET).tz_convert("UTC")
HI = LO + pd.Timedelta(days=1)
ARGS = ["--symbols", ",".join(SYMBOLS), "--start", str(DAY), "--end", str(DAY),
        "--source", "polygon", "--sink", "db", "--page-limit", "200"]  # fmt: skip


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return simulate(SimConfig(seed=13, symbols=SYMBOLS, date=DAY, trades_per_day=3_000))


@pytest.fixture
def fake(market: SimulatedMarket) -> Iterator[Callable[..., FakePolygonServer]]:
    started: list[FakePolygonServer] = []

    def make(**knobs: object) -> FakePolygonServer:
        cfg = FakeConfig(api_keys=frozenset({KEY}), restamp=False, **knobs)  # type: ignore[arg-type]
        started.append(FakePolygonServer(SimTape(market), cfg).start())
        return started[-1]

    yield make
    for s in started:
        s.stop()


@pytest.fixture(
    params=[pytest.param("duckdb"), pytest.param("timescale", marks=pytest.mark.integration)]
)
def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[dict[str, str], Callable[[], Store]]:
    """(the store's environment for the subprocess, a way to open it here afterwards)."""
    if request.param == "duckdb":
        path = str(tmp_path / "backfill.duckdb")
        return {"STORE_TYPE": "duckdb", "STORE_DUCKDB_PATH": path}, lambda: DuckDBStore(path)
    dsn = request.getfixturevalue("timescale_db").dsn
    u = urlsplit(dsn)
    env = {
        "STORE_TYPE": "timescale", "TIMESCALE_HOST": u.hostname or "",
        "TIMESCALE_PORT": str(u.port), "TIMESCALE_USER": u.username or "",
        "TIMESCALE_PASSWORD": u.password or "",
        "TIMESCALE_DATABASE": u.path.lstrip("/"),
    }  # fmt: skip
    return env, lambda: TimescaleStore(dsn)


def env_for(srv: FakePolygonServer, store_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ, **store_env, "POLYGON_REST_URL": srv.rest_url, "POLYGON_API_KEY": KEY,
        "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **extra,
    }  # fmt: skip


def backfill(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signalstack.cli", "backfill", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    last = proc.stdout.strip().splitlines()[-1]
    out: dict[str, object] = orjson.loads(last)
    return out


def contents(store: Store) -> dict[str, pd.DataFrame]:
    trades = store.trades(list(SYMBOLS), LO, HI).drop(columns=["ts_ingest"])
    return {
        "trades": trades.reset_index(drop=True),
        "bars": store.bars(list(SYMBOLS), LO, HI).reset_index(drop=True),
        "features": store.training_frame(list(SYMBOLS), LO, HI, HI).reset_index(drop=True),
    }


def reference(srv: FakePolygonServer, tmp_path: Path) -> dict[str, pd.DataFrame]:
    """An uninterrupted run of the same backfill (in-process, embedded store)."""
    store = DuckDBStore(str(tmp_path / "reference.duckdb"))
    store.migrate()
    try:

        def client(transport: object) -> PolygonRestClient:
            return PolygonRestClient(srv.rest_url, KEY, transport=transport)  # type: ignore[arg-type]

        opts = BackfillOptions(SYMBOLS, DAY, DAY, detect_gaps=True, page_limit=200)
        assert BackfillRunner(store, client).start(opts).status == "ok"
        return contents(store)
    finally:
        store.close()


def pages_of(srv: FakePolygonServer, symbol: str, limit: int = 200) -> int:
    """How many /v3/trades pages the day's session of ``symbol`` takes at ``limit`` a page."""
    lo, hi = session_bounds(DAY)
    ts, _ = srv.published.arrays(symbol)
    n = int(((ts >= lo.value) & (ts < hi.value)).sum())
    return max(1, -(-n // limit))


class StderrReader:
    """Drains a child's stderr in a thread (a silent child cannot block the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.stream = proc.stderr
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    def events(self) -> list[dict[str, object]]:
        self.thread.join(60)
        out = []
        for line in self.lines:
            if line.startswith("{"):
                ev: dict[str, object] = orjson.loads(line)
                out.append(ev)
        return out


@pytest.mark.slow
def test_sigkill_half_way_then_resume_ends_with_the_rows_of_an_uninterrupted_run(
    fake: Callable[..., FakePolygonServer],
    target: tuple[dict[str, str], Callable[[], Store]],
    tmp_path: Path,
) -> None:
    store_env, open_store = target
    probe = fake()
    aapl_pages = pages_of(probe, "AAPL")
    # held: MSFT's second page, so AAPL is done and MSFT has one page stored when killed
    srv = fake(rest_hold_trades=aapl_pages + 2)
    assert pages_of(srv, "MSFT") >= 3
    env = env_for(srv, store_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalstack.cli", "backfill", *ARGS, "--detect-gaps"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reader = StderrReader(proc)
    try:
        held = srv.rest_held.wait(240)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.release_rest()
    proc.wait(60)
    assert held, f"the run never reached the held request: {''.join(reader.lines)[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    starts = [e for e in reader.events() if e.get("event") == "backfill_start"]
    assert len(starts) == 1
    run_id = str(starts[0]["run_id"])

    store = open_store()
    try:
        run = store.backfill_run(run_id)
        assert run is not None and run.status == "running"
        assert [r.status for r in store.backfill_ranges(run_id)] == ["done", "pending"]
    finally:
        store.close()

    resumed = backfill(["--resume", run_id], env_for(srv, store_env))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    s = summary(resumed)
    assert s["run_id"] == run_id and s["status"] == "ok" and s["healed"] is True

    # the same backfill again adds nothing: every gap is healed or checked
    again = backfill([*ARGS, "--detect-gaps"], env_for(srv, store_env))
    assert again.returncode == 0, again.stderr[-2000:]
    assert summary(again)["ranges"] == 0 and summary(again)["api_calls"] == 0

    # and a forced reload of the whole day stores no trade twice
    full = backfill(ARGS, env_for(srv, store_env))
    assert full.returncode == 0, full.stderr[-2000:]
    assert summary(full)["trades_stored"] == 0 and int(summary(full)["trades_fetched"]) > 0  # type: ignore[call-overload]

    want = reference(srv, tmp_path)
    store = open_store()
    try:
        got = contents(store)
        assert [r.status for r in store.backfill_ranges(run_id)] == ["done", "done"]
    finally:
        store.close()
    for k in want:
        pd.testing.assert_frame_equal(got[k], want[k], obj=k, check_dtype=False)


@pytest.mark.slow
def test_429s_and_5xx_are_retried_and_reported(
    fake: Callable[..., FakePolygonServer], tmp_path: Path
) -> None:
    srv = fake(rest_429_every=3, rest_503_every=5)
    store_env = {"STORE_TYPE": "duckdb", "STORE_DUCKDB_PATH": str(tmp_path / "faults.duckdb")}
    prom = tmp_path / "backfill.prom"
    done = backfill(
        ARGS,
        env_for(srv, store_env, POLYGON_REST_RATE_PER_S="200", BACKFILL_METRICS_FILE=str(prom)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    s = summary(done)
    assert s["healed"] is True and s["failed_ranges"] == 0
    assert int(s["http_429"]) > 0 and int(s["http_5xx"]) > 0  # type: ignore[call-overload]
    assert s["retries"] == int(s["http_429"]) + int(s["http_5xx"])  # type: ignore[call-overload]
    assert '"polygon_rest_retry"' in done.stderr
    metrics = prom.read_text()  # what the CronJob's pass exports for Prometheus
    assert f"signalstack_backfill_last_http_429 {float(s['http_429'])}" in metrics  # type: ignore[arg-type]
    assert "signalstack_backfill_last_healed 1.0" in metrics


@pytest.mark.slow
def test_exit_status_says_not_healed_and_dry_run_fetches_nothing(
    fake: Callable[..., FakePolygonServer], tmp_path: Path
) -> None:
    srv = fake(rest_503_every=1, retry_after="0")
    store_env = {"STORE_TYPE": "duckdb", "STORE_DUCKDB_PATH": str(tmp_path / "down.duckdb")}
    dry = backfill([*ARGS, "--detect-gaps", "--dry-run"], env_for(srv, store_env))
    assert dry.returncode == 0, dry.stderr[-2000:]
    rows = [orjson.loads(x) for x in dry.stdout.strip().splitlines()]
    assert [r["symbol"] for r in rows[:-1]] == list(SYMBOLS)  # an empty store: whole sessions
    assert rows[0]["minutes"] == 390 and rows[-1]["api_calls"] == 0
    assert srv.rest_requests == 0

    down = backfill([*ARGS, "--symbols", "AAPL"], env_for(srv, store_env))
    assert down.returncode == 5
    s = summary(down)
    assert s["healed"] is False and s["failed_ranges"] == 1
    assert "--resume" in down.stderr


@pytest.mark.slow
def test_scheduled_pass_skips_cleanly_while_the_embedded_store_is_open_elsewhere(
    fake: Callable[..., FakePolygonServer], tmp_path: Path
) -> None:
    srv = fake()
    path = str(tmp_path / "busy.duckdb")
    other = DuckDBStore(path)  # another pass (or the demo) has the file open
    try:
        env = env_for(srv, {"STORE_TYPE": "duckdb", "STORE_DUCKDB_PATH": path})
        done = backfill(["--scheduled"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert summary(done)["status"] == "skipped" and srv.rest_requests == 0
    finally:
        other.close()


def test_cli_polygon_aggs_writes_vendor_bars_marked_and_is_idempotent(
    fake: Callable[..., FakePolygonServer],
    target: tuple[dict[str, str], Callable[[], Store]],
) -> None:
    """``--source polygon-aggs``: Polygon's minute bars straight into ohlcv_1m (source
    ``polygon_aggs``), no trade stored; the same command again finds no gap."""
    srv = fake()
    store_env, open_store = target
    args = [a if a != "polygon" else "polygon-aggs" for a in ARGS] + ["--detect-gaps"]
    first = backfill(args, env_for(srv, store_env))
    assert first.returncode == 0, first.stderr[-3000:]
    s1 = summary(first)
    assert s1["status"] == "ok" and s1["trades_stored"] == s1["bars"]
    assert isinstance(s1["bars"], int) and s1["bars"] > 600
    again = backfill(args, env_for(srv, store_env))
    assert again.returncode == 0, again.stderr[-3000:]
    assert summary(again)["ranges"] == 0 and summary(again)["api_calls"] == 0
    store = open_store()
    try:
        src = store.bar_sources(list(SYMBOLS), LO, HI)
        assert len(src) == s1["bars"] and set(src["source"]) == {"polygon_aggs"}
        assert store.count("trades") == 0
        run = store.backfill_run(str(s1["run_id"]))
        assert run is not None and run.source == "polygon-aggs"
    finally:
        store.close()
