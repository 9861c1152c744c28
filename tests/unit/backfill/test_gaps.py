"""Gap detection on the XNYS calendar: no false gaps on closed minutes, real gaps found."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from signalstack.backfill.gaps import (
    Gap,
    find_gaps,
    group_minutes,
    merge_close,
    session_minutes,
)
from signalstack.features.sessions import session_index
from signalstack.store.base import BackfillRange, BackfillRun
from signalstack.store.duckdb import DuckDBStore
from signalstack.store.gaps import session_bounds

ET = "America/New_York"


@pytest.fixture
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    s.migrate()
    yield s
    s.close()


def et(day: str, hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}").tz_localize(ET).tz_convert("UTC")


def bars(symbol: str, ends: pd.DatetimeIndex) -> pd.DataFrame:
    n = len(ends)
    px = np.full(n, 100.0)
    return pd.DataFrame(
        {"symbol": symbol, "ts": ends, "open": px, "high": px, "low": px, "close": px,
         "volume": np.full(n, 10.0), "vwap": px, "trade_count": np.ones(n, dtype=np.int64)}
    )  # fmt: skip


def full_session(store: DuckDBStore, symbol: str, day: str, *, extended: bool = False) -> None:
    store.write_bars(bars(symbol, session_minutes(dt.date.fromisoformat(day), "XNYS", extended)))


def test_holiday_has_no_minutes_and_no_gaps(store: DuckDBStore) -> None:
    # 2024-07-04 (Independence Day): no session at all, so an empty store reports nothing.
    assert find_gaps(store, ["AAPL"], dt.date(2024, 7, 4), dt.date(2024, 7, 4)) == []
    # the week around it: 07-03 (half day) and 07-05 are sessions, 07-04 is not
    gaps = find_gaps(store, ["AAPL"], dt.date(2024, 7, 3), dt.date(2024, 7, 5))
    assert [(g.session, g.start, g.end) for g in gaps] == [
        (dt.date(2024, 7, 3), et("2024-07-03", "09:30"), et("2024-07-03", "13:00")),
        (dt.date(2024, 7, 5), et("2024-07-05", "09:30"), et("2024-07-05", "16:00")),
    ]


def test_half_day_closes_at_13_00(store: DuckDBStore) -> None:
    full_session(store, "AAPL", "2024-11-29")
    assert len(session_minutes(dt.date(2024, 11, 29))) == 210  # 09:30-13:00 ET
    assert find_gaps(store, ["AAPL"], dt.date(2024, 11, 29), dt.date(2024, 11, 29)) == []
    # a real gap in the half day is found, with the minute on each side (where live data
    # stopped and resumed, probably not all their trades are stored); never after 13:00
    store._sql(
        "DELETE FROM ohlcv_1m WHERE ts > ? AND ts <= ?",
        [et("2024-11-29", "12:00").to_pydatetime(), et("2024-11-29", "12:10").to_pydatetime()],
    )
    gaps = find_gaps(store, ["AAPL"], dt.date(2024, 11, 29), dt.date(2024, 11, 29))
    assert gaps == [
        Gap("AAPL", dt.date(2024, 11, 29), et("2024-11-29", "11:59"), et("2024-11-29", "12:11"))
    ]
    assert gaps[0].minutes == 12
    # the padding stays inside the session
    store._sql("DELETE FROM ohlcv_1m WHERE ts > ?", [et("2024-11-29", "12:50").to_pydatetime()])
    gaps = find_gaps(store, ["AAPL"], dt.date(2024, 11, 29), dt.date(2024, 11, 29))
    assert gaps[-1].start == et("2024-11-29", "12:49")
    assert gaps[-1].end == et("2024-11-29", "13:00")


def test_dst_change_shifts_the_session_in_utc(store: DuckDBStore) -> None:
    # Friday 2024-03-08 opens 14:30 UTC; Monday 2024-03-11, the first session after the switch
    # to EDT, opens 13:30 UTC. Bars stamped on the winter hours would leave the first hour empty.
    full_session(store, "AAPL", "2024-03-08")
    winter = pd.date_range("2024-03-11 14:31", "2024-03-11 21:00", freq="1min", tz="UTC")
    store.write_bars(bars("AAPL", winter))
    gaps = find_gaps(store, ["AAPL"], dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    assert [(g.start, g.end) for g in gaps] == [
        (et("2024-03-11", "09:30"), et("2024-03-11", "10:31"))
    ]
    # and with the right hours nothing is missing (the bars after 16:00 ET are not "extra" gaps)
    full_session(store, "AAPL", "2024-03-11")
    assert find_gaps(store, ["AAPL"], dt.date(2024, 3, 8), dt.date(2024, 3, 11)) == []


def test_extended_hours_by_option(store: DuckDBStore) -> None:
    full_session(store, "AAPL", "2024-11-29")
    day = dt.date(2024, 11, 29)
    assert find_gaps(store, ["AAPL"], day, day) == []
    gaps = find_gaps(store, ["AAPL"], day, day, extended_hours=True)
    # pre-market 04:00-09:30 and post-market 13:00-17:00 (four hours after the early close)
    assert [(g.start, g.end) for g in gaps] == [
        (et("2024-11-29", "04:00"), et("2024-11-29", "09:31")),
        (et("2024-11-29", "12:59"), et("2024-11-29", "17:00")),
    ]


def test_checked_ranges_are_not_reported_again(store: DuckDBStore) -> None:
    day = dt.date(2024, 3, 12)
    ends = session_minutes(day)
    store.write_bars(
        bars("AAPL", ends[(ends <= et("2024-03-12", "10:00")) | (ends > et("2024-03-12", "10:20"))])
    )
    store.write_bars(bars("MSFT", ends))
    gaps = find_gaps(store, ["AAPL", "MSFT"], day, day)
    assert gaps == [Gap("AAPL", day, et("2024-03-12", "09:59"), et("2024-03-12", "10:21"))]
    run = BackfillRun("r1", "polygon", ("AAPL",), day, day, "ok")
    store.record_backfill_run(run)
    # a range still pending (or failed) is no proof: the gap stays
    rng = BackfillRange("r1", 0, "AAPL", gaps[0].start, gaps[0].end, "fetched", trades=0)
    store.record_backfill_ranges([rng])
    assert find_gaps(store, ["AAPL"], day, day) == gaps
    # fetched completely and found empty: checked, not reported again (for AAPL only)
    store.record_backfill_ranges([BackfillRange("r1", 0, "AAPL", rng.start, rng.end, "done")])
    assert find_gaps(store, ["AAPL"], day, day) == []
    store._sql("DELETE FROM ohlcv_1m WHERE symbol = 'MSFT' AND ts > ? AND ts <= ?",
               [rng.start.to_pydatetime(), rng.end.to_pydatetime()])  # fmt: skip
    padded = Gap(
        "MSFT", day, rng.start - pd.Timedelta(minutes=1), rng.end + pd.Timedelta(minutes=1)
    )
    assert find_gaps(store, ["AAPL", "MSFT"], day, day) == [padded]


def test_group_and_merge() -> None:
    ends = pd.DatetimeIndex(
        [et("2024-03-12", t) for t in ("10:01", "10:02", "10:03", "10:10", "11:00")]
    )
    groups = group_minutes(ends)
    assert groups == [
        (et("2024-03-12", "10:00"), et("2024-03-12", "10:03")),
        (et("2024-03-12", "10:09"), et("2024-03-12", "10:10")),
        (et("2024-03-12", "10:59"), et("2024-03-12", "11:00")),
    ]
    day = dt.date(2024, 3, 12)
    gaps = [Gap("AAPL", day, a, b) for a, b in groups] + [
        Gap("MSFT", day, et("2024-03-12", "11:05"), et("2024-03-12", "11:06"))
    ]
    assert merge_close(gaps, 15) == [
        Gap("AAPL", day, et("2024-03-12", "10:00"), et("2024-03-12", "10:10")),
        Gap("AAPL", day, et("2024-03-12", "10:59"), et("2024-03-12", "11:00")),
        Gap("MSFT", day, et("2024-03-12", "11:05"), et("2024-03-12", "11:06")),
    ]


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("day", ["2024-11-29", "2024-03-08", "2024-03-11", "2024-07-03"])
def test_session_bounds_are_the_stream_engines(day: str, extended: bool) -> None:
    lo, hi = session_bounds(dt.date.fromisoformat(day), "XNYS", extended)
    index = session_index("XNYS", extended)
    inside = np.array([lo.value, hi.value - 1, lo.value - 1, hi.value], dtype=np.int64)
    assert index.session_start(inside).tolist() == [lo.value, lo.value, -1, -1]
