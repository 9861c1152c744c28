"""The scheduled pass: the last closed sessions on the calendar, under the store's lock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd

from signalstack.backfill.run import BackfillRunner
from signalstack.backfill.scheduled import (
    LOCK_NAME,
    closed_sessions,
    run_scheduled,
    scheduled_options,
)
from signalstack.marketdata.fake_polygon import FakePolygonServer
from signalstack.store.duckdb import DuckDBStore

from .conftest import DAY, SYMBOLS, client_factory


def ny(ts: str) -> pd.Timestamp:
    return pd.Timestamp(ts, tz="America/New_York")


def test_closed_sessions_follow_the_calendar() -> None:
    # Friday 2024-07-05 at noon: Thursday was a holiday, Wednesday a half day (closed 13:00)
    assert closed_sessions(ny("2024-07-05 12:00"), 3) == [
        dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3),
    ]  # fmt: skip
    # a session counts once its last minute has settled (SETTLE, 15 minutes, after the close)
    assert closed_sessions(ny("2024-07-05 16:00"), 1) == [dt.date(2024, 7, 3)]
    assert closed_sessions(ny("2024-07-05 16:15"), 1) == [dt.date(2024, 7, 5)]
    assert closed_sessions(ny("2024-07-03 13:14"), 1) == [dt.date(2024, 7, 2)]
    assert closed_sessions(ny("2024-07-03 13:15"), 1) == [dt.date(2024, 7, 3)]
    # with extended hours the session ends with the post-market (four hours after the close)
    assert closed_sessions(ny("2024-07-05 18:00"), 1, extended_hours=True) == [dt.date(2024, 7, 3)]
    assert closed_sessions(ny("2024-07-05 20:15"), 1, extended_hours=True) == [dt.date(2024, 7, 5)]
    # Monday 2024-03-11 09:00 New York (13:00 UTC, after the switch to EDT): Friday's session
    assert closed_sessions(ny("2024-03-11 09:00"), 1) == [dt.date(2024, 3, 8)]


def test_a_second_pass_skips_while_the_first_holds_the_lock(
    fake_history: Callable[..., FakePolygonServer], tmp_path
) -> None:
    srv = fake_history()
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    store.migrate()
    try:
        runner = BackfillRunner(store, client_factory(srv))
        opts = scheduled_options(SYMBOLS, ny(f"{DAY} 18:00"), 1)
        assert opts is not None and (opts.start, opts.end) == (DAY, DAY) and opts.detect_gaps
        with store.try_lock(LOCK_NAME) as first:
            assert first
            second = run_scheduled(runner, opts)
            assert second.status == "skipped" and not second.healed
            assert srv.rest_requests == 0 and store.count("trades") == 0
        healed = run_scheduled(runner, opts)
        assert healed.status == "ok" and healed.stats.ranges == len(SYMBOLS)
        assert store.count("trades") == healed.stats.trades_stored > 0
        with store.try_lock(LOCK_NAME) as again:
            assert again  # released
    finally:
        store.close()
